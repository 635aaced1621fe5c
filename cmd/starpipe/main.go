// Command starpipe is the one binary of the starpipe daemon: it serves the
// pipeline, runs the embedded development stack, applies migrations, ingests
// and scores files, and manages schedules and keys.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // schedule time zones work on hosts without zoneinfo

	"github.com/spf13/cobra"
)

// subcommands is filled by each command file's init so that commands live
// next to their flags and help text.
var subcommands []func() *cobra.Command

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "starpipe",
		Short:         "Scanner-ingestion and findings pipeline producing CSA STAR Level 3 evidence",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "starpipe:", err)
		os.Exit(1)
	}
}
