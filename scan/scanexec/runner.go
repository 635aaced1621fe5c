package scanexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starpipe/starpipe/scan/internal/procgroup"
)

// Defaults applied by Runner for zero fields.
const (
	DefaultMaxOutputBytes = 256 << 20
	DefaultStderrLines    = 30
	DefaultGracePeriod    = 5 * time.Second
	// defaultPath is the scanner's PATH when the daemon has none.
	defaultPath = "/usr/local/bin:/usr/bin:/bin"
	// versionOutputLimit bounds what `starpipe-scanner version` may print.
	versionOutputLimit = 4 << 10
)

// Exit codes of starpipe-scanner exec. Any other status (2 is Go's for an
// unrecovered panic) or a signal is a crash.
const (
	ExitOK = 0
	// ExitFailed: the scan failed; the last line of standard error says
	// why, prefixed by ErrorPrefix.
	ExitFailed = 1
	// ExitUsage: the job could not be read, or speaks another protocol.
	ExitUsage = 3
)

// ErrorPrefix starts the line in which the scanner reports why a scan
// failed (exit code ExitFailed).
const ErrorPrefix = "error: "

// Errors of Runner.Run, to be tested with errors.Is.
var (
	// ErrNotFound: no scanner binary where it was looked for.
	ErrNotFound = errors.New("scanner binary not found")
	// ErrProtocol: the scanner speaks another protocol version.
	ErrProtocol = errors.New("scanner protocol version mismatch")
	// ErrTimeout: the scanner ran past Runner.Timeout and was killed.
	ErrTimeout = errors.New("scanner timed out")
	// ErrOutputTooLarge: the scanner wrote more than Runner.MaxOutputBytes
	// and was killed.
	ErrOutputTooLarge = errors.New("scanner output larger than the limit")
	// ErrCrashed: the scanner died of a signal or a panic, or exited with
	// a status the protocol does not define.
	ErrCrashed = errors.New("scanner crashed")
	// ErrFailed: the scanner reported that the scan failed.
	ErrFailed = errors.New("scan failed")
)

