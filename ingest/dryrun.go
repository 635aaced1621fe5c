package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

// DryRunOptions control DryRun.
type DryRunOptions struct {
	Format Format           // FormatAuto or "" to detect per file
	Kind   finding.ScanKind // scan kind stamped on findings ("" : parser default)
	Scope  string           // scope stamped on findings ("" : derived per finding)
	Limits parse.Limits

	// PrintFindings writes every normalised finding and asset as a JSON
	// line before the file's summary line.
	PrintFindings bool
	// Explain adds the control links (with their reasons) to printed
	// findings.
	Explain bool
	// Enrich, when set, is called on every finding before it is counted or
	// printed (scoring and mapping). Without it severity fields stay as the
	// parser left them.
	Enrich func(*finding.Finding)

	// Progress, when set, receives a progress bar for files larger than
	// ProgressThreshold. The caller decides whether it is a terminal.
	Progress io.Writer
	// Stdin is read for the file name "-" (default os.Stdin).
	Stdin io.Reader
}

// ProgressThreshold is the file size above which DryRun shows progress.
const ProgressThreshold = 16 << 20

// Summary is the dry-run line for one file.
type Summary struct {
	File        string         `json:"file"`
	Format      Format         `json:"format"`
	Findings    int            `json:"findings"` // includes suppressed findings
	Suppressed  int            `json:"suppressed"`
	NotFindings int            `json:"not_findings"`
	Assets      int            `json:"assets"`
	BySeverity  SeverityCounts `json:"by_severity"`
	Controls    map[string]int `json:"controls"` // findings per CCM control id
	Errors      []string       `json:"errors"`
}

// SeverityCounts counts findings per severity, highest first so the JSON
// reads in that order.
type SeverityCounts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	Info     int `json:"info"`
}

func (c *SeverityCounts) add(s finding.Severity) {
	switch s {
	case finding.SeverityCritical:
		c.Critical++
	case finding.SeverityHigh:
		c.High++
	case finding.SeverityMedium:
		c.Medium++
	case finding.SeverityLow:
		c.Low++
	default:
		c.Info++
	}
}

// findingLine is a printed finding: what a reviewer checks in a dry run.
type findingLine struct {
	Fingerprint    string                 `json:"fingerprint"`
	Scope          string                 `json:"scope"`
	Kind           finding.ScanKind       `json:"kind"`
	Tool           string                 `json:"tool"`
	Rule           string                 `json:"rule"`
	Title          string                 `json:"title"`
	Location       finding.Location       `json:"location"`
	CWE            []int                  `json:"cwe,omitempty"`
	CVE            []string               `json:"cve,omitempty"`
	CVSSVector     string                 `json:"cvss_vector,omitempty"`
	Severity       finding.Severity       `json:"severity"`
	SeveritySource finding.SeveritySource `json:"severity_source"`
	Suppressed     bool                   `json:"suppressed"`
	Justification  string                 `json:"suppression_justification,omitempty"`
	Controls       *[]finding.ControlLink `json:"controls,omitempty"` // only with Explain
}

type assetLine struct {
	Asset *finding.Asset `json:"asset"`
}

// DryRun parses each file and writes, per file, one JSON summary line to
// out (preceded by finding and asset lines with PrintFindings). Nothing is
// stored. failed is true when any file could not be parsed; err is set only
// when writing to out failed or ctx was cancelled, and stops the run.
func DryRun(ctx context.Context, files []string, opt DryRunOptions, out io.Writer) (failed bool, err error) {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return failed, err
		}
		sum, werr := dryRunFile(ctx, file, opt, enc)
		if werr != nil {
			return true, werr
		}
		if len(sum.Errors) > 0 {
			failed = true
		}
		if err := enc.Encode(sum); err != nil {
			return true, fmt.Errorf("writing dry-run summary: %w", err)
		}
		if err := w.Flush(); err != nil {
			return true, fmt.Errorf("writing dry-run output: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return failed, err
		}
	}
	return failed, nil
}

