// Package worker runs scheduled scans: it consumes starpipe.scan.requests,
// runs amass, nuclei or the code analyser the schedule names against the
// schedule's targets only, and hands each output to intake, the same path an
// upload takes (artifact, outbox, Kafka, consumer). The run ledger records
// how each due time ended.
//
// Every scanner runs in a child process (starpipe-scanner, through
// scan/scanexec), never in the worker's: a scanner that panics, is killed
// or runs too long fails its run, with its last lines of diagnostics in
// the ledger, and the worker goes on with the next request.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/internal/wordlist"
	"github.com/starpipe/starpipe/scan/amass"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scan/scanexec"
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

// Ledger records and reads the progress of scheduled runs, and reads the
// stored schedules they run; *store.Store implements it.
type Ledger interface {
	MarkLedger(ctx context.Context, id int64, status finding.LedgerStatus, runIDs []string, errText string) error
	GetLedgerEntry(ctx context.Context, id int64) (store.LedgerEntry, error)
	GetSchedule(ctx context.Context, name string) (store.Schedule, error)
}

// Scanner runs one scanner job in a child process and copies its output
// to out; *scanexec.Runner implements it.
type Scanner interface {
	Run(ctx context.Context, job scanexec.Job, out io.Writer) error
}

// Options wire a Worker.
type Options struct {
	Submitter   Submitter
	Credentials Credentials // nil: schedules with a credential fail with a clear error
	Ledger      Ledger
	// StateDir is the scan home: each scanner process gets a HOME and a
	// TMPDIR in a directory of its own under it, removed after the run.
	// Empty: a directory under os.TempDir().
	StateDir  string
	Templates []string // nuclei template directories when a schedule names none
	Logger    *slog.Logger

	// ScannerPath is the starpipe-scanner binary (scan.scanner_path):
	// empty, the one next to the running executable, then the one in
	// PATH (see scanexec.Locate).
	ScannerPath string
	// ScanTimeout bounds each scanner process (none when zero).
	ScanTimeout time.Duration
	// MaxScanDuration bounds a whole scan, every step of one due time
	// (scan.max_duration); a schedule's timeout may lower it. Zero: only
	// the schedule's timeout, if any, applies.
	MaxScanDuration time.Duration
	// MaxScanOutputBytes bounds the output of each scanner process
	// (scanexec.DefaultMaxOutputBytes when zero).
	MaxScanOutputBytes int64
	// Scanner runs the scanner jobs. Nil: a scanexec.Runner built from
	// the fields above. Tests wrap one.
	Scanner Scanner

	// Analyzers are the admin's code analysers (config analyzers:); a
	// code schedule names one and its command is what runs.
	Analyzers map[string]config.AnalyzerConfig
	// CodeWorkDir is where code scans check repositories out (absolute).
	// Empty: the scanner's own TMPDIR, or, when the daemon is root,
	// code.DefaultSandboxDir: the analyser then runs as code.SandboxUser,
	// which cannot enter the state directory, so the checkout must lie
	// outside it, under directories that account may traverse.
	CodeWorkDir string
	// WordlistDir is amass.wordlist_dir, where amass.wordlist_name is read.
	WordlistDir string
	// Network says where scans may connect (scan.allow_networks); nil
	// allows public addresses only. The probe dials through it, and every
	// scanner job carries it for the scanner to enforce at connect time.
	Network *netpolicy.Policy

	// Policy is the admin's bounds on schedules (the daemon's
	// SchedulePolicy, the one schedules are saved under): every stored
	// schedule is checked against it again (spec.Validate and spec.Admit)
	// before it runs, since the configuration may have tightened since it
	// was saved. Nil: the bounds of Analyzers, WordlistDir and Network,
	// without the look-ups of names and credential scopes.
	Policy *spec.Options
}

// ErrTimeLimit is the cause of a scan stopped by its overall time limit.
var ErrTimeLimit = errors.New("scan time limit reached")

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
	log := opt.Logger.With("component", "worker")
	if opt.Policy == nil {
		opt.Policy = &spec.Options{
			Analyzers: slices.Sorted(maps.Keys(opt.Analyzers)), WordlistDir: opt.WordlistDir, Network: opt.Network,
		}
	}
	if opt.Scanner == nil {
		opt.Scanner = NewRunner(opt, log)
	}
	return &Worker{opt: opt, log: log}
}

