package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

func init() { subcommands = append(subcommands, newSchedulesCmd) }

func newSchedulesCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Validate, apply and list scan schedules, and read their run ledger",
		Long: `Manages scan schedules in the database (database.url). A schedules file
holds a "schedules:" list; configs/schedules.example.yaml documents every
field. Files are validated as a whole: one bad schedule refuses the file,
with the line, the field and the reason for every problem.`,
	}
	cmd.PersistentFlags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")
	cmd.AddCommand(newSchedulesValidateCmd(&cfgFile), newSchedulesApplyCmd(&cfgFile), newSchedulesListCmd(&cfgFile),
		newSchedulesLedgerCmd(&cfgFile))
	return cmd
}

// loadSchedules reads and validates a file, printing every problem to
// stderr; the error is then only an exit status.
func loadSchedules(cmd *cobra.Command, file string, opts spec.Options) ([]spec.Schedule, error) {
	ss, err := spec.LoadFile(file, opts)
	if err == nil {
		return ss, nil
	}
	// errors.Join puts one problem per line.
	fmt.Fprintln(cmd.ErrOrStderr(), err)
	n := len(strings.Split(err.Error(), "\n"))
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: refused (%d problem%s); nothing was applied\n", file, n, plural(n))
	return nil, exitError{code: 1}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func newSchedulesValidateCmd(cfgFile *string) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check a schedules file without touching the database",
		Long: `Checks a schedules file: strict YAML (unknown keys are errors), every field
of every schedule against the daemon configuration (--config: analyzers,
amass.wordlist_dir, scan.allow_networks), and unique names. Credentials are
not looked up: apply does that. Prints each schedule's next due time
on success; exits 1 listing every problem otherwise.`,
		Example: `  starpipe schedules validate -f configs/schedules.example.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(*cfgFile)
			if err != nil {
				return err
			}
			opts, err := schedulePolicy(cfg, nil)
			if err != nil {
				return err
			}
			opts.Resolver = nil // offline: names are checked on apply and at connect time
			ss, err := loadSchedules(cmd, file, opts)
			if err != nil {
				return err
			}
			now := time.Now()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tKIND\tCADENCE\tTZ\tENABLED\tNEXT DUE")
			for _, s := range ss {
				rec, err := scheduler.Record(s)
				if err != nil {
					return err
				}
				next, err := scheduler.NextDue(rec, now)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\n", s.Name, s.Kind, s.Cadence, s.Timezone, s.IsEnabled(), formatDue(next, s.Timezone))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d schedule%s valid\n", file, len(ss), plural(len(ss)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "schedules file (YAML)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func newSchedulesApplyCmd(cfgFile *string) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the schedules of a file in the database",
		Long: `Validates the whole file first and refuses it on any problem. Then creates
or replaces every schedule in it, in one transaction, each change recorded in
the activity log; a running scheduler picks the changes up at once.
Schedules in the database that the file does not name are left alone
(delete them with DELETE /v1/schedules/NAME).

A change of cadence, time zone or start date, or re-enabling a schedule,
restarts what it owes: due times before the change are not recorded as
missed.`,
		Example: `  starpipe schedules apply -f configs/schedules.example.yaml
  STARPIPE_DATABASE_URL=postgres://... starpipe schedules apply -f schedules.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, cfg, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			opts, err := schedulePolicy(cfg, st)
			if err != nil {
				return err
			}
			ss, err := loadSchedules(cmd, file, opts)
			if err != nil {
				return err
			}
			created, err := scheduler.Apply(cmd.Context(), st, ss, cliActor("schedules-apply"), opts)
			if err != nil {
				return withMigrateHint(err)
			}
			for i, s := range ss {
				verb := "applied"
				if created[i] {
					verb = "created"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", verb, s.Name)
				// A missing credential is not a reason to refuse the file (it
				// may be stored next), but the scans would fail without it.
				if s.Credential != "" {
					if _, err := st.CredentialID(cmd.Context(), s.Credential); errors.Is(err, store.ErrNotFound) {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: credential %q does not exist yet; store it with `starpipe credentials set --name %s ...`\n",
							s.Name, s.Credential, s.Credential)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "schedules file (YAML)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// scheduleRow is one schedule as `starpipe schedules list --json` prints it.
type scheduleRow struct {
	Name       string               `json:"name"`
	Kind       string               `json:"kind"`
	Cadence    string               `json:"cadence"`
	Timezone   string               `json:"timezone"`
	Enabled    bool                 `json:"enabled"`
	NextDue    time.Time            `json:"next_due,omitzero"`
	LastStatus finding.LedgerStatus `json:"last_status,omitempty"`
	LastDue    time.Time            `json:"last_due,omitzero"`
}

func newSchedulesListCmd(cfgFile *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List schedules with their next due time and last ledger status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			scs, err := st.ListSchedules(cmd.Context())
			if err != nil {
				return withMigrateHint(err)
			}
			now := time.Now()
			rows := make([]scheduleRow, 0, len(scs))
			for _, sc := range scs {
				next, err := scheduler.NextDue(sc, now)
				if err != nil {
					return err
				}
				rows = append(rows, scheduleRow{Name: sc.Name, Kind: sc.Kind, Cadence: sc.Cadence, Timezone: sc.Timezone,
					Enabled: sc.Enabled, NextDue: next, LastStatus: sc.LastStatus, LastDue: sc.LastDue})
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			return printScheduleTable(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func printScheduleTable(out io.Writer, rows []scheduleRow) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tKIND\tCADENCE\tTZ\tENABLED\tNEXT DUE\tLAST STATUS")
	for _, r := range rows {
		last := "-"
		if r.LastStatus != "" {
			last = string(r.LastStatus) + " (due " + formatDue(r.LastDue, r.Timezone) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", r.Name, r.Kind, r.Cadence, r.Timezone, r.Enabled, formatDue(r.NextDue, r.Timezone), last)
	}
	return w.Flush()
}

func newSchedulesLedgerCmd(cfgFile *string) *cobra.Command {
	var (
		asJSON   bool
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "ledger NAME",
		Short: "Show a schedule's run ledger: every due time, its outcome and each scan run it produced",
		Long: `Prints one row per due time of the schedule in [--from, --to) (the last 31
days by default): its status (pending, running, succeeded, failed, skipped,
missed), and under it every scan run the due time produced, with the run's
scope, tool and status in the ingest pipeline. An external schedule with
domains produces an amass run and then a nuclei run per target.`,
		Example: `  starpipe schedules ledger web
  starpipe schedules ledger web --from 2030-01-01T00:00:00Z --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fromT, toT time.Time
			fromT = time.Now().Add(-31 * 24 * time.Hour)
			for _, p := range []struct {
				flag, v string
				dst     *time.Time
			}{{"--from", from, &fromT}, {"--to", to, &toT}} {
				if p.v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, p.v)
				if err != nil {
					return fmt.Errorf("%s: %q is not an RFC 3339 time like 2030-01-31T00:00:00Z", p.flag, p.v)
				}
				*p.dst = t
			}
			st, _, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			sc, err := st.GetSchedule(cmd.Context(), args[0])
			if err != nil {
				return withMigrateHint(err)
			}
			es, err := st.ListLedger(cmd.Context(), sc.Name, fromT, toT)
			if err != nil {
				return withMigrateHint(err)
			}
			if asJSON {
				// The API's shape (GET /v1/schedules/{name}/ledger entries),
				// so that scripts read one format.
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(api.LedgerEntriesOf(es))
			}
			return printLedger(cmd.OutOrStdout(), es, sc.Timezone)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().StringVar(&from, "from", "", "first due time (RFC 3339); default 31 days ago")
	cmd.Flags().StringVar(&to, "to", "", "due times before this (RFC 3339); default open-ended")
	return cmd
}

// printLedger prints each due time, then its runs indented under it.
func printLedger(out io.Writer, es []store.LedgerEntry, tz string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DUE\tSTATUS\tRUN\tTOOL\tSCOPE\tRUN STATUS")
	for _, e := range es {
		status := string(e.Status)
		if e.CatchUp {
			status += " (catch-up)"
		}
		if len(e.Runs) == 0 {
			fmt.Fprintf(w, "%s\t%s\t-\t\t\t\n", formatDue(e.Due, tz), status)
		}
		for i, r := range e.Runs {
			due := ""
			if i == 0 {
				due = formatDue(e.Due, tz)
			} else {
				status = ""
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", due, status, r.ID, r.Tool, r.Scope, r.Status)
		}
		if e.Error != "" {
			fmt.Fprintf(w, "\t  error: %s\t\t\t\t\n", e.Error)
		}
	}
	return w.Flush()
}

// formatDue shows a due time on the schedule's own wall clock, where its
// cadence is written, with the offset so that it is unambiguous.
func formatDue(t time.Time, tz string) string {
	if t.IsZero() {
		return "-"
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		t = t.In(loc)
	}
	return t.Format("2006-01-02 15:04 -07:00")
}

// withMigrateHint explains the error a database without the schedules
// tables gives.
func withMigrateHint(err error) error {
	if store.IsUndefinedTable(err) {
		return fmt.Errorf("%w (is the database migrated? run `starpipe migrate`)", err)
	}
	return err
}
