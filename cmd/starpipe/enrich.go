package main

import (
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/daemon"
)

// dryRunEnricher is the scoring and mapping a dry run applies, with the
// --mapping file ("" for the configured or default rules). A dry run
// reports the configured CCM version only, so its "controls" counts read
// as plain control ids.
func dryRunEnricher(mappingFile string) (func(*finding.Finding), error) {
	cfg, err := config.Load("")
	if err != nil {
		return nil, err
	}
	if mappingFile != "" {
		cfg.Mapping.File = mappingFile
	}
	enrich, err := newEnricher(cfg, false)
	if err != nil {
		return nil, err
	}
	return func(f *finding.Finding) { enrich(f, nil) }, nil
}

// newEnricher is the daemon's scoring and mapping, for the CLI's dry run.
func newEnricher(cfg config.Config, allVersions bool) (pipeline.Enricher, error) {
	return daemon.NewEnricher(cfg, allVersions)
}
