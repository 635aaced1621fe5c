// Package daemon builds the long-running parts of starpipe that the
// configured roles need and runs them under one lifecycle: every part has
// a run function and an interrupt (in the manner of oklog/run.Group, as
// Prometheus composes its main); the first part to fail stops the rest;
// shutdown runs once, in a fixed order, within shutdown_timeout.
//
// `starpipe serve`, `starpipe dev` and the end-to-end test harnesses are all
// built from New: the harnesses configure a daemon, they do not copy its
// wiring.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/httpserver"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/worker"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

// Consumer groups of the two Kafka consumers.
const (
	GroupIngest  = "starpipe-ingest"
	GroupWorkers = "starpipe-workers"
)

// ErrShuttingDown is what an upload gets once intake has stopped; the API
// answers it with 503.
var ErrShuttingDown = pipeline.ErrIntakeClosed

// Daemon is a built, not yet running, set of parts. Run it once.
type Daemon struct {
	cfg  config.Config
	opt  options
	log  *slog.Logger
	bcfg bus.Config
	reg  *prometheus.Registry

	st          *store.Store
	producer    *bus.Producer
	intake      *pipeline.Intake
	keyring     *vault.Keyring
	schedPolicy spec.Options
	ln          net.Listener

	parts []part
	// closers release what New built, in reverse order.
	closers []func()

	notReady     atomic.Bool
	intakeClosed atomic.Bool
	ran          atomic.Bool
}

// New builds the parts that cfg's roles need: the store (migrated, with
// database.max_conns), the producer, the relay, the ingest consumer, the
// scheduler, the worker and the API server with its listener. Nothing runs
// until Run. When building fails part-way, what was built is closed.
func New(ctx context.Context, cfg config.Config, opts ...Option) (d *Daemon, err error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	d = &Daemon{cfg: cfg, opt: o, log: o.log.With("component", "daemon"), reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			d.close()
			d = nil
		}
	}()
	if err := d.build(ctx); err != nil {
		return d, err
	}
	return d, nil
}

// usesKafka reports whether a configured role talks to the brokers. The
// api and scheduler roles write to the outbox only.
func usesKafka(cfg config.Config) bool {
	return cfg.HasRole(config.RoleRelay) || cfg.HasRole(config.RoleIngest) || cfg.HasRole(config.RoleWorker)
}

func (d *Daemon) build(ctx context.Context) error {
	cfg := d.cfg
	if cfg.Database.URL == "" {
		return errors.New("database.url is not set (config file or STARPIPE_DATABASE_URL); for a self-contained stack use `starpipe dev`")
	}
	kafka := usesKafka(cfg)
	if kafka && len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("kafka.brokers is not set (config file or STARPIPE_KAFKA_BROKERS) and roles %v need Kafka; for a self-contained stack use `starpipe dev`", cfg.Roles)
	}
	d.log.Info("building", "roles", cfg.Roles)

	if err := store.Migrate(ctx, cfg.Database.URL); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	st, err := store.Open(ctx, cfg.Database.URL, store.WithMaxConns(cfg.Database.MaxConns), store.WithLogger(d.opt.log))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	d.st = st
	d.closers = append(d.closers, st.Close)

	d.keyring = d.opt.keyring
	if d.keyring == nil {
		d.log.Warn("no vault master key (STARPIPE_MASTER_KEY or vault.key_file): credentials are disabled")
	}
	for _, s := range d.opt.setups {
		if err := s(ctx, d); err != nil {
			return err
		}
	}
	if f := cfg.Scheduler.SchedulesFile; f != "" {
		if err := applySchedulesFile(ctx, cfg, st, f, d.log); err != nil {
			return err
		}
	}
	if d.schedPolicy, err = SchedulePolicy(cfg, st); err != nil {
		return err
	}

	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
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

	if d.bcfg, err = BusConfig(cfg); err != nil {
		return err
	}
	if d.opt.busTune != nil {
		d.opt.busTune(&d.bcfg)
	}
	if kafka {
		m := bus.NewMetrics()
		d.reg.MustRegister(m)
		d.bcfg.Metrics = m
		if err := d.bcfg.Validate(); err != nil {
			return fmt.Errorf("kafka config: %w", err)
		}
		d.producer = bus.NewProducer(d.bcfg, d.opt.log)
		p := d.producer
		d.closers = append(d.closers, func() { _ = p.Close() })
		d.add(part{name: "kafka topics", stage: stageBackground, run: d.provisionTopics})
	}

	d.intake = pipeline.NewIntake(st, cfg.Ingest.MaxBytes, d.opt.log)
	if cfg.HasRole(config.RoleAPI) || cfg.HasRole(config.RoleWorker) {
		// The roles that upload also delete what a dead upload left.
		d.add(part{name: "artifact sweep", stage: stageBackground, run: func(ctx context.Context) error {
			return pipeline.SweepArtifacts(ctx, st, d.opt.log)
		}})
	}

	if cfg.HasRole(config.RoleRelay) {
		rel := relay.New(st, d.producer, d.opt.log, append([]relay.Option{relay.WithMetrics(d.reg), relay.WithMaxAttempts(d.cfg.Relay.MaxAttempts)}, d.opt.relayOpts...)...)
		d.add(part{name: "relay", stage: stageBackground, run: rel.Run})
	}
	if cfg.HasRole(config.RoleIngest) {
		if err := d.buildIngest(); err != nil {
			return err
		}
	}
	if cfg.HasRole(config.RoleScheduler) && cfg.Scheduler.Enabled {
		if err := d.buildScheduler(); err != nil {
			return err
		}
	}
	if cfg.HasRole(config.RoleWorker) {
		if err := d.buildWorker(); err != nil {
			return err
		}
	}
	if err := d.buildReview(ctx); err != nil {
		return err
	}
	for _, x := range d.opt.extras {
		d.add(part{name: x.name, stage: stageBackground, run: func(ctx context.Context) error { return x.run(ctx, d) }})
	}
	if cfg.HasRole(config.RoleAPI) {
		if err := d.buildAPI(); err != nil {
			return err
		}
	}
	return nil
}

