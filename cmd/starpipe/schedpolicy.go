package main

import (
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/daemon"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

// schedulePolicy is the daemon's: the commands that save schedules check
// them against the same admin bounds as the API.
func schedulePolicy(cfg config.Config, st *store.Store) (spec.Options, error) {
	return daemon.SchedulePolicy(cfg, st)
}
