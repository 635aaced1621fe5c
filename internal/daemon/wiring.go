package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/busconfig"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store"
)

// BusConfig turns the daemon configuration into the bus package's, with
// TLS and SASL read from their files.
func BusConfig(cfg config.Config) (bus.Config, error) {
	return busconfig.FromConfig(cfg.Kafka)
}

// SchedulePolicy turns the admin configuration into the bounds schedules
// are checked against when saved (API, schedules apply, schedules_file).
// st, when given, is where credential scopes are looked up.
func SchedulePolicy(cfg config.Config, st *store.Store) (spec.Options, error) {
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

// NewEnricher scores a finding (under the run's environmental context when
// its schedule sets one, else the scope's from scoring.environments) and
// then maps it, since mapping rules read the severity. allVersions stores
// links under every CCM version the rules name, so reports can be read
// under v4.0.13 and v4.1 alike.
func NewEnricher(cfg config.Config, allVersions bool) (pipeline.Enricher, error) {
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

// ApplySchedules validates a schedules file and upserts all of it, or
// none when any schedule is invalid.
func ApplySchedules(ctx context.Context, cfg config.Config, st *store.Store, r io.Reader, name string, log *slog.Logger) error {
	opts, err := SchedulePolicy(cfg, st)
	if err != nil {
		return err
	}
	ss, err := spec.Decode(r, name, opts)
	if err != nil {
		return err
	}
	created, err := scheduler.Apply(ctx, st, ss, "config", opts)
	if err != nil {
		return fmt.Errorf("apply %s: %w", name, err)
	}
	n := 0
	for _, c := range created {
		if c {
			n++
		}
	}
	log.Info("schedules applied", "file", name, "schedules", len(ss), "created", n)
	return nil
}

func applySchedulesFile(ctx context.Context, cfg config.Config, st *store.Store, path string, log *slog.Logger) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("schedules file: %w", err)
	}
	defer f.Close()
	return ApplySchedules(ctx, cfg, st, f, path, log)
}

// extractTemplates writes the nuclei templates shipped in the binary to
// the state directory, so scans never depend on the working directory or
// on a download.
func extractTemplates(stateDir string) (string, error) {
	dir := filepath.Join(stateDir, "templates")
	// The scanner child reads them; the state directory around it is
	// private, so the files need no wider mode than the daemon's own.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create template directory: %w", err)
	}
	entries, err := fs.ReadDir(configs.FS, "templates")
	if err != nil {
		return "", fmt.Errorf("read shipped templates: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(configs.FS, "templates/"+e.Name())
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			return "", fmt.Errorf("write template %s: %w", e.Name(), err)
		}
	}
	return dir, nil
}

// storeAuth adapts the store's tokens to the API's Authenticator.
type storeAuth struct{ st *store.Store }

func (a storeAuth) Authenticate(ctx context.Context, token string) (api.Principal, error) {
	p, err := a.st.Authenticate(ctx, token)
	if errors.Is(err, store.ErrUnauthenticated) {
		return api.Principal{}, api.ErrUnauthenticated
	}
	if err != nil {
		return api.Principal{}, err
	}
	return api.Principal{ID: p.ID, Name: p.Actor(), Role: p.Role, User: p.User, Scopes: p.Scopes, Kinds: p.Kinds}, nil
}
