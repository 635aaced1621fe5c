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
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/scan/amass"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
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

// Ledger records and reads the progress of scheduled runs; *store.Store
// implements it.
type Ledger interface {
	MarkLedger(ctx context.Context, id int64, status, runID, errText string) error
	ListLedger(ctx context.Context, schedule string, from, to time.Time) ([]store.LedgerEntry, error)
}

// Options wire a Worker.
type Options struct {
	Submitter   Submitter
	Credentials Credentials // nil: schedules with a credential fail with a clear error
	Ledger      Ledger
	StateDir    string   // scanner scratch space; empty: a directory under os.TempDir()
	Templates   []string // nuclei template directories when a schedule names none
	Logger      *slog.Logger
}

// probeTimeout bounds the name lookup and the connection that check a
// target is up before it is scanned.
const probeTimeout = 10 * time.Second

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
	if opt.StateDir == "" {
		// Not the working directory, which filepath.Join("", ...) would give.
		opt.StateDir = filepath.Join(os.TempDir(), "starpipe-scan")
	}
	return &Worker{opt: opt, log: opt.Logger.With("component", "worker")}
}

// Handle runs one scan request. A scan that fails is recorded as failed in
// the ledger and not retried: the next due time is the retry. Only a
// request that cannot be read is poison. A request whose ledger row has
// already ended (a redelivery after the outcome was recorded) is not run
// again.
func (w *Worker) Handle(ctx context.Context, msg bus.Message) error {
	req, err := bus.DecodeScanRequest(msg.Value)
	if err != nil {
		return err
	}
	log := w.log.With("schedule", req.Schedule, "ledger_id", req.LedgerID, "due", req.Due)
	done, err := w.finished(ctx, req)
	if err != nil {
		return err
	}
	if done != "" {
		log.Info("scan request already handled", "status", done)
		return nil
	}
	var sp spec.Schedule
	if err := json.Unmarshal(req.Spec, &sp); err != nil {
		err = fmt.Errorf("scan request %d: schedule spec: %w", req.LedgerID, err)
		// Fail the row now rather than leave it pending until it is
		// abandoned: nothing will ever run it.
		if merr := w.complete(ctx, log, req.LedgerID, "", err); merr != nil && !bus.IsPoison(merr) {
			return merr
		}
		return bus.Poison(err)
	}
	if err := w.opt.Ledger.MarkLedger(ctx, req.LedgerID, store.LedgerRunning, "", ""); err != nil {
		return ledgerError(err)
	}
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
	return w.complete(ctx, log, req.LedgerID, first, scanErr)
}

// finished returns the status of the request's ledger row when it has
// already ended, and "" when the request is still to be run.
func (w *Worker) finished(ctx context.Context, req bus.ScanRequest) (string, error) {
	// The row is found by its schedule and due time (an indexed range) and
	// picked by id; the window only absorbs timestamp rounding.
	es, err := w.opt.Ledger.ListLedger(ctx, req.Schedule, req.Due.Add(-time.Second), req.Due.Add(time.Second))
	if err != nil {
		return "", err
	}
	for _, e := range es {
		if e.ID != req.LedgerID {
			continue
		}
		switch e.Status {
		case store.LedgerPending, store.LedgerRunning:
			return "", nil
		}
		return e.Status, nil
	}
	return "", bus.Poison(fmt.Errorf("scan request %d for %s: no such ledger row", req.LedgerID, req.Schedule))
}

// complete records the outcome. A row that already ended otherwise (the
// scheduler gave the run up as abandoned while it ran) keeps that
// outcome: retrying cannot change it, and returning the conflict would
// retry the message forever.
func (w *Worker) complete(ctx context.Context, log *slog.Logger, ledgerID int64, runID string, scanErr error) error {
	status, errText := store.LedgerSucceeded, ""
	if scanErr != nil {
		status, errText = store.LedgerFailed, scanErr.Error()
	}
	err := w.opt.Ledger.MarkLedger(ctx, ledgerID, status, runID, errText)
	if errors.Is(err, store.ErrConflict) {
		log.Warn("scan outcome not recorded: the ledger row already ended", "err", err, "run_id", runID)
		return nil
	}
	return ledgerError(err)
}

