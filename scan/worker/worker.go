// Package worker runs scheduled scans: it consumes starpipe.scan.requests,
// runs amass, nuclei or the code analyser the schedule names against the
// schedule's targets only, and hands each output to intake, the same path an
// upload takes (artifact, outbox, Kafka, consumer). The run ledger records
// how each due time ended.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/scan/amass"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/vault"
)

// Submitter stores scan output as a run (pipeline.Intake).
type Submitter interface {
	Submit(ctx context.Context, r io.Reader, req pipeline.Request) (string, error)
}

// Credentials resolves a schedule's named credential from the vault.
type Credentials interface {
	Credential(ctx context.Context, name string) (vault.Credential, error)
}

// Options wire a Worker.
type Options struct {
	Submitter   Submitter
	Credentials Credentials // nil: authenticated schedules fail with a clear error
	Ledger      scheduler.LedgerMarker
	StateDir    string   // scanner scratch space
	Templates   []string // nuclei template directories when a schedule names none
	Logger      *slog.Logger
}

// Worker handles scan requests.
type Worker struct {
	opt Options
	log *slog.Logger
}

// New builds a worker.
func New(opt Options) *Worker {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{opt: opt, log: opt.Logger.With("component", "worker")}
}

// Handle runs one scan request. A scan that fails is recorded as failed in
// the ledger and not retried: the next due time is the retry. Only a
// request that cannot be read is poison.
func (w *Worker) Handle(ctx context.Context, msg bus.Message) error {
	req, err := scheduler.DecodeScanRequest(msg.Value)
	if err != nil {
		return err
	}
	var sp spec.Schedule
	if err := json.Unmarshal(req.Spec, &sp); err != nil {
		return bus.Poison(fmt.Errorf("scan request %d: schedule spec: %w", req.LedgerID, err))
	}
	if err := scheduler.Started(ctx, w.opt.Ledger, req.LedgerID, ""); err != nil {
		return err
	}
	log := w.log.With("schedule", sp.Name, "ledger_id", req.LedgerID, "due", req.Due)
	log.Info("scan started", "kind", sp.Kind)
	runs, scanErr := w.scan(ctx, sp)
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: leave the request for redelivery
	}
	first := ""
	if len(runs) > 0 {
		first = runs[0]
	}
	if scanErr != nil {
		log.Warn("scan failed", "err", scanErr, "runs", runs)
	} else {
		log.Info("scan finished", "runs", runs)
	}
	return scheduler.Complete(ctx, w.opt.Ledger, req.LedgerID, first, scanErr)
}

func (w *Worker) scan(ctx context.Context, sp spec.Schedule) ([]string, error) {
	switch sp.Kind {
	case finding.KindExternal, finding.KindAuthenticated:
		return w.web(ctx, sp)
	case finding.KindCode:
		return w.code(ctx, sp)
	}
	return nil, fmt.Errorf("schedule %s: unknown kind %q", sp.Name, sp.Kind)
}

// web runs amass discovery (external schedules with domains) and then
// nuclei, one run per target so that each target is its own scope and a
// clean rescan of it closes what was fixed there.
func (w *Worker) web(ctx context.Context, sp spec.Schedule) ([]string, error) {
	var runs []string
	var errs []error
	targets := normaliseTargets(sp.Targets.URLs)
	if sp.Kind == finding.KindExternal && len(sp.Targets.Domains) > 0 {
		names, runID, err := w.discover(ctx, sp)
		if runID != "" {
			runs = append(runs, runID)
		}
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range names {
			targets = append(targets, "http://"+n, "https://"+n)
		}
	}
	var headers []string
	if sp.Credential != "" {
		if w.opt.Credentials == nil {
			return runs, fmt.Errorf("schedule %s needs credential %q but no vault key is configured", sp.Name, sp.Credential)
		}
		cred, err := w.opt.Credentials.Credential(ctx, sp.Credential)
		if err != nil {
			return runs, fmt.Errorf("schedule %s: credential %q: %w", sp.Name, sp.Credential, err)
		}
		if headers, err = cred.Headers(); err != nil {
			return runs, fmt.Errorf("schedule %s: credential %q: %w", sp.Name, sp.Credential, err)
		}
	}
	dirs := sp.Nuclei.TemplateDirs
	if len(dirs) == 0 {
		dirs = w.opt.Templates
	}
	for _, t := range targets {
		var out bytes.Buffer
		_, err := nuclei.Run(ctx, nuclei.Config{
			Targets: []string{t}, TemplateDirs: dirs,
			Tags: sp.Nuclei.Tags, ExcludeTags: sp.Nuclei.ExcludeTags, Severities: sp.Nuclei.Severities,
			Headers: headers, Resolvers: sp.Amass.Resolvers,
			StateDir: filepath.Join(w.opt.StateDir, "nuclei"),
		}, &out)
		if err != nil {
			errs = append(errs, fmt.Errorf("nuclei %s: %w", t, err))
			continue // a partial scan must not close findings: submit nothing
		}
		id, err := w.opt.Submitter.Submit(ctx, &out, pipeline.Request{
			Kind: string(sp.Kind), Scope: t, Format: "nuclei", ScheduleID: sp.Name,
			Actor: "scheduler", FileName: sp.Name + ".nuclei.jsonl",
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("submit nuclei output for %s: %w", t, err))
			continue
		}
		runs = append(runs, id)
	}
	return runs, errors.Join(errs...)
}

