package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/busconfig"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/worker"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

func init() { subcommands = append(subcommands, newServeCmd, newMigrateCmd) }

func newServeCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon against a configured PostgreSQL and Kafka",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return err
			}
			if cfg.Database.URL == "" {
				return errors.New("database.url is not set (config file or STARPIPE_DATABASE_URL); for a self-contained stack use `starpipe dev`")
			}
			if len(cfg.Kafka.Brokers) == 0 {
				return errors.New("kafka.brokers is not set (config file or STARPIPE_KAFKA_BROKERS); for a self-contained stack use `starpipe dev`")
			}
			log := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			return runDaemon(cmd.Context(), cfg, log, nil)
		},
	}
	cmd.Flags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML); see configs/starpipe.example.yaml")
	return cmd
}

func newMigrateCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return err
			}
			if cfg.Database.URL == "" {
				return errors.New("database.url is not set (config file or STARPIPE_DATABASE_URL)")
			}
			if err := store.Migrate(cmd.Context(), cfg.Database.URL); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "migrations applied")
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")
	return cmd
}

// busConfig turns the daemon configuration into the bus package's,
// reading the kafka.tls files and the SASL password file.
func busConfig(cfg config.Config) (bus.Config, error) {
	return busconfig.FromConfig(cfg.Kafka)
}

// hooks let `dev` add work to the daemon's lifetime (the demo target, the
// first-start token) without serve knowing about it.
type hooks struct {
	// afterStore runs once the database is migrated and open.
	afterStore func(ctx context.Context, st *store.Store) error
	// keyStateDir lets `dev` create a vault key on first start; serve
	// never invents one.
	keyStateDir string
	// background runs beside the daemon's roles until they stop (the
	// demo target).
	background func(ctx context.Context, st *store.Store, kr *vault.Keyring) error
}