// writeError marks an output failure, which stops the run, apart from
// parse failures, which are reported per file.
type writeError struct{ err error }

func (e *writeError) Error() string { return "writing dry-run output: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func dryRunFile(ctx context.Context, file string, opt DryRunOptions, enc *json.Encoder) (Summary, error) {
	sum := Summary{File: file, Controls: map[string]int{}, Errors: []string{}}
	popt := parse.Options{File: file, Kind: opt.Kind, Scope: opt.Scope, Limits: opt.Limits}
	var werr *writeError
	sink := parse.Sink{
		Finding: func(f *finding.Finding) error {
			if opt.Enrich != nil {
				opt.Enrich(f)
			}
			sum.Findings++
			if f.Suppressed {
				sum.Suppressed++
			}
			sum.BySeverity.add(f.Severity)
			counted := map[string]bool{}
			for _, c := range f.Controls {
				// A finding evidences a control once, however many rules
				// link it there.
				if !counted[c.Control] {
					counted[c.Control] = true
					sum.Controls[c.Control]++
				}
			}
			if opt.PrintFindings {
				if err := enc.Encode(lineFor(f, opt.Explain)); err != nil {
					werr = &writeError{err}
					return werr
				}
			}
			return nil
		},
		Asset: func(a *finding.Asset) error {
			sum.Assets++
			if opt.PrintFindings {
				if err := enc.Encode(assetLine{a}); err != nil {
					werr = &writeError{err}
					return werr
				}
			}
			return nil
		},
	}

	var (
		format Format
		st     parse.Stats
		err    error
	)
	if file == "-" {
		in := opt.Stdin
		if in == nil {
			in = os.Stdin
		}
		format, st, err = ParseReader(ctx, in, opt.Format, popt, sink)
	} else {
		format, st, err = dryRunPath(ctx, file, opt, popt, sink)
	}
	if werr != nil {
		return sum, werr
	}
	sum.Format = format
	if sum.Format == "" {
		sum.Format = "unknown"
	}
	sum.NotFindings = st.NotFindings
	if err != nil {
		sum.Errors = append(sum.Errors, err.Error())
	}
	return sum, nil
}

// dryRunPath parses a named file, with a progress bar for big files.
func dryRunPath(ctx context.Context, path string, opt DryRunOptions, popt parse.Options, sink parse.Sink) (Format, parse.Stats, error) {
	f, err := openFile(path, path)
	if err != nil {
		return "", parse.Stats{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if opt.Progress != nil {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > ProgressThreshold {
			bar := progressbar.NewOptions64(fi.Size(),
				progressbar.OptionSetWriter(opt.Progress),
				progressbar.OptionSetDescription(path),
				progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(100_000_000), // 100 ms
				progressbar.OptionClearOnFinish(),
			)
			defer bar.Close()
			r = io.TeeReader(f, bar)
		}
	}
	return parseOpened(ctx, r, path, opt.Format, popt, sink)
}

func lineFor(f *finding.Finding, explain bool) findingLine {
	l := findingLine{
		Fingerprint:    f.Fingerprint,
		Scope:          f.Scope,
		Kind:           f.Kind,
		Tool:           f.Tool,
		Rule:           f.RuleID,
		Title:          f.Title,
		Location:       f.Location,
		CWE:            f.CWE,
		CVE:            f.CVE,
		CVSSVector:     f.Signals.Vector,
		Severity:       f.Severity,
		SeveritySource: f.SeveritySource,
		Suppressed:     f.Suppressed,
		Justification:  f.Justification,
	}
	if f.CVSS != nil && f.CVSS.Vector != "" {
		l.CVSSVector = f.CVSS.Vector
	}
	if explain {
		c := f.Controls
		if c == nil {
			c = []finding.ControlLink{}
		}
		l.Controls = &c
	}
	return l
}
