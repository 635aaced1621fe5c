package main

import (
	"context"
	"errors"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/store"
)

// openConfiguredStore opens the database the configuration names, for the
// commands that work on it directly (credentials, schedules, ingest).
func openConfiguredStore(ctx context.Context, cfgFile string) (*store.Store, config.Config, error) {
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return nil, cfg, err
	}
	if cfg.Database.URL == "" {
		return nil, cfg, errors.New("database.url is not set (config file or STARPIPE_DATABASE_URL)")
	}
	st, err := store.Open(ctx, cfg.Database.URL, store.WithMaxConns(2))
	return st, cfg, err
}
