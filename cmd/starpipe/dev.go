package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/demo"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/pgcluster"
	"github.com/starpipe/starpipe/vault"
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
			cfg, err := config.Load(cfgFile)
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
	if err := devScanDefaults(&cfg, dir); err != nil {
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

	cfg.Database.URL = pg.URL()
	cfg.Kafka.Brokers = emb.Addrs()
	tokenFile := filepath.Join(dir, "admin.token")
	return runDaemon(ctx, cfg, log, &hooks{
		keyStateDir: dir,
		afterStore: func(ctx context.Context, st *store.Store) error {
			if err := ensureAdminToken(ctx, st, tokenFile, log); err != nil {
				return err
			}
			if cfg.Scheduler.SchedulesFile != "" {
				return nil // runDaemon applies it
			}
			// The example's authenticated schedule names the demo
			// credential, which must exist (with its targets) before the
			// schedule can be saved.
			kr, err := loadOrCreateKeyring(dir, cfg.Vault.KeyFile)
			if err != nil && !errors.Is(err, vault.ErrNoKey) {
				return fmt.Errorf("load vault key: %w", err)
			}
			if _, err := demoToken(ctx, st, kr, filepath.Join(dir, "demo.token"), demoListen, log); err != nil {
				return err
			}
			// With no schedules file of its own, dev loads the example,
			// which is aimed at the demo target.
			b, err := fs.ReadFile(configs.FS, "schedules.example.yaml")
			if err != nil {
				return err
			}
			return applySchedules(ctx, cfg, st, bytes.NewReader(b), "configs/schedules.example.yaml", log)
		},
		background: func(ctx context.Context, st *store.Store, kr *vault.Keyring) error {
			if demoListen == "" {
				return nil
			}
			token, err := demoToken(ctx, st, kr, filepath.Join(dir, "demo.token"), demoListen, log)
			if err != nil {
				return err
			}
			// The demo is a convenience: a busy port must not stop the
			// daemon, only the demo schedules' scans (which then fail with
			// "unreachable" in their ledger).
			if err := demo.Serve(ctx, demoListen, token, log); err != nil {
				log.Warn("demo target not started; use --demo-listen to pick another address", "err", err)
			}
			return nil
		},
	})
}

// demoToken returns the bearer token that opens the demo's admin area and
// makes sure the vault holds it as credential "demo-bearer", which the
// authenticated example schedule names.
func demoToken(ctx context.Context, st *store.Store, kr *vault.Keyring, path, demoListen string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		b = []byte(hex.EncodeToString(raw))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", fmt.Errorf("write demo token: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("read demo token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if kr == nil {
		return token, nil
	}
	// The demo target is plain http on loopback: the credential is bound
	// to it, and nothing else.
	if demoListen == "" {
		demoListen = "127.0.0.1:8081"
	}
	scope := vault.Scope{Targets: []string{"http://" + demoListen + "/"}, AllowHTTP: true}
	m, err := st.CredentialMetadata(ctx, "demo-bearer")
	switch {
	case errors.Is(err, store.ErrNotFound):
		cred := vault.Credential{Name: "demo-bearer", Kind: vault.KindBearer, Secret: vault.Secret(token),
			Targets: scope.Targets, AllowHTTP: scope.AllowHTTP}
		if _, _, err := credentials.Save(ctx, st, kr, cred, "starpipe-dev"); err != nil {
			return "", fmt.Errorf("store demo credential: %w", err)
		}
		log.Info("stored demo credential", "name", "demo-bearer")
	case err != nil:
		return "", err
	case len(m.Targets) == 0:
		// Stored by a version before credential targets.
		if err := credentials.SetTargets(ctx, st, "demo-bearer", scope, "starpipe-dev"); err != nil {
			return "", fmt.Errorf("set demo credential targets: %w", err)
		}
	}
	return token, nil
}

// devScanDefaults adds what the demo schedules need to the admin
// configuration: loopback is a scan target (the demo web application),
// and the stand-in analyser "demo-sast", written from the binary to the
// state directory, is defined unless the configuration defines it.
func devScanDefaults(cfg *config.Config, dir string) error {
	cfg.Scan.AllowNetworks = append(cfg.Scan.AllowNetworks, "127.0.0.0/8", "::1")
	if _, ok := cfg.Analyzers["demo-sast"]; ok {
		return nil
	}
	b, err := fs.ReadFile(configs.FS, "demo/sast.sh")
	if err != nil {
		return err
	}
	script := filepath.Join(dir, "demo-sast.sh")
	if err := os.WriteFile(script, b, 0o755); err != nil {
		return fmt.Errorf("write demo analyser: %w", err)
	}
	if cfg.Analyzers == nil {
		cfg.Analyzers = map[string]config.AnalyzerConfig{}
	}
	cfg.Analyzers["demo-sast"] = config.AnalyzerConfig{Command: []string{"sh", script}, Timeout: 15 * time.Minute}
	return nil
}

// ensureAdminToken creates an admin token on first start and writes it where
// only this user can read it. Tokens are stored hashed, so a lost file
// cannot be recovered: a new token is minted instead.
func ensureAdminToken(ctx context.Context, st *store.Store, path string, log *slog.Logger) error {
	if _, err := os.Stat(path); err == nil {
		log.Info("admin token", "file", path)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin token file: %w", err)
	}
	name := "admin"
	if exists, err := st.TokenExists(ctx, name); err != nil {
		return err
	} else if exists {
		name = "admin-" + strconv.FormatInt(int64(os.Getpid()), 10)
	}
	tok, err := st.CreateToken(ctx, name, "admin")
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	log.Info("created admin token", "file", path, "name", name)
	fmt.Fprintf(os.Stderr, "\nstarpipe: admin token written to %s\n  curl -H \"Authorization: Bearer $(cat %s)\" http://<listen>/v1/runs\n\n", path, path)
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