// Error is a scanner run that did not succeed. Its text carries the
// scanner's last lines of standard error, with the job's secrets removed.
type Error struct {
	Kind  Kind
	State string   // how the process ended: "exit status 2", "signal: killed", ...
	Cause error    // one of the Err* values above
	Msg   string   // the scanner's own error line, or the panic line of a crash
	Tail  []string // last lines of standard error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s scanner: %v (%s)", e.Kind, e.Cause, e.State)
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if len(e.Tail) > 0 {
		b.WriteString("; last scanner stderr lines:")
		for _, l := range e.Tail {
			b.WriteString("\n  ")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Cause }

// Runner starts starpipe-scanner for each job. The zero value finds the
// binary with Locate and keeps its files under os.TempDir(); a Runner is
// safe for concurrent use, each Run being a process of its own.
type Runner struct {
	// Path is the scanner binary as configured (scan.scanner_path): a path,
	// or a name looked up in PATH; empty: Locate's default.
	Path string
	// Home is the scan home. Every run gets a fresh directory under it
	// holding the scanner's HOME and TMPDIR, removed when the run ends.
	Home string
	// Env holds extra KEY=value entries for the scanner (test hooks). The
	// daemon's own environment is never passed on: only PATH, HOME,
	// TMPDIR and the XDG directories derived from HOME, then these.
	Env []string
	// MaxOutputBytes bounds the scanner's standard output
	// (DefaultMaxOutputBytes when zero).
	MaxOutputBytes int64
	// Timeout bounds each run, including the version check (none when
	// zero). Callers may also bound a run with ctx.
	Timeout time.Duration
	// GracePeriod is how long a scanner told to stop (SIGTERM to its
	// group) has before its group is killed (DefaultGracePeriod when
	// zero).
	GracePeriod time.Duration
	// StderrLines is how many of the last lines of standard error an
	// Error carries (DefaultStderrLines when zero).
	StderrLines int
	// Stderr, when set, receives the scanner's standard error as it comes
	// (its logs), with the job's secrets removed line by line.
	Stderr io.Writer

	mu      sync.Mutex
	binary  string // located Path
	checked string // identity of the binary whose version was checked
}

// Version is what `starpipe-scanner version` prints, as JSON.
type Version struct {
	Protocol int    `json:"protocol"`
	Version  string `json:"version"`
}

// Run runs job in a new scanner process and copies its standard output
// to out. When Run returns an error, what was written to out must be
// discarded: the scan did not complete.
func (r *Runner) Run(ctx context.Context, job Job, out io.Writer) error {
	job.Protocol = ProtocolVersion
	if err := job.Validate(); err != nil {
		return err
	}
	input, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encoding scanner job: %w", err)
	}
	path, err := r.check(ctx)
	if err != nil {
		return err
	}
	return r.run(ctx, path, []string{"exec"}, input, job.Kind, job.redactor(), r.maxOutput(), out)
}

// Check locates the scanner binary and verifies its protocol version, so
// that a daemon can refuse to start its worker without a usable scanner.
// Run does the same before each job (the binary may be replaced while the
// daemon runs).
func (r *Runner) Check(ctx context.Context) error {
	_, err := r.check(ctx)
	return err
}

func (r *Runner) check(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.binary == "" {
		p, err := Locate(r.Path)
		if err != nil {
			return "", err
		}
		r.binary = p
	}
	id, err := fileIdentity(r.binary)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNotFound, r.binary, err)
	}
	if id == r.checked {
		return r.binary, nil
	}
	var out bytes.Buffer
	if err := r.run(ctx, r.binary, []string{"version"}, nil, "version", func(s string) string { return s }, versionOutputLimit, &out); err != nil {
		return "", fmt.Errorf("asking %s for its version: %w", r.binary, err)
	}
	var v Version
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		return "", fmt.Errorf("%w: %s does not report a version (%v): is it starpipe-scanner?", ErrProtocol, r.binary, err)
	}
	if v.Protocol != ProtocolVersion {
		return "", fmt.Errorf("%w: %s (version %s) speaks protocol %d, this starpipe %d: install the starpipe-scanner built with this starpipe",
			ErrProtocol, r.binary, v.Version, v.Protocol, ProtocolVersion)
	}
	r.checked = id
	return r.binary, nil
}

// fileIdentity changes when the file at p is replaced or rewritten.
func fileIdentity(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s\x00%d\x00%d", p, st.Size(), st.ModTime().UnixNano()), nil
}

