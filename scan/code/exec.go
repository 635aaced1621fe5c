package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/starpipe/starpipe/scan/internal/procgroup"
)

const (
	// stderrTail is how much of the end of the command's diagnostics is
	// kept for error messages.
	stderrTail = 8 << 10
	// waitDelay bounds how long Run waits for the command's output pipes
	// after the command exited or was killed: a stray background process
	// may hold them open.
	waitDelay = 5 * time.Second
	// defaultPath is the command's PATH when the daemon has none.
	defaultPath = "/usr/local/bin:/usr/bin:/bin"
)

// runCommand runs cfg.Command in dirs.checkout and copies its SARIF to
// out. It returns the exit code and the number of bytes written.
func runCommand(ctx context.Context, cfg Config, dirs workDirs, sb sandbox, out io.Writer, red redactor) (int, int64, error) {
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, cfg.Timeout, ErrTimeout)
	defer cancelTimeout()
	// kill stops the command early when its output cannot be taken.
	cmdCtx, kill := context.WithCancelCause(ctx)
	defer kill(nil)

	prog := cfg.Command[0]
	cmd := exec.CommandContext(cmdCtx, prog, cfg.Command[1:]...)
	cmd.Dir = dirs.checkout
	cmd.Env = commandEnv(dirs, cfg.Env)
	cmd.Stdin = nil // reads get EOF: nothing waits for a terminal
	cmd.WaitDelay = waitDelay
	procgroup.Isolate(cmd, syscall.SIGKILL)
	sb.apply(cmd)

	diag := &tailBuffer{max: stderrTail}
	cmd.Stderr = diag
	sink := &limitWriter{w: out, max: cfg.MaxOutputBytes, fail: kill}
	if cfg.OutputFile == "" {
		cmd.Stdout = sink
	} else {
		// The same writer for both: exec then writes to it from one
		// goroutine at a time.
		cmd.Stdout = diag
	}

	runErr := cmd.Run()
	if cmd.Process != nil {
		// Tools may leave helpers behind (semgrep-core workers, language
		// servers): the group goes with the command.
		procgroup.KillGroup(cmd.Process.Pid)
	}
	// Helpers that left the group (setsid) come back to a subreaper.
	killOrphans()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	fail := func(format string, args ...any) (int, int64, error) {
		return code, sink.n, fmt.Errorf(format, args...)
	}

	switch {
	case sink.exceeded:
		return fail("command %s: %w (%d bytes)", prog, ErrOutputTooLarge, cfg.MaxOutputBytes)
	case sink.writeErr != nil:
		return fail("command %s: writing output: %w", prog, sink.writeErr)
	case errors.Is(context.Cause(ctx), ErrTimeout):
		return fail("command %s: %w: still running after %s%s", prog, ErrTimeout, cfg.Timeout, diag.suffix(red))
	case ctx.Err() != nil:
		return fail("command %s: %w", prog, context.Cause(ctx))
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		// It did not start, or left processes holding its output open.
		return fail("%w: %s: %s%s", ErrCommand, prog, red.scrub(runErr.Error()), diag.suffix(red))
	}

	if cfg.OutputFile != "" {
		if err := copyOutputFile(dirs.checkout, cfg.OutputFile, sb, sink); err != nil {
			if sink.exceeded {
				return fail("output file %s: %w (%d bytes)", cfg.OutputFile, ErrOutputTooLarge, cfg.MaxOutputBytes)
			}
			if sink.writeErr != nil {
				return fail("output file %s: writing output: %w", cfg.OutputFile, sink.writeErr)
			}
			return fail("%w: %s exited with code %d and its output file is unreadable: %s%s",
				ErrCommand, prog, code, red.scrub(err.Error()), diag.suffix(red))
		}
	}

	switch {
	case sink.n > 0 && sink.sniff.first == '{':
		// Exit 0, or the "found issues" exit of a SAST tool with its report.
		return code, sink.n, nil
	case code != 0:
		return fail("%w: %s exited with code %d without SARIF output%s", ErrCommand, prog, code, diag.suffix(red))
	case sink.n == 0:
		return fail("%w: %s produced no output%s", ErrCommand, prog, diag.suffix(red))
	default:
		// Exit 0 with something that is not a JSON object: the ingester
		// would reject it anyway, but the cause is clearer here.
		return fail("%w: %s output is not a SARIF (JSON object) document%s", ErrCommand, prog, diag.suffix(red))
	}
}

// commandEnv is the command's whole environment: the daemon's PATH (to
// find the tools), a HOME and TMPDIR of its own inside the run's directory,
// then extra, whose entries win over the ones before.
func commandEnv(dirs workDirs, extra []string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path, "HOME=" + dirs.home, "TMPDIR=" + dirs.tmp}
	return append(env, extra...)
}

// copyOutputFile copies the command's output file to w. The file is opened
// through an os.Root so that a symbolic link committed to the repository
// cannot make Run read a file outside the checkout.
//
// A sandboxed analyser's output file must be its own: a hard link it made
// to a file of another user (where the kernel allows that) is refused.
func copyOutputFile(checkout, name string, sb sandbox, w io.Writer) error {
	root, err := os.OpenRoot(checkout)
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", name)
	}
	if sb.run {
		if uid, _ := owner(st); uid != sb.uid {
			return fmt.Errorf("%s is not a file the analyser wrote (owner uid %d)", name, uid)
		}
	}
	_, err = io.Copy(w, f)
	return err
}

// limitWriter passes writes on to w until max bytes, then fails and calls
// fail, which kills the command: a tool that floods its output is not left
// to run until the timeout.
type limitWriter struct {
	w        io.Writer
	max, n   int64
	fail     context.CancelCauseFunc
	exceeded bool
	writeErr error // from w
	sniff    jsonSniffer
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.writeErr != nil {
		return 0, l.writeErr
	}
	if l.exceeded {
		return 0, ErrOutputTooLarge
	}
	if int64(len(p)) > l.max-l.n {
		l.exceeded = true
		l.stop(ErrOutputTooLarge)
		return 0, ErrOutputTooLarge
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	l.sniff.observe(p[:n])
	if err != nil {
		l.writeErr = err
		l.stop(err)
	}
	return n, err
}

func (l *limitWriter) stop(err error) {
	if l.fail != nil {
		l.fail(err)
	}
}

// jsonSniffer finds the first significant byte of a stream: the first one
// after a UTF-8 byte order mark and JSON white space.
type jsonSniffer struct {
	n     int  // bytes seen before first
	bom   int  // how many of them matched the byte order mark
	first byte // 0 until found
}

var utf8BOM = [3]byte{0xEF, 0xBB, 0xBF}

func (s *jsonSniffer) observe(p []byte) {
	for _, c := range p {
		if s.first != 0 {
			return
		}
		if s.n < len(utf8BOM) && s.bom == s.n && c == utf8BOM[s.n] {
			s.n++
			s.bom++
			continue
		}
		s.n++
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		s.first = c
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	// Trimming only past twice the size keeps the copying amortised.
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// suffix formats the kept diagnostics for the end of an error message.
func (t *tailBuffer) suffix(red redactor) string {
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	if len(b) == 0 {
		return ""
	}
	return "; stderr tail: " + strconv.Quote(red.scrub(string(b)))
}