// NewRunner is the scanner runner New builds from opt when opt.Scanner is
// nil; tests wrap it. The scanners' diagnostics go to log at debug level.
func NewRunner(opt Options, log *slog.Logger) *scanexec.Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &scanexec.Runner{
		Path: opt.ScannerPath, Home: opt.StateDir, Timeout: opt.ScanTimeout,
		MaxOutputBytes: opt.MaxScanOutputBytes, Stderr: logWriter{log},
	}
}

// logWriter logs each line of a scanner's standard error at debug level;
// the runner writes whole lines, with secrets removed.
type logWriter struct{ log *slog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Debug("scanner stderr", "line", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Parallel tells bus.RunOptions that every scan request may run alongside
// others: requests are independent (one ledger row each, which also
// guards against running one twice), so the scan-requests consumer runs
// with bus.RunOptions{Concurrency: scan.concurrency, Parallel: Parallel}
// and a slow or tarpitting target holds one slot, not every schedule.
func Parallel(bus.Message) bool { return true }

// Handle runs one scan request. A scan that fails is recorded as failed in
// the ledger and not retried: the next due time is the retry. A request
// whose ledger row has already ended (a redelivery after the outcome was
// recorded) is not run again.
//
// The request only names what to run (bus.ScanRequest); what runs is the
// stored schedule, loaded by load, and only the version the ledger row was
// claimed under. A request that cannot be read, or that does not match its
// ledger row, is poison, and the row is left alone: whoever wrote such a
// message is not the scheduler, and must not be able to fail its runs.
func (w *Worker) Handle(ctx context.Context, msg bus.Message) error {
	req, err := bus.DecodeScanRequest(msg.Value)
	if err != nil {
		return err
	}
	log := w.log.With("schedule", req.Schedule, "ledger_id", req.LedgerID, "due", req.Due)
	sp, err := w.load(ctx, log, req)
	if err != nil || sp == nil {
		return err
	}
	if err := w.opt.Ledger.MarkLedger(ctx, req.LedgerID, finding.LedgerRunning, nil, ""); err != nil {
		return ledgerError(err)
	}
	limit := w.timeLimit(*sp)
	log.Info("scan started", "kind", sp.Kind, "version", req.Version, "time_limit", limit)
	scanCtx, cancel := context.WithCancel(ctx)
	if limit > 0 {
		scanCtx, cancel = context.WithTimeoutCause(ctx, limit, ErrTimeLimit)
	}
	runs, scanErr := w.scan(scanCtx, *sp)
	timedOut := errors.Is(context.Cause(scanCtx), ErrTimeLimit)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: leave the request for redelivery
	}
	if timedOut {
		// What the steps report after the deadline (a killed scanner, a
		// refused submit) follows from it; the limit is the reason.
		limitErr := fmt.Errorf("schedule %s: %w after %s (the schedule's timeout, capped by scan.max_duration)", sp.Name, ErrTimeLimit, limit)
		scanErr = errors.Join(limitErr, scanErr)
	}
	if scanErr != nil {
		log.Warn("scan failed", "err", scanErr, "runs", runs)
	} else {
		log.Info("scan finished", "runs", runs)
	}
	return w.complete(ctx, log, req.LedgerID, runs, scanErr)
}

// timeLimit is the schedule's own timeout capped by MaxScanDuration; zero
// when neither is set.
func (w *Worker) timeLimit(sp spec.Schedule) time.Duration {
	return lower(w.opt.MaxScanDuration, time.Duration(sp.Timeout))
}

// network is the policy every scanner job carries.
func (w *Worker) network() *scanexec.Network { return scanexec.NetworkOf(w.opt.Network) }

// load returns the schedule a scan request runs: the stored one, at the
// version its ledger row was claimed under, admitted by the current
// policy. It returns nil and no error when there is nothing to run: the
// row has ended already, or load failed it, saying why:
//
//   - the schedule was deleted after the due time;
//   - it changed after the due time (another version): the run is not
//     made with a definition nobody scheduled at that time, neither the
//     old one (an edit may have removed a target that must no longer be
//     scanned) nor the new one (it was not what was due); the next due
//     time runs the new version;
//   - the stored definition cannot be read, or the admin's policy no
//     longer admits it;
//   - the row was claimed by a starpipe from before schedule versions.
func (w *Worker) load(ctx context.Context, log *slog.Logger, req bus.ScanRequest) (*spec.Schedule, error) {
	e, err := w.opt.Ledger.GetLedgerEntry(ctx, req.LedgerID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, bus.Poison(fmt.Errorf("scan request %d for %s: no such ledger row", req.LedgerID, req.Schedule))
	}
	if err != nil {
		return nil, err
	}
	// PostgreSQL keeps microseconds; a due time is a whole minute anyway.
	if e.Schedule != req.Schedule || e.Due.Sub(req.Due).Abs() >= time.Microsecond || e.CatchUp != req.CatchUp ||
		(e.ScheduleVersion != 0 && e.ScheduleVersion != req.Version) {
		return nil, bus.Poison(fmt.Errorf("scan request %d (schedule %s version %d, due %s) does not match its ledger row (schedule %s version %d, due %s): not run",
			req.LedgerID, req.Schedule, req.Version, req.Due.UTC().Format(time.RFC3339), e.Schedule, e.ScheduleVersion, e.Due.UTC().Format(time.RFC3339)))
	}
	switch e.Status {
	case finding.LedgerPending, finding.LedgerRunning:
	default:
		log.Info("scan request already handled", "status", e.Status)
		return nil, nil
	}
	refuse := func(err error) (*spec.Schedule, error) {
		log.Warn("scan not run", "err", err)
		return nil, w.complete(ctx, log, req.LedgerID, nil, err)
	}
	if e.ScheduleVersion == 0 {
		return refuse(fmt.Errorf("schedule %s: this run was claimed before schedules had versions (an older starpipe) and is not run; the next due time runs the stored schedule", req.Schedule))
	}
	sc, err := w.opt.Ledger.GetSchedule(ctx, req.Schedule)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(fmt.Errorf("schedule %s was deleted after this run was due; not run", req.Schedule))
	}
	if err != nil {
		return nil, err
	}
	if sc.Version != e.ScheduleVersion {
		return refuse(fmt.Errorf("schedule %s changed since this run was due (version %d, now %d); not run: the next due time runs the current version",
			req.Schedule, e.ScheduleVersion, sc.Version))
	}
	sp, err := sc.Definition()
	if err == nil && sp.Name != sc.Name {
		err = fmt.Errorf("stored definition is named %q", sp.Name)
	}
	if err != nil {
		return refuse(fmt.Errorf("schedule %s version %d: unreadable stored definition: %w", req.Schedule, sc.Version, err))
	}
	sp.SetDefaults()
	err = sp.Validate(*w.opt.Policy)
	if err == nil {
		err = spec.Admit(ctx, sp, *w.opt.Policy)
	}
	var fe *spec.FieldError
	if errors.As(err, &fe) {
		return refuse(fmt.Errorf("schedule %s version %d is not admitted by the daemon's configuration: %w; not run", req.Schedule, sc.Version, err))
	}
	if err != nil {
		return nil, err // a look-up failed (the database): try again
	}
	return &sp, nil
}