// ledgerError makes an unknown ledger row poison; other errors (the
// database is unreachable) are retried.
func ledgerError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return bus.Poison(err)
	}
	return err
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
//
// A target is scanned only once it accepts a connection: nuclei reports
// nothing and no error for a target that is down, and submitting that
// empty output would resolve every finding of the scope. A configured
// target that is down fails the scan; a discovered name is tried over
// http and https and skipped where nothing listens.
func (w *Worker) web(ctx context.Context, sp spec.Schedule) ([]string, error) {
	var runs []string
	var errs []error
	type target struct {
		url        string
		discovered bool
	}
	var targets []target
	seen := map[string]bool{}
	add := func(u string, discovered bool) {
		if !seen[u] {
			seen[u] = true
			targets = append(targets, target{u, discovered})
		}
	}
	for _, u := range normaliseTargets(sp.Targets.URLs) {
		add(u, false)
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
	if sp.Kind == finding.KindExternal && len(sp.Targets.Domains) > 0 {
		names, runID, err := w.discover(ctx, sp)
		if runID != "" {
			runs = append(runs, runID)
		}
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range names {
			add("http://"+n, true)
			add("https://"+n, true)
		}
	}
	dirs := sp.Nuclei.TemplateDirs
	if len(dirs) == 0 {
		dirs = w.opt.Templates
	}
	for _, t := range targets {
		if err := probe(ctx, t.url, sp.Amass.Resolvers); err != nil {
			if t.discovered {
				w.log.Info("discovered target not scanned", "schedule", sp.Name, "target", t.url, "reason", err)
				continue
			}
			errs = append(errs, err)
			continue // an unreachable target must not close its findings: submit nothing
		}
		var out bytes.Buffer
		_, err := nuclei.Run(ctx, nuclei.Config{
			Targets: []string{t.url}, TemplateDirs: dirs,
			Tags: sp.Nuclei.Tags, ExcludeTags: sp.Nuclei.ExcludeTags, Severities: sp.Nuclei.Severities,
			Headers: headers, Resolvers: sp.Amass.Resolvers,
			StateDir: filepath.Join(w.opt.StateDir, "nuclei"),
		}, &out)
		if err != nil {
			errs = append(errs, fmt.Errorf("nuclei %s: %w", t.url, err))
			continue // a partial scan must not close findings: submit nothing
		}
		id, err := w.opt.Submitter.Submit(ctx, &out, pipeline.Request{
			Kind: string(sp.Kind), Scope: t.url, Format: "nuclei", ScheduleID: sp.Name,
			Actor: "scheduler", FileName: sp.Name + ".nuclei.jsonl", Environment: sp.Environment,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("submit nuclei output for %s: %w", t.url, err))
			continue
		}
		runs = append(runs, id)
	}
	return runs, errors.Join(errs...)
}

// probe checks that target accepts a TCP connection, looking its host up
// with resolvers (ip or ip:port; the system's when empty), as nuclei does.
// It contacts nothing but the target and those resolvers.
func probe(ctx context.Context, target string, resolvers []string) error {
	u, err := url.Parse(target)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("target %s: not a URL with a host", target)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	res := net.DefaultResolver
	if len(resolvers) > 0 {
		servers := make([]string, 0, len(resolvers))
		for _, r := range resolvers {
			if ap, err := netip.ParseAddrPort(r); err == nil {
				servers = append(servers, ap.String())
			} else if a, err := netip.ParseAddr(r); err == nil {
				servers = append(servers, netip.AddrPortFrom(a, 53).String())
			}
		}
		res = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			var err error
			for _, s := range servers {
				var c net.Conn
				if c, err = d.DialContext(ctx, network, s); err == nil {
					return c, nil
				}
			}
			return nil, errors.Join(errors.New("no resolver"), err)
		}}
	}
	addrs := []string{u.Hostname()}
	if _, err := netip.ParseAddr(u.Hostname()); err != nil {
		if addrs, err = res.LookupHost(ctx, u.Hostname()); err != nil {
			return fmt.Errorf("target %s unreachable: %w", target, err)
		}
	}
	errs := []error{errors.New("no address")}
	var d net.Dialer
	for i, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a, port))
		if err == nil {
			c.Close()
			return nil
		}
		if i == 0 {
			errs = errs[:0]
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("target %s unreachable: %w", target, errors.Join(errs...))
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
		Kind: string(sp.Kind), Scope: domainsScope(sp.Targets.Domains), Format: "amass",
		ScheduleID: sp.Name, Actor: "scheduler", FileName: sp.Name + ".amass.jsonl",
	})
	if err != nil {
		return names, "", fmt.Errorf("submit amass output: %w", err)
	}
	return names, id, nil
}

// domainsScope names the scope of a discovery run: the root domains,
// lower-case, sorted and without a trailing dot, so that the same domains
// written differently are one scope.
func domainsScope(domains []string) string {
	ds := make([]string, 0, len(domains))
	for _, d := range domains {
		ds = append(ds, strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), "."))
	}
	slices.Sort(ds)
	return "domains:" + strings.Join(slices.Compact(ds), ",")
}

// code clones each repository and runs the analyser in it.
func (w *Worker) code(ctx context.Context, sp spec.Schedule) ([]string, error) {
	var token string
	if sp.Credential != "" {
		if w.opt.Credentials == nil {
			return nil, fmt.Errorf("schedule %s needs credential %q but no vault key is configured", sp.Name, sp.Credential)
		}
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
			ScheduleID: sp.Name, Actor: "scheduler", FileName: sp.Name + ".sarif", Environment: sp.Environment,
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