// run starts the scanner with args, input on its standard input, and
// copies up to limit bytes of its standard output to out.
func (r *Runner) run(ctx context.Context, path string, args []string, input []byte, kind Kind, redact func(string) string, limit int64, out io.Writer) (err error) {
	dir, err := r.runDir()
	if err != nil {
		return err
	}
	defer func() {
		if rmErr := procgroup.RemoveTree(dir); rmErr != nil && err == nil {
			err = fmt.Errorf("removing scanner run directory: %w", rmErr)
		}
	}()

	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.Timeout, ErrTimeout)
		defer cancel()
	}
	// stop ends the process early when its output cannot be taken.
	cmdCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	cmd := exec.CommandContext(cmdCtx, path, args...)
	cmd.Dir = dir
	cmd.Env = r.env(dir)
	cmd.Stdin = bytes.NewReader(input)
	sink := &limitWriter{w: out, max: limit, stop: stop}
	cmd.Stdout = sink
	tail := newTailWriter(r.stderrLines(), redact, r.Stderr)
	cmd.Stderr = tail
	// After SIGTERM the scanner has the grace period to stop its own
	// children (a code analyser runs in a process group of its own) and
	// exit; then exec kills it, and killGroup below the rest of its group.
	cmd.WaitDelay = r.grace()
	procgroup.Isolate(cmd, syscall.SIGTERM)

	runErr := cmd.Run()
	if cmd.Process != nil {
		procgroup.KillGroup(cmd.Process.Pid)
	}
	tail.flush()
	if runErr == nil && !sink.exceeded && sink.writeErr == nil {
		return nil
	}
	e := &Error{Kind: kind, State: "not started", Tail: tail.lines()}
	if cmd.ProcessState != nil {
		e.State = cmd.ProcessState.String()
	}
	switch {
	case sink.exceeded:
		e.Cause, e.Msg = ErrOutputTooLarge, fmt.Sprintf("more than %d bytes", limit)
	case sink.writeErr != nil:
		return fmt.Errorf("%s scanner: writing its output: %w", kind, sink.writeErr)
	case errors.Is(context.Cause(ctx), ErrTimeout):
		e.Cause, e.Msg = ErrTimeout, fmt.Sprintf("killed after %s", r.Timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("%s scanner stopped: %w", kind, context.Cause(ctx))
	case cmd.ProcessState == nil:
		return fmt.Errorf("%w: starting %s: %v", ErrNotFound, path, runErr)
	default:
		code := cmd.ProcessState.ExitCode()
		switch {
		case code == ExitFailed || code == ExitUsage:
			e.Cause = ErrFailed
			if last := tail.last(); strings.HasPrefix(last, ErrorPrefix) {
				e.Msg = strings.TrimPrefix(last, ErrorPrefix)
				e.Tail = e.Tail[:len(e.Tail)-1]
			}
			if code == ExitUsage {
				e.Cause = ErrProtocol
			}
		default:
			e.Cause, e.Msg = ErrCrashed, tail.crashLine()
		}
	}
	return e
}

// runDir makes a fresh directory under the scan home with the scanner's
// HOME and TMPDIR in it.
func (r *Runner) runDir() (string, error) {
	home := r.Home
	if home == "" {
		home = filepath.Join(os.TempDir(), "starpipe-scan")
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", fmt.Errorf("creating scan home: %w", err)
	}
	dir, err := os.MkdirTemp(home, "run-")
	if err != nil {
		return "", fmt.Errorf("creating scanner run directory: %w", err)
	}
	for _, d := range []string{"home", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("creating scanner run directory: %w", err)
		}
	}
	return dir, nil
}

// env is the scanner's whole environment. Nothing of the daemon's is
// passed but PATH, which the code analysers need to find their tools.
func (r *Runner) env(dir string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	home := filepath.Join(dir, "home")
	env := []string{
		"PATH=" + path,
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
	}
	return append(env, r.Env...)
}

func (r *Runner) maxOutput() int64 {
	if r.MaxOutputBytes > 0 {
		return r.MaxOutputBytes
	}
	return DefaultMaxOutputBytes
}

func (r *Runner) grace() time.Duration {
	if r.GracePeriod > 0 {
		return r.GracePeriod
	}
	return DefaultGracePeriod
}

func (r *Runner) stderrLines() int {
	if r.StderrLines > 0 {
		return r.StderrLines
	}
	return DefaultStderrLines
}

// limitWriter passes writes on to w up to max bytes; beyond, it fails and
// calls stop, which ends the scanner: one that floods its output is not
// left to run until its timeout.
type limitWriter struct {
	w        io.Writer
	max, n   int64
	stop     context.CancelCauseFunc
	exceeded bool
	writeErr error
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.exceeded {
		return 0, ErrOutputTooLarge
	}
	if l.writeErr != nil {
		return 0, l.writeErr
	}
	if int64(len(p)) > l.max-l.n {
		l.exceeded = true
		l.stop(ErrOutputTooLarge)
		return 0, ErrOutputTooLarge
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	if err != nil {
		l.writeErr = err
		l.stop(err)
	}
	return n, err
}
