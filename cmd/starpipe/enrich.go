package main

import (
	"fmt"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scoring"
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

// newEnricher scores a finding (under the run's environmental context when
// its schedule sets one, else the scope's from scoring.environments) and
// then maps it, since mapping rules read the severity. allVersions stores links under every CCM version the rules
// name, so reports can be read under v4.0.13 and v4.1 alike.
func newEnricher(cfg config.Config, allVersions bool) (pipeline.Enricher, error) {
	opts := []mapping.Option{mapping.WithVersion(cfg.Mapping.CCMVersion)}
	if allVersions {
		opts = append(opts, mapping.WithAllVersions())
	}
	var m *mapping.Mapper
	var err error
	if cfg.Mapping.File != "" {
		m, err = mapping.LoadFile(cfg.Mapping.File, nil, false, opts...)
	} else {
		m, err = mapping.Default(opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("load mapping rules: %w", err)
	}
	envs := make(map[string]scoring.Environment, len(cfg.Scoring.Environments))
	for scope, frag := range cfg.Scoring.Environments {
		env, err := scoring.ParseEnvironment(frag)
		if err != nil {
			return nil, fmt.Errorf("scoring.environments[%q]: %w", scope, err)
		}
		envs[scope] = env
	}
	return func(f *finding.Finding, env *scoring.Environment) {
		if e, ok := envs[f.Scope]; ok && env == nil {
			env = &e
		}
		scoring.Apply(f, env)
		m.Apply(f)
	}, nil
}
