package main

import (
	"net"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

// schedulePolicy turns the admin configuration into the bounds schedules
// are checked against when saved (API, schedules apply, schedules_file).
// st, when given, is where credential scopes are looked up.
func schedulePolicy(cfg config.Config, st *store.Store) (spec.Options, error) {
	np, err := cfg.Scan.NetworkPolicy()
	if err != nil {
		return spec.Options{}, err
	}
	opts := spec.Options{
		Analyzers: cfg.AnalyzerNames(), WordlistDir: cfg.Amass.WordlistDir,
		Network: np, Resolver: net.DefaultResolver,
	}
	if st != nil {
		opts.Credentials = credentials.ScopeLookup{St: st}
	}
	return opts, nil
}