func (d *Daemon) add(p part) { d.parts = append(d.parts, p) }

// drainTimeout is how long a consumer may finish its in-flight messages
// once intake stopped: half of what the shutdown has left after the delay,
// which leaves the rest for commits, leaving the group, the relay and HTTP.
func (d *Daemon) drainTimeout() time.Duration {
	return (d.cfg.ShutdownTimeout - d.cfg.ShutdownDelay) / 2
}

// consume is a consumer group's part: wait for the topics, then fetch,
// handle and commit until interrupted, and finish the messages in flight.
func (d *Daemon) consume(group, topic string, h bus.Handler, ro bus.RunOptions) func(ctx context.Context) error {
	ro.DLQ = d.producer
	ro.DrainTimeout = d.drainTimeout()
	if d.opt.runTune != nil {
		d.opt.runTune(group, &ro)
	}
	return func(ctx context.Context) error {
		// A consumer must not join a group on a topic that is not there.
		if err := waitTopics(ctx, d.bcfg); err != nil {
			return nil // interrupted while waiting
		}
		return bus.NewConsumer(d.bcfg, group, topic, d.opt.log).Run(ctx, h, ro)
	}
}

func (d *Daemon) buildIngest() error {
	enrich, err := NewEnricher(d.cfg, true)
	if err != nil {
		return err
	}
	c := d.cfg.Ingest
	cons := pipeline.NewConsumer(d.st, d.producer, enrich, pipeline.Config{
		Limits:    parse.Limits{MaxBytes: c.MaxBytes, MaxDepth: c.MaxDepth, MaxString: c.MaxString, MaxResults: c.MaxResults},
		BatchSize: c.BatchSize, SLA: SLAPolicy(d.cfg),
		Hold: store.HoldPolicy{Fraction: d.cfg.Reconcile.HoldFraction, Min: d.cfg.Reconcile.HoldMin},
	}, d.opt.log, d.reg)
	if d.opt.ingestTune != nil {
		d.opt.ingestTune(cons)
	}
	h := bus.Handler(cons.Handle)
	if d.opt.ingestWrap != nil {
		h = d.opt.ingestWrap(h)
	}
	d.add(part{name: "ingest consumer", stage: stageIntake, run: d.consume(GroupIngest, bus.TopicScanResults, h, bus.RunOptions{
		// Batches of one run share a partition (keyed by run id); storing
		// a few at once keeps PostgreSQL busy on every core.
		Concurrency: c.Concurrency, Parallel: pipeline.Parallel,
	})})
	return nil
}

