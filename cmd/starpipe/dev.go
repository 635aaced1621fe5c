package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/internal/daemon"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/pgcluster"
)

func init() { subcommands = append(subcommands, newDevCmd) }

func newDevCmd() *cobra.Command {
	var (
		cfgFile    string
		state      string
		listen     string
		demoListen string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack on one machine: private PostgreSQL, embedded Kafka-protocol broker, daemon",
		Long: `dev starts a private PostgreSQL cluster from the system's PostgreSQL
binaries and an in-process Kafka-protocol broker, both keeping their data
under the state directory, then serves every role. Data survives restarts.
The embedded broker is for one machine; production runs ` + "`starpipe serve`" + `
against PostgreSQL and a Kafka cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// One machine, no load balancer: no shutdown delay unless
			// the file or the environment sets one.
			defaults := config.Default()
			defaults.ShutdownDelay = 0
			cfg, err := config.LoadOver(defaults, cfgFile)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("state") {
				cfg.StateDir = state
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			log := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			return runDev(cmd.Context(), cfg, log, demoListen)
		},
	}
	cmd.Flags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&state, "state", ".starpipe", "state directory (database, broker log, admin token)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	cmd.Flags().StringVar(&demoListen, "demo-listen", "127.0.0.1:8081", `loopback address of the deliberately weak demo target ("" to turn it off)`)
	return cmd
}

func runDev(ctx context.Context, cfg config.Config, log *slog.Logger, demoListen string) error {
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	// Private: it holds the master key, tokens and database passwords. The
	// PostgreSQL account (when root) keeps its data in its own home and
	// never enters it; a directory left 0711 by an older version is closed.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("make state directory private: %w", err)
	}
	unlock, err := lockStateDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := devScanDefaults(&cfg); err != nil {
		return err
	}

	// Clean-up must run even though ctx is already cancelled by the signal.
	cleanup := context.WithoutCancel(ctx)

	pg, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(dir, "postgres"), Logger: log})
	if err != nil {
		return fmt.Errorf("start private PostgreSQL: %w", err)
	}
	defer func() {
		if err := pg.Stop(cleanup); err != nil {
			log.Error("stop PostgreSQL", "err", err)
		}
	}()
	log.Info("private PostgreSQL running", "url", redactURL(pg.URL()))
	// Migrate as the superuser, which hands every table to the daemon's
	// role except the activity log (see store.Migrate); the daemon then
	// connects as that role and finds nothing left to migrate.
	if err := store.Migrate(ctx, pg.AdminURL(""), store.MigrateLogger(log)); err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}

	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedConfig{
		DataDir:    filepath.Join(dir, "kafka"),
		Partitions: cfg.Kafka.Partitions,
	}, log)
	if err != nil {
		return fmt.Errorf("start embedded broker: %w", err)
	}
	defer emb.Close()
	log.Info("embedded Kafka-protocol broker running", "brokers", emb.Addrs())

	cfg.StateDir = dir
	cfg.Database.URL = pg.URL()
	cfg.Kafka.Brokers = emb.Addrs()
	// dev creates a vault key in its state directory on first start.
	kr, err := daemonKeyring(dir, cfg, log)
	if err != nil {
		return err
	}
	opts := []daemon.Option{
		daemon.WithKeyring(kr),
		daemon.WithAdminToken(filepath.Join(dir, "admin.token")),
	}
	if demoListen != "" {
		// Before the example schedules: the authenticated one names the
		// demo credential, which must exist (with its targets) first.
		opts = append(opts, daemon.WithDemoTarget(demoListen, filepath.Join(dir, "demo.token")))
	}
	// With no schedules file of its own, dev loads the example, which is
	// aimed at the demo target (and names its credential): without the
	// demo there is nothing for it to scan.
	if demoListen != "" {
		opts = append(opts, daemon.WithExampleSchedules(demoListen))
	}
	return runDaemon(ctx, cfg, log, opts...)
}

// devScanDefaults adds what the demo schedules need to the admin
// configuration: loopback is a scan target (the demo web application),
// and the stand-in analyser "demo-sast", shipped in the binary, is defined
// unless the configuration defines it. Its script is passed inline to sh,
// not written to a file: as root, analysers run as the starpipe-scan
// account, which cannot read the private state directory.
func devScanDefaults(cfg *config.Config) error {
	cfg.Scan.AllowNetworks = append(cfg.Scan.AllowNetworks, "127.0.0.0/8", "::1")
	if _, ok := cfg.Analyzers["demo-sast"]; ok {
		return nil
	}
	b, err := fs.ReadFile(configs.FS, "demo/sast.sh")
	if err != nil {
		return err
	}
	if cfg.Analyzers == nil {
		cfg.Analyzers = map[string]config.AnalyzerConfig{}
	}
	cfg.Analyzers["demo-sast"] = config.AnalyzerConfig{Command: []string{"sh", "-c", string(b), "demo-sast"}, Timeout: 15 * time.Minute}
	return nil
}

// lockStateDir makes a second `starpipe dev` on the same directory refuse
// before it touches anything. The lock is released by the kernel if the
// process dies, so a crash never leaves the directory locked.
func lockStateDir(dir string) (func(), error) {
	path := filepath.Join(dir, "starpipe.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(b))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("state directory %s is in use by another starpipe (pid %s); stop it first or use --state", dir, pid)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// redactURL hides a password in a connection URL for logs.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	cred := u[scheme+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return u[:scheme+3] + user + ":xxxxx" + u[at:]
	}
	return u
}
