package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/activity"
)

func init() { subcommands = append(subcommands, newActivityCmd) }

// Exit statuses of `activity verify`: 1 when the chain does not hold (or
// the file is not a well-formed export, which is as good as tampered), 2
// when it could not be checked at all (no file, no database).
const (
	exitChainBroken = 1
	exitNotChecked  = 2
)

func newActivityCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "activity",
		Short: "Export and verify the hash-chained activity log",
	}
	cmd.PersistentFlags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML); only for the live table")

	verify := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "Check an export file offline, or without FILE the live table",
		Long: `Check that the activity log's hash chain holds.

With FILE (an export from GET /v1/activity/export or ` + "`starpipe activity export`" + `;
"-" reads standard input) the check is offline: no database and no
configuration are needed. Without FILE the whole table in the configured
database is checked from its first row.

Exit status 0 when the chain holds; 1 naming the first row that breaks it
(its seq, id, the file line, and what differs); 2 when nothing could be
checked (unreadable file, database unreachable).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res activity.Result
			var err error
			what := "the live activity log"
			if len(args) == 1 {
				what = args[0]
				res, err = verifyFile(cmd, args[0])
			} else {
				st, _, oerr := openConfiguredStore(cmd.Context(), cfgFile)
				if oerr != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "starpipe: activity verify:", oerr)
					return exitError{exitNotChecked}
				}
				defer st.Close()
				res, err = activity.VerifyTable(cmd.Context(), st)
			}
			if err != nil {
				var brk *activity.BreakError
				var nf notCheckedError
				code := exitChainBroken
				if errors.As(err, &nf) || (!errors.As(err, &brk) && len(args) == 0) {
					code = exitNotChecked
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "FAIL %s: %v\n", what, err)
				return exitError{code}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "OK %s: rows %d to %d (%d rows) chain from %s to %s\n",
				what, res.FirstSeq, res.LastSeq, res.Count, res.PrevHash, res.LastHash)
			return err
		},
	}

	var from, to, out string
	export := &cobra.Command{
		Use:   "export [--from TIME] [--to TIME] [-o FILE]",
		Short: "Write a self-contained, verifiable export of the log (JSON lines) from the configured database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseCLITime("from", from)
			if err != nil {
				return err
			}
			t, err := parseCLITime("to", to)
			if err != nil {
				return err
			}
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			var w io.Writer = cmd.OutOrStdout()
			if out != "" && out != "-" {
				file, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("creating %s: %w", out, err)
				}
				defer file.Close()
				w = file
				if err := activity.WriteExport(cmd.Context(), w, st, f, t, time.Now()); err != nil {
					return err
				}
				return file.Close()
			}
			return activity.WriteExport(cmd.Context(), w, st, f, t, time.Now())
		},
	}
	export.Flags().StringVar(&from, "from", "", "first time included (RFC 3339 or YYYY-MM-DD, UTC)")
	export.Flags().StringVar(&to, "to", "", "first time excluded (RFC 3339 or YYYY-MM-DD, UTC)")
	export.Flags().StringVarP(&out, "output", "o", "", "file to write (default standard output)")

	cmd.AddCommand(verify, export)
	return cmd
}

// notCheckedError is a file that could not be read at all.
type notCheckedError struct{ err error }

func (e notCheckedError) Error() string { return e.err.Error() }
func (e notCheckedError) Unwrap() error { return e.err }

func verifyFile(cmd *cobra.Command, path string) (activity.Result, error) {
	var r io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return activity.Result{}, notCheckedError{err}
		}
		defer f.Close()
		r = f
	}
	return activity.VerifyExport(r)
}

func parseCLITime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2025-01-31T00:00:00Z) or a date (2025-01-31)", name, v)
}
