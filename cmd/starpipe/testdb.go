package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/store/pgcluster"
)

func init() { subcommands = append(subcommands, newTestDBCmd) }

// newTestDBCmd is the hidden `starpipe testdb` used by `make test`: start
// prints the URL of a private, fsync-off PostgreSQL and returns with the
// server still running (export it as STARPIPE_TEST_DATABASE_URL); stop shuts
// it down. Between the two no process holds the state directory's lock, so
// the tests can run and a crashed `make test` can always be cleaned up with
// stop.
func newTestDBCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "testdb",
		Short:  "Start or stop a throw-away PostgreSQL for the test suite",
		Hidden: true,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "state directory of the test server (required)")
	_ = cmd.MarkPersistentFlagRequired("dir")

	logger := func(cmd *cobra.Command) *slog.Logger {
		// stdout carries only the URL, so that `$(starpipe testdb start ...)`
		// captures it; progress goes to stderr.
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	start := &cobra.Command{
		Use:   "start",
		Short: "Start the test server and print its URL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// As root the server's files go to the server account's home
			// (see pgcluster.Config.ServerDir): a clone under /root could
			// not hold them.
			c, err := pgcluster.Start(cmd.Context(), pgcluster.Config{Dir: dir, DisableFsync: true, Logger: logger(cmd)})
			if err != nil {
				return fmt.Errorf("starting test PostgreSQL: %w", err)
			}
			// Leave the server running for the tests and free the directory
			// for `testdb stop`.
			c.Detach()
			// The tests create a database each: the superuser's URL.
			_, err = fmt.Fprintln(cmd.OutOrStdout(), c.AdminURL(""))
			return err
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the test server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Stopping must finish even if make is being interrupted.
			ctx := context.WithoutCancel(cmd.Context())
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err := pgcluster.StopDir(ctx, dir, logger(cmd)); err != nil {
				return fmt.Errorf("stopping test PostgreSQL: %w", err)
			}
			return nil
		},
	}
	cmd.AddCommand(start, stop)
	return cmd
}