func (d *Daemon) buildScheduler() error {
	so := scheduler.Options{Store: d.st, Logger: d.opt.log}
	if d.opt.schedTune != nil {
		d.opt.schedTune(&so)
	}
	sched, err := scheduler.New(so)
	if err != nil {
		return fmt.Errorf("build scheduler: %w", err)
	}
	d.add(part{name: "scheduler", stage: stageIntake, run: func(ctx context.Context) error {
		if err := sched.Start(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		// Stop waits for a claim in progress to commit or roll back.
		sched.Stop()
		return nil
	}})
	return nil
}

func (d *Daemon) buildWorker() error {
	var creds worker.Credentials
	if d.keyring != nil {
		creds = credentials.NewResolver(d.st, d.keyring)
	}
	templates, err := extractTemplates(d.cfg.StateDir)
	if err != nil {
		return err
	}
	if _, err := scanexec.Locate(d.cfg.Scan.ScannerPath); err != nil {
		// Ingestion and the API work without it; every scan fails with
		// this error until the scanner is installed.
		d.log.Warn("scans will fail: no scanner", "err", err)
	}
	policy := d.schedPolicy
	wk := worker.New(worker.Options{
		// The worker's own submissions are not gated: a scan that finishes
		// while draining still hands in its output.
		Submitter: d.intake, Credentials: creds, Ledger: d.st,
		StateDir: filepath.Join(d.cfg.StateDir, "scan"), Templates: []string{templates}, Logger: d.opt.log,
		ScannerPath: d.cfg.Scan.ScannerPath,
		Analyzers:   d.cfg.Analyzers, WordlistDir: d.cfg.Amass.WordlistDir, Network: d.schedPolicy.Network,
		MaxScanDuration: d.cfg.Scan.MaxDuration, CodeWorkDir: d.cfg.Scan.CodeWorkDir,
		// Each stored schedule is checked again, under the bounds it was
		// saved under, before it runs.
		Policy: &policy,
	})
	h := bus.Handler(wk.Handle)
	if d.opt.workerWrap != nil {
		h = d.opt.workerWrap(h)
	}
	// Scans are independent of each other: several at once, so that one
	// slow or tarpitting target does not hold up every schedule.
	d.add(part{name: "worker", stage: stageIntake, run: d.consume(GroupWorkers, bus.TopicScanRequests, h, bus.RunOptions{
		Concurrency: d.cfg.Scan.Concurrency, Parallel: worker.Parallel,
	})})
	return nil
}

func (d *Daemon) buildAPI() error {
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		return fmt.Errorf("load CCM catalogues: %w", err)
	}
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "starpipe_up", Help: "1 while the daemon serves and is ready.",
		ConstLabels: prometheus.Labels{"version": d.opt.version},
	})
	d.reg.MustRegister(up)
	// Manual findings are scored and mapped by the rules ingestion uses.
	enrich, err := NewEnricher(d.cfg, true)
	if err != nil {
		return err
	}
	srv := api.New(api.Options{
		Enrich: func(f *finding.Finding) { enrich(f, nil) },
		Logger: d.opt.log, Auth: storeAuth{d.st}, Registry: d.reg, Ready: d.ready,
		Store: d.st, Catalogs: cats, Intake: gatedIntake{d}, Keyring: d.keyring,
		HeldRuns:       pipeline.NewHeldRuns(d.st, d.opt.log),
		SchedulePolicy: d.schedPolicy,
		Exceptions:     new(ExceptionPolicy(d.cfg)),
	})
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.cfg.Listen, err)
	}
	d.ln = ln
	d.closers = append(d.closers, func() { _ = ln.Close() })
	hs, err := httpserver.New(d.cfg.HTTP, d.cfg.Listen, srv, d.log)
	if err != nil {
		return err
	}
	d.add(part{
		name: "http", stage: stageHTTP,
		run: func(ctx context.Context) error {
			up.Set(1)
			defer up.Set(0)
			d.log.Info("serving", "url", httpserver.Scheme(hs)+"://"+ln.Addr().String())
			if err := httpserver.Serve(hs, ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		},
		stop: func(ctx context.Context) {
			up.Set(0)
			if err := hs.Shutdown(ctx); err != nil {
				// The deadline passed with requests still running.
				d.log.Warn("http shutdown; closing connections", "err", err)
				_ = hs.Close()
			}
		},
	})
	return nil
}