// runDaemon runs every configured role until ctx is cancelled, then shuts
// down in order: not ready, stop intake, drain, close clients.
func runDaemon(ctx context.Context, cfg config.Config, log *slog.Logger, h *hooks) error {
	log.Info("starting", "version", versionString(), "roles", cfg.Roles, "listen", cfg.Listen)

	if err := store.Migrate(ctx, cfg.Database.URL); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	st, err := store.Open(ctx, cfg.Database.URL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	if h != nil && h.afterStore != nil {
		if err := h.afterStore(ctx, st); err != nil {
			return err
		}
	}
	if f := cfg.Scheduler.SchedulesFile; f != "" {
		r, err := os.Open(f)
		if err != nil {
			return fmt.Errorf("schedules file: %w", err)
		}
		err = applySchedules(ctx, cfg, st, r, f, log)
		r.Close()
		if err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "starpipe_up", Help: "1 while the daemon serves.", ConstLabels: prometheus.Labels{"version": version}})
	reg.MustRegister(up)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "starpipe_outbox_pending",
		Help: "Outbox messages not yet delivered to Kafka (grows while the brokers are unreachable).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := st.PendingOutbox(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))

	bcfg, err := busConfig(cfg)
	if err != nil {
		return err
	}
	var shuttingDown atomic.Bool
	ready := func(ctx context.Context) error {
		if shuttingDown.Load() {
			return errors.New("shutting down")
		}
		if err := st.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if err := bus.Ping(ctx, bcfg); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}

	busMetrics := bus.NewMetrics()
	reg.MustRegister(busMetrics)
	bcfg.Metrics = busMetrics
	producer := bus.NewProducer(bcfg, log)
	defer producer.Close()

	enrich, err := newEnricher(cfg, true)
	if err != nil {
		return err
	}
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		return err
	}
	var keyStateDir string
	if h != nil {
		keyStateDir = h.keyStateDir
	}
	keyring, err := loadOrCreateKeyring(keyStateDir, cfg.Vault.KeyFile)
	if errors.Is(err, vault.ErrNoKey) {
		// Without a master key nothing can be sealed: the daemon still
		// ingests and serves, but credentials and authenticated scans are off.
		log.Warn("no vault master key (STARPIPE_MASTER_KEY or vault.key_file): credentials are disabled")
		keyring, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("load vault key: %w", err)
	}
	intake := pipeline.NewIntake(st, cfg.Ingest.MaxBytes, filepath.Join(cfg.StateDir, "tmp"), log)
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "tmp"), 0o700); err != nil {
		return fmt.Errorf("create upload spool directory: %w", err)
	}

	schedOpts, err := schedulePolicy(cfg, st)
	if err != nil {
		return err
	}
	srv := api.New(api.Options{
		Logger: log, Auth: storeAuth{st}, Registry: reg, Ready: ready,
		Store: st, Catalogs: cats, Intake: intake, Keyring: keyring,
		SchedulePolicy: schedOpts,
	})
	httpSrv := &http.Server{Addr: cfg.Listen, Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}

	// Work runs under workCtx, which is cancelled only after intake stopped,
	// so in-flight messages finish instead of being cut off.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	g, gctx := errgroup.WithContext(workCtx)

	g.Go(func() error {
		// Topics are provisioned in the background: a broker that is down at
		// start must not stop the API from accepting uploads (the outbox
		// holds them until the broker is back).
		return ensureTopicsWithRetry(gctx, bcfg, log)
	})
	// Every process relays the outbox: rows are claimed with SKIP LOCKED,
	// so replicas share the work without sending anything twice.
	rel := relay.New(st, producer, log, relay.WithMetrics(reg))
	g.Go(func() error { return rel.Run(gctx) })

	if cfg.HasRole(config.RoleIngest) {
		cons := pipeline.NewConsumer(st, producer, enrich, pipeline.Config{
			Limits: parse.Limits{
				MaxBytes: cfg.Ingest.MaxBytes, MaxDepth: cfg.Ingest.MaxDepth,
				MaxString: cfg.Ingest.MaxString, MaxResults: cfg.Ingest.MaxResults,
			},
			BatchSize: cfg.Ingest.BatchSize,
		}, log, reg)
		g.Go(func() error {
			if err := waitTopics(gctx, bcfg); err != nil {
				return nil
			}
			c := bus.NewConsumer(bcfg, "starpipe-ingest", bus.TopicScanResults, log)
			return c.Run(gctx, cons.Handle, bus.RunOptions{
				DLQ: producer, DrainTimeout: cfg.ShutdownTimeout / 2,
				// Batches of one run share a partition (keyed by run id);
				// storing a few at once keeps PostgreSQL busy on every core.
				Concurrency: cfg.Ingest.Concurrency, Parallel: pipeline.Parallel,
			})
		})
	}

	if cfg.HasRole(config.RoleScheduler) && cfg.Scheduler.Enabled {
		sched, err := scheduler.New(scheduler.Options{Store: st, Logger: log})
		if err != nil {
			return err
		}
		if err := sched.Start(gctx); err != nil {
			return err
		}
		defer sched.Stop()
	}
	if cfg.HasRole(config.RoleWorker) {
		var creds worker.Credentials
		if keyring != nil {
			creds = credentials.NewResolver(st, keyring)
		}
		templates, err := extractTemplates(cfg.StateDir)
		if err != nil {
			return err
		}
		if _, err := scanexec.Locate(cfg.Scan.ScannerPath); err != nil {
			// Ingestion and the API work without it; every scan fails
			// with this error until the scanner is installed.
			log.Warn("scans will fail: no scanner", "err", err)
		}
		wk := worker.New(worker.Options{
			Submitter: intake, Credentials: creds, Ledger: st,
			StateDir: filepath.Join(cfg.StateDir, "scan"), Templates: []string{templates}, Logger: log,
			ScannerPath: cfg.Scan.ScannerPath,
			Analyzers:   cfg.Analyzers, WordlistDir: cfg.Amass.WordlistDir, Network: schedOpts.Network,
		})
		g.Go(func() error {
			if err := waitTopics(gctx, bcfg); err != nil {
				return nil
			}
			c := bus.NewConsumer(bcfg, "starpipe-workers", bus.TopicScanRequests, log)
			return c.Run(gctx, wk.Handle, bus.RunOptions{DLQ: producer, DrainTimeout: cfg.ShutdownTimeout / 2})
		})
	}
	if h != nil && h.background != nil {
		g.Go(func() error { return h.background(gctx, st, keyring) })
	}

	g.Go(func() error {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	up.Set(1)
	log.Info("serving", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
	case <-gctx.Done():
	}
	log.Info("shutting down")
	shuttingDown.Store(true)
	up.Set(0)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	cancelWork()
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// applySchedules validates a schedules file and upserts all of it, or
// none when any schedule is invalid.
func applySchedules(ctx context.Context, cfg config.Config, st *store.Store, r io.Reader, name string, log *slog.Logger) error {
	opts, err := schedulePolicy(cfg, st)
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

// extractTemplates writes the nuclei templates shipped in the binary to
// the state directory, so scans never depend on the working directory or
// on a download.
func extractTemplates(stateDir string) (string, error) {
	dir := filepath.Join(stateDir, "templates")
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return "", fmt.Errorf("write template %s: %w", e.Name(), err)
		}
	}
	return dir, nil
}

// waitTopics blocks until the topics exist (consumers must not join a
// group on a topic that is not there yet) or ctx ends.
func waitTopics(ctx context.Context, cfg bus.Config) error {
	for {
		if err := bus.EnsureTopics(ctx, cfg); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func ensureTopicsWithRetry(ctx context.Context, cfg bus.Config, log *slog.Logger) error {
	delay := 500 * time.Millisecond
	for {
		err := bus.EnsureTopics(ctx, cfg)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("kafka topics not provisioned yet", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
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
	return api.Principal{ID: p.ID, Name: p.Name, Role: p.Role}, nil
}
