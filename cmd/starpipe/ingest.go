package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
)

func init() { subcommands = append(subcommands, newIngestCmd) }

// ingestFlags are the flags of `starpipe ingest`.
type ingestFlags struct {
	dryRun        bool
	format        string
	kind          string
	scope         string
	printFindings bool
	explain       bool
	mapping       string
	limits        parse.Limits

	// Storing modes.
	server   string
	token    string
	insecure bool
	caFile   string
	wait     bool
	timeout  time.Duration
	schedule string
	cfgFile  string
}

func newIngestCmd() *cobra.Command {
	var fl ingestFlags
	cmd := &cobra.Command{
		Use:   "ingest [flags] FILE...",
		Short: "Normalise scanner output files (SARIF, nuclei, Amass) into findings and assets",
		Long: `Reads scanner output files and normalises them into starpipe findings
(SARIF, nuclei) and assets (Amass). The format is detected from each file's
content unless --format says otherwise; "-" reads standard input.

With --dry-run nothing is stored: each file gets one JSON summary line on
standard output, preceded by one line per finding and asset with
--print-findings. The exit status is 1 when any file could not be parsed.

Without --dry-run each file becomes a scan run: with --server it is uploaded
to a running daemon (POST /v1/runs, token from --token or STARPIPE_TOKEN;
plain http only to a loopback address unless --insecure);
without it, it is stored straight into the configured database and queued
for the configured brokers. Either way the run id is printed; --wait waits
for the run to finish and prints its summary. --scope is required.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !fl.dryRun {
				return runSubmit(cmd, args, fl)
			}
			return runDryRun(cmd, args, fl)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&fl.dryRun, "dry-run", false, "parse and report without storing anything")
	f.StringVar(&fl.format, "format", "auto", "input format: auto, sarif, nuclei or amass")
	f.StringVar(&fl.kind, "kind", "", "scan kind stamped on findings: external, authenticated or code (default: the parser's)")
	f.StringVar(&fl.scope, "scope", "", "scope stamped on findings (default: derived from each finding)")
	f.BoolVar(&fl.printFindings, "print-findings", false, "print every normalised finding and asset as a JSON line")
	f.BoolVar(&fl.explain, "explain", false, "with --print-findings, show the controls each finding maps to and why")
	f.StringVar(&fl.mapping, "mapping", "", "mapping rules file (default: the built-in rules)")
	f.StringVar(&fl.server, "server", "", "daemon URL to upload to, e.g. http://127.0.0.1:8080")
	f.StringVar(&fl.token, "token", "", "API token for --server (default: $STARPIPE_TOKEN)")
	f.BoolVar(&fl.insecure, "insecure", false, "allow --server over plain http to a host that is not loopback (the token travels in clear)")
	f.StringVar(&fl.caFile, "ca-file", "", "PEM CA that signed the daemon's certificate, for an https --server with a private CA")
	f.BoolVar(&fl.wait, "wait", false, "wait for each run to finish and print its summary")
	f.DurationVar(&fl.timeout, "timeout", 10*time.Minute, "how long --wait waits for one run")
	f.StringVar(&fl.schedule, "schedule", "", "schedule the run belongs to (optional)")
	f.StringVarP(&fl.cfgFile, "config", "c", "", "configuration file for storing without --server")
	f.Int64Var(&fl.limits.MaxBytes, "max-bytes", 0, "largest file accepted, in bytes (0: default 16 GiB, -1: no limit)")
	f.IntVar(&fl.limits.MaxDepth, "max-depth", 0, "deepest JSON nesting accepted (0: default 128, -1: no limit)")
	f.IntVar(&fl.limits.MaxString, "max-string", 0, "longest JSON string or text line accepted, in bytes (0: default 16 MiB, -1: no limit)")
	f.IntVar(&fl.limits.MaxResults, "max-results", 0, "most results accepted from one file (0: default 10,000,000, -1: no limit)")
	return cmd
}

// runDryRun is `starpipe ingest --dry-run`.
func runDryRun(cmd *cobra.Command, files []string, fl ingestFlags) error {
	format, err := ingest.ParseFormat(fl.format)
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	var kind finding.ScanKind
	if fl.kind != "" {
		if kind, err = finding.ParseScanKind(fl.kind); err != nil {
			return fmt.Errorf("--kind: %w", err)
		}
	}
	stdin := 0
	for _, f := range files {
		if f == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return errors.New(`standard input ("-") can be read only once`)
	}
	opt := ingest.DryRunOptions{
		Format:        format,
		Kind:          kind,
		Scope:         fl.scope,
		Limits:        fl.limits,
		PrintFindings: fl.printFindings,
		Explain:       fl.explain,
		Stdin:         cmd.InOrStdin(),
	}
	if opt.Enrich, err = dryRunEnricher(fl.mapping); err != nil {
		return fmt.Errorf("loading mapping: %w", err)
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opt.Progress = os.Stderr
	}
	failed, err := ingest.DryRun(cmd.Context(), files, opt, cmd.OutOrStdout())
	if err != nil {
		return err
	}
	if failed {
		return exitError{code: 1}
	}
	return nil
}