// ready is /readyz: 503 from the moment shutdown starts, else the database
// and, for roles that use it, Kafka.
func (d *Daemon) ready(ctx context.Context) error {
	if d.notReady.Load() {
		return errors.New("shutting down")
	}
	if err := d.st.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if usesKafka(d.cfg) {
		if err := bus.Ping(ctx, d.bcfg); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	return nil
}

// gatedIntake is the API's intake: uploads answer 503 once intake stopped.
type gatedIntake struct{ d *Daemon }

func (g gatedIntake) Submit(ctx context.Context, r io.Reader, req pipeline.Request) (string, error) {
	if g.d.intakeClosed.Load() {
		return "", ErrShuttingDown
	}
	return g.d.intake.Submit(ctx, r, req)
}

// Addr is the API's listen address, nil when the api role is not
// configured (no port is bound then).
func (d *Daemon) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// Store is the daemon's database, for `dev` set-up and test harnesses.
func (d *Daemon) Store() *store.Store { return d.st }

// Intake accepts uploads as the API does, for harnesses that submit
// without HTTP. It is not gated by shutdown.
func (d *Daemon) Intake() *pipeline.Intake { return d.intake }

// Producer is the daemon's Kafka producer, nil when no role uses Kafka.
func (d *Daemon) Producer() *bus.Producer { return d.producer }

// BusConfig is the Kafka configuration the daemon's clients use.
func (d *Daemon) BusConfig() bus.Config { return d.bcfg }

// Keyring is the vault keyring, nil without a master key.
func (d *Daemon) Keyring() *vault.Keyring { return d.keyring }

// Parts names the parts the configured roles built, in build order.
func (d *Daemon) Parts() []string {
	var names []string
	for _, p := range d.parts {
		names = append(names, p.name)
	}
	return names
}

// Run runs every part until ctx is cancelled or a part fails, then shuts
// down in order within shutdown_timeout: /readyz answers 503 (HTTP still
// serving) for shutdown_delay; intake stops (the scheduler stops firing,
// consumers stop fetching, uploads answer 503); in-flight messages finish
// and commit; the relay and other background parts stop; HTTP closes last;
// the producer and the pool are closed. It returns nil after a cancel, the
// first part's error after a failure, and an error when a part did not
// stop in time. Run closes everything New built; call it once.
func (d *Daemon) Run(ctx context.Context) error {
	if !d.ran.CompareAndSwap(false, true) {
		return errors.New("daemon: Run called twice")
	}
	d.log.Info("running", "roles", d.cfg.Roles, "parts", d.Parts())
	delay := d.cfg.ShutdownDelay
	if d.ln == nil {
		delay = 0 // nobody polls /readyz of a process without HTTP
	}
	return runGroup(ctx, d.log, d.parts, shutdownPlan{
		timeout:    d.cfg.ShutdownTimeout,
		delay:      delay,
		notReady:   func() { d.notReady.Store(true) },
		stopIntake: func() { d.intakeClosed.Store(true) },
		release:    func(context.Context) { d.close() },
	})
}

// Close releases what New built without running it. It does nothing after
// Run, which releases everything itself.
func (d *Daemon) Close() {
	if d.ran.CompareAndSwap(false, true) {
		d.close()
	}
}

func (d *Daemon) close() {
	cs := d.closers
	d.closers = nil
	for _, c := range slices.Backward(cs) {
		c()
	}
}

// provisionTopics creates the topics in the background: a broker that is
// down at start must not stop the API from accepting uploads (the outbox
// holds them until the broker is back). Once done it idles until
// interrupted, as a part must.
func (d *Daemon) provisionTopics(ctx context.Context) error {
	delay := 500 * time.Millisecond
	for {
		err := bus.EnsureTopics(ctx, d.bcfg)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("kafka topics not provisioned yet", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
	<-ctx.Done()
	return nil
}

// waitTopics blocks until the topics exist or ctx ends.
func waitTopics(ctx context.Context, cfg bus.Config) error {
	for {
		if err := bus.EnsureTopics(ctx, cfg); err == nil {
			return nil
		}
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

// sleep waits d unless ctx ends first; it reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
