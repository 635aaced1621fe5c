package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/internal/daemon"
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
			log := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			// serve never invents a vault key: one it made up would leave
			// every stored credential unreadable.
			kr, err := daemonKeyring("", cfg, log)
			if err != nil {
				return err
			}
			return runDaemon(cmd.Context(), cfg, log, daemon.WithKeyring(kr))
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

// runDaemon builds the daemon for cfg's roles and runs it until ctx is
// cancelled (SIGINT, SIGTERM) or a part fails.
func runDaemon(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...daemon.Option) error {
	log.Info("starting", "version", versionString(), "roles", cfg.Roles)
	opts = append([]daemon.Option{daemon.WithLogger(log), daemon.WithVersion(version)}, opts...)
	d, err := daemon.New(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// daemonKeyring loads the vault keyring: STARPIPE_MASTER_KEY, vault.key_file,
// or (stateDir set, `dev` only) a key created in the state directory. No
// key at all is not an error: the daemon runs with credentials disabled.
func daemonKeyring(stateDir string, cfg config.Config, log *slog.Logger) (*vault.Keyring, error) {
	kr, err := loadOrCreateKeyring(stateDir, cfg.Vault.KeyFile)
	if errors.Is(err, vault.ErrNoKey) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load vault key: %w", err)
	}
	return kr, nil
}

// busConfig turns the daemon configuration into the bus package's, with
// TLS and SASL read from their files.
func busConfig(cfg config.Config) (bus.Config, error) { return daemon.BusConfig(cfg) }