// discover enumerates the schedule's root domains and stores the assets as
// a run of their own.
func (w *Worker) discover(ctx context.Context, sp spec.Schedule) ([]string, string, error) {
	words := sp.Amass.Wordlist
	if sp.Amass.WordlistFile != "" {
		b, err := os.ReadFile(sp.Amass.WordlistFile)
		if err != nil {
			return nil, "", fmt.Errorf("amass wordlist: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				words = append(words, l)
			}
		}
	}
	var out bytes.Buffer
	_, err := amass.Run(ctx, amass.Config{
		Domains: sp.Targets.Domains, Resolvers: sp.Amass.Resolvers, Wordlist: words,
		Recursive: sp.Amass.Recursive, Alterations: sp.Amass.Alterations,
		StateDir: filepath.Join(w.opt.StateDir, "amass"),
	}, &out)
	if err != nil {
		return nil, "", fmt.Errorf("amass: %w", err)
	}
	var names []string
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		var rec struct{ Name string }
		if json.Unmarshal(line, &rec) == nil && rec.Name != "" {
			names = append(names, rec.Name)
		}
	}
	id, err := w.opt.Submitter.Submit(ctx, bytes.NewReader(out.Bytes()), pipeline.Request{
		Kind: string(sp.Kind), Scope: "domains:" + strings.Join(sp.Targets.Domains, ","), Format: "amass",
		ScheduleID: sp.Name, Actor: "scheduler", FileName: sp.Name + ".amass.jsonl",
	})
	if err != nil {
		return names, "", fmt.Errorf("submit amass output: %w", err)
	}
	return names, id, nil
}

// code clones each repository and runs the analyser in it.
func (w *Worker) code(ctx context.Context, sp spec.Schedule) ([]string, error) {
	var token string
	if sp.Credential != "" && w.opt.Credentials != nil {
		cred, err := w.opt.Credentials.Credential(ctx, sp.Credential)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: credential %q: %w", sp.Name, sp.Credential, err)
		}
		token = string(cred.Secret)
	}
	workDir := filepath.Join(w.opt.StateDir, "code")
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, fmt.Errorf("code scan work directory: %w", err)
	}
	var runs []string
	var errs []error
	for _, repo := range sp.Targets.Repositories {
		repo = absLocal(repo)
		var out bytes.Buffer
		_, err := code.Run(ctx, code.Config{
			Repository: repo, Command: sp.Code.Command, Token: token,
			Timeout: time.Duration(sp.Code.Timeout), MaxOutputBytes: sp.Code.MaxOutputBytes,
			WorkDir: workDir,
		}, &out)
		if err != nil {
			errs = append(errs, fmt.Errorf("code scan of %s: %w", code.Scope(repo), err))
			continue
		}
		id, err := w.opt.Submitter.Submit(ctx, &out, pipeline.Request{
			Kind: string(finding.KindCode), Scope: code.Scope(repo), Format: "sarif",
			ScheduleID: sp.Name, Actor: "scheduler", FileName: sp.Name + ".sarif",
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("submit SARIF of %s: %w", code.Scope(repo), err))
			continue
		}
		runs = append(runs, id)
	}
	return runs, errors.Join(errs...)
}

// normaliseTargets turns host:port into a URL and drops a trailing slash,
// so a target's scope reads the same as the same target uploaded by hand.
func normaliseTargets(in []string) []string {
	out := make([]string, 0, len(in))
	for _, t := range in {
		if !strings.Contains(t, "://") {
			t = "http://" + t
		}
		if u, err := url.Parse(t); err == nil && u.Path == "/" {
			t = strings.TrimSuffix(t, "/")
		}
		out = append(out, t)
	}
	return out
}

// absLocal makes a local repository path absolute, so that its scope names
// the repository rather than "." or a path relative to wherever the daemon
// was started.
func absLocal(repo string) string {
	if strings.Contains(repo, "://") || filepath.IsAbs(repo) {
		return repo
	}
	if abs, err := filepath.Abs(repo); err == nil {
		return abs
	}
	return repo
}