// complete records the outcome with every run the scan produced. A row
// that already ended otherwise (the scheduler gave the run up as abandoned
// while it ran) keeps that outcome, though it gains the runs: retrying
// cannot change it, and returning the conflict would retry the message
// forever.
func (w *Worker) complete(ctx context.Context, log *slog.Logger, ledgerID int64, runIDs []string, scanErr error) error {
	status, errText := finding.LedgerSucceeded, ""
	if scanErr != nil {
		status, errText = finding.LedgerFailed, scanErr.Error()
	}
	err := w.opt.Ledger.MarkLedger(ctx, ledgerID, status, runIDs, errText)
	if errors.Is(err, store.ErrConflict) {
		log.Warn("scan outcome not recorded (its runs are): the ledger row already ended", "err", err, "runs", runIDs)
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
		// The credential goes only where its scope says, checked again
		// here because the schedule may predate the credential's targets.
		for _, t := range targets {
			if err := cred.Scope().Permits(t.url); err != nil {
				return runs, fmt.Errorf("schedule %s: credential %q may not be sent to %s: %w", sp.Name, sp.Credential, t.url, err)
			}
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
	// Relative to the daemon's working directory, not the scanner's.
	dirs = slices.Clone(dirs)
	for i := range dirs {
		dirs[i] = absLocal(dirs[i])
	}
	for _, t := range targets {
		if t.discovered && len(headers) > 0 {
			continue // a credential never goes to a name nobody checked against its scope
		}
		if err := probe(ctx, w.opt.Network, t.url, sp.Amass.Resolvers); err != nil {
			if t.discovered {
				w.log.Info("discovered target not scanned", "schedule", sp.Name, "target", t.url, "reason", err)
				continue
			}
			errs = append(errs, err)
			continue // an unreachable target must not close its findings: submit nothing
		}
		var out bytes.Buffer
		// The scan's temporary files go to the scanner's own TMPDIR.
		err := w.opt.Scanner.Run(ctx, scanexec.Job{Kind: scanexec.KindNuclei, Network: w.network(), Nuclei: &nuclei.Config{
			Targets: []string{t.url}, TemplateDirs: dirs,
			Tags: sp.Nuclei.Tags, ExcludeTags: sp.Nuclei.ExcludeTags, Severities: sp.Nuclei.Severities,
			Headers: headers, Resolvers: sp.Amass.Resolvers,
		}}, &out)
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
func probe(ctx context.Context, policy *netpolicy.Policy, target string, resolvers []string) error {
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
			d := policy.Dialer(nil) // schedule-chosen resolvers are bound by the policy too
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
	d := policy.Dialer(nil)
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
		return nil, "", fmt.Errorf("schedule %s: amass.wordlist_file is no longer read (schedules cannot read host files); use amass.wordlist_name", sp.Name)
	}
	if sp.Amass.WordlistName != "" {
		var err error
		if words, err = wordlist.Read(w.opt.WordlistDir, sp.Amass.WordlistName); err != nil {
			return nil, "", fmt.Errorf("amass word list: %w", err)
		}
	}
	var out bytes.Buffer
	err := w.opt.Scanner.Run(ctx, scanexec.Job{Kind: scanexec.KindAmass, Network: w.network(), Amass: &amass.Config{
		Domains: sp.Targets.Domains, Resolvers: sp.Amass.Resolvers, Wordlist: words,
		Recursive: sp.Amass.Recursive, Alterations: sp.Amass.Alterations,
	}}, &out)
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
		// The token goes only where the credential's targets say,
		// checked again here because the schedule may predate them.
		for _, repo := range sp.Targets.Repositories {
			if err := cred.Scope().Permits(repo); err != nil {
				return nil, fmt.Errorf("schedule %s: credential %q may not be sent to %s: %w", sp.Name, sp.Credential, code.Scope(repo), err)
			}
		}
	}
	an, err := w.analyzer(sp)
	if err != nil {
		return nil, err
	}
	var runs []string
	var errs []error
	for _, repo := range sp.Targets.Repositories {
		repo = absLocal(repo)
		var out bytes.Buffer
		// The checkout goes to the scanner's own TMPDIR (WorkDir empty);
		// the command is the admin's analyzer, never the schedule's.
		err := w.opt.Scanner.Run(ctx, scanexec.Job{Kind: scanexec.KindCode, Network: w.network(), Code: &code.Config{
			Repository: repo, Command: an.Command, Token: token,
			Timeout: lower(an.Timeout, time.Duration(sp.Code.Timeout)), MaxOutputBytes: lower(an.MaxOutputBytes, sp.Code.MaxOutputBytes),
			OutputFile: an.OutputFile, Env: an.EnvList(), WorkDir: w.opt.CodeWorkDir,
		}}, &out)
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

// analyzer returns the admin-configured analyser a code schedule names.
// The schedule's own command, if a stored schedule from before analysers
// still has one, is never run.
func (w *Worker) analyzer(sp spec.Schedule) (config.AnalyzerConfig, error) {
	if len(sp.Code.Command) > 0 {
		return config.AnalyzerConfig{}, fmt.Errorf("schedule %s: code.command is not run (schedules name an analyser); set code.analyzer to one defined in the daemon configuration", sp.Name)
	}
	an, ok := w.opt.Analyzers[sp.Code.Analyzer]
	if !ok {
		return config.AnalyzerConfig{}, fmt.Errorf("schedule %s: no analyser named %q is configured (analyzers: in the daemon configuration)", sp.Name, sp.Code.Analyzer)
	}
	return an, nil
}

// lower applies a schedule's own bound when it is set and tighter than the
// analyser's; zero means "the default" on either side.
func lower[T time.Duration | int64](configured, requested T) T {
	if requested > 0 && (configured == 0 || requested < configured) {
		return requested
	}
	return configured
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

// absLocal makes a local path absolute: a repository's scope then names
// the repository rather than "." or a path relative to wherever the daemon
// was started, and the scanner, which runs in a directory of its own,
// finds the path the schedule meant.
func absLocal(repo string) string {
	if strings.Contains(repo, "://") || filepath.IsAbs(repo) {
		return repo
	}
	if abs, err := filepath.Abs(repo); err == nil {
		return abs
	}
	return repo
}
