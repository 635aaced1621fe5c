package scanexec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
)

// fakeScanner writes a shell script that answers `version` with the given
// protocol and runs body for `exec`, and returns its path.
func fakeScanner(t *testing.T, protocol int, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-scanner")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in\nversion) echo '{\"protocol\":%d,\"version\":\"fake\"}' ;;\nexec)\n%s\n;;\nesac\n", protocol, body)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func nucleiJob(headers ...string) scanexec.Job {
	return scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: &nuclei.Config{Targets: []string{"http://127.0.0.1:1"}, TemplateDirs: []string{"/nonexistent"}, Headers: headers}}
}

// TestEnvironmentIsMinimal checks that the scanner sees PATH, a HOME, XDG
// directories and a TMPDIR inside a fresh run directory under the scan
// home, and nothing else of the caller's environment.
func TestEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("STARPIPE_DATABASE_URL", "postgres://user:secret@db/starpipe")
	t.Setenv("STARPIPE_MASTER_KEY", "c2VjcmV0")
	home := t.TempDir()
	r := &scanexec.Runner{Path: fakeScanner(t, scanexec.ProtocolVersion, "exec env"), Home: home}
	var out bytes.Buffer
	if err := r.Run(t.Context(), nucleiJob(), &out); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.Lines(out.String()) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue // set by the shell that runs the fake scanner
		}
		env[k] = v
	}
	var keys []string
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"HOME", "PATH", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"}
	if !slices.Equal(keys, want) {
		t.Fatalf("scanner environment has %v, want exactly %v", keys, want)
	}
	for _, k := range want[1:] {
		if k == "PATH" {
			continue
		}
		if !strings.HasPrefix(env[k], home+string(os.PathSeparator)+"run-") {
			t.Errorf("%s=%s is not inside a run directory of the scan home %s", k, env[k], home)
		}
	}
	if !strings.HasPrefix(env["HOME"], home+string(os.PathSeparator)+"run-") {
		t.Errorf("HOME=%s is not inside a run directory of %s", env["HOME"], home)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("run directory left in the scan home: %v", entries)
	}
}

// TestJobOnStdinAndSecretsRedacted has a scanner fail after echoing its
// job (credentials included) to stderr: the error carries the scanner's
// lines, its own error line as the message, and no secret.
func TestJobOnStdinAndSecretsRedacted(t *testing.T) {
	const bearer = "tok-7Hq2xW9pLm4-secret"
	const token = "ghp_clonetoken0123456789"
	r := &scanexec.Runner{Path: fakeScanner(t, scanexec.ProtocolVersion, "cat >&2; echo >&2; echo 'error: the scan went wrong' >&2; exit 1"), Home: t.TempDir()}
	jobs := map[string]scanexec.Job{
		"nuclei header": nucleiJob("Authorization: Bearer " + bearer),
		"code token":    {Kind: scanexec.KindCode, Code: &code.Config{Repository: "https://example.test/r.git", Command: []string{"true"}, Token: token}},
	}
	for name, job := range jobs {
		t.Run(name, func(t *testing.T) {
			err := r.Run(t.Context(), job, io.Discard)
			var se *scanexec.Error
			if !errors.As(err, &se) || !errors.Is(err, scanexec.ErrFailed) {
				t.Fatalf("err = %v, want a *scanexec.Error of a failed scan", err)
			}
			if se.Msg != "the scan went wrong" {
				t.Errorf("message %q, want the scanner's error line", se.Msg)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf(`"protocol":%d`, scanexec.ProtocolVersion)) || !strings.Contains(msg, nuclei.Redacted) {
				t.Errorf("error does not show the (redacted) job the scanner read:\n%s", msg)
			}
			if strings.Contains(msg, bearer) || strings.Contains(msg, token) {
				t.Errorf("error holds a secret:\n%s", msg)
			}
		})
	}
}

func TestProtocolMismatchRefused(t *testing.T) {
	cases := map[string]string{
		"other version": fakeScanner(t, scanexec.ProtocolVersion+1, "echo should not run; exit 0"),
		"not a scanner": func() string {
			p := filepath.Join(t.TempDir(), "true")
			if err := os.WriteFile(p, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}(),
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			r := &scanexec.Runner{Path: path, Home: t.TempDir()}
			var out bytes.Buffer
			err := r.Run(t.Context(), nucleiJob(), &out)
			if !errors.Is(err, scanexec.ErrProtocol) {
				t.Fatalf("err = %v, want ErrProtocol", err)
			}
			if out.Len() != 0 {
				t.Errorf("the job ran: %q", out.String())
			}
			if err := r.Check(t.Context()); !errors.Is(err, scanexec.ErrProtocol) {
				t.Errorf("Check = %v, want ErrProtocol", err)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, scanexec.BinaryName)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	cases := []struct {
		configured, want string
		ok               bool
	}{
		{bin, bin, true},
		{scanexec.BinaryName, bin, true}, // a name: looked up in PATH
		{"", bin, true},                  // not next to the test binary: PATH
		{plain, "", false},
		{filepath.Join(dir, "missing"), "", false},
		{"no-such-scanner", "", false},
	}
	for _, c := range cases {
		got, err := scanexec.Locate(c.configured)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("Locate(%q) = %q, %v; want %q", c.configured, got, err, c.want)
		}
		if !c.ok && !errors.Is(err, scanexec.ErrNotFound) {
			t.Errorf("Locate(%q) = %q, %v; want ErrNotFound", c.configured, got, err)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := scanexec.Locate(""); !errors.Is(err, scanexec.ErrNotFound) || !strings.Contains(err.Error(), "scan.scanner_path") {
		t.Errorf("Locate with no scanner anywhere = %v, want ErrNotFound naming scan.scanner_path", err)
	}
}

func TestJobValidate(t *testing.T) {
	n := &nuclei.Config{}
	c := &code.Config{}
	cases := []struct {
		name string
		job  scanexec.Job
		ok   bool
	}{
		{"nuclei", scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: n}, true},
		{"code", scanexec.Job{Kind: scanexec.KindCode, Code: c}, true},
		{"unknown kind", scanexec.Job{Kind: "shell", Nuclei: n}, false},
		{"missing section", scanexec.Job{Kind: scanexec.KindAmass, Nuclei: n}, false},
		{"two sections", scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: n, Code: c}, false},
	}
	for _, tc := range cases {
		if err := tc.job.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}

// hooked is a runner of the real scanner with its crash-test hooks on.
func hooked(t *testing.T) *scanexec.Runner {
	return &scanexec.Runner{
		Path: scanexectest.Binary(t), Home: t.TempDir(),
		Env: []string{scanexec.TestHooksVar + "=1"}, GracePeriod: 100 * time.Millisecond,
	}
}

func crashJob(mode string) scanexec.Job {
	return scanexec.Job{Kind: scanexec.KindCrashTest, CrashTest: &scanexec.CrashTest{Mode: mode}}
}

// TestCrashTestNeedsHooks: without the test hooks in its environment, the
// real scanner refuses crash-test jobs.
func TestCrashTestNeedsHooks(t *testing.T) {
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: t.TempDir()}
	err := r.Run(t.Context(), crashJob(scanexec.CrashPanic), io.Discard)
	if !errors.Is(err, scanexec.ErrFailed) || !strings.Contains(err.Error(), "crash-test jobs are disabled") {
		t.Fatalf("err = %v, want the job refused", err)
	}
}

func TestOutputLimit(t *testing.T) {
	r := hooked(t)
	r.MaxOutputBytes = 1 << 20
	var out bytes.Buffer
	err := r.Run(t.Context(), crashJob(scanexec.CrashFlood), &out)
	if !errors.Is(err, scanexec.ErrOutputTooLarge) {
		t.Fatalf("err = %v, want ErrOutputTooLarge", err)
	}
	if int64(out.Len()) > r.MaxOutputBytes {
		t.Errorf("%d bytes passed on, over the limit of %d", out.Len(), r.MaxOutputBytes)
	}
}

// TestStopKillsTheGroup runs a scanner that ignores SIGTERM and has a
// helper process in its group, and stops it by timeout and by
// cancellation: both end with the whole group gone.
func TestStopKillsTheGroup(t *testing.T) {
	for _, how := range []string{"timeout", "cancel"} {
		t.Run(how, func(t *testing.T) {
			r := hooked(t)
			var stderr lineWaiter
			stderr.want = "crash test: helper pid"
			stderr.seen = make(chan string, 1)
			r.Stderr = &stderr
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if how == "timeout" {
				r.Timeout = time.Second
			} else {
				go func() {
					select {
					case <-stderr.seen: // the helper runs: stop now
					case <-ctx.Done():
					}
					cancel()
				}()
			}
			err := r.Run(ctx, crashJob(scanexec.CrashHang), io.Discard)
			switch how {
			case "timeout":
				if !errors.Is(err, scanexec.ErrTimeout) {
					t.Fatalf("err = %v, want ErrTimeout", err)
				}
			case "cancel":
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			}
			m := regexp.MustCompile(`helper pid (\d+)`).FindStringSubmatch(stderr.String())
			switch {
			case m != nil:
				pid, _ := strconv.Atoi(m[1])
				waitGone(t, pid)
			case how == "cancel":
				t.Fatalf("cancelled before the helper ran: %v", err)
			default:
				// The time limit came before the scanner got as far as
				// starting its helper (a loaded machine): the cancel case
				// checks the group.
				t.Logf("timed out before the helper started: %v", err)
			}
		})
	}
}

// waitGone polls until pid no longer runs (gone, or a zombie waiting for
// whoever adopted it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("helper %d still runs", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lineWaiter collects the scanner's stderr and signals the first line that
// contains want.
type lineWaiter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan string
}

func (l *lineWaiter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.want != "" && strings.Contains(string(p), l.want) {
		l.seen <- string(p)
		l.want = ""
	}
	return len(p), nil
}

func (l *lineWaiter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestNetworkRoundTrip checks that the policy the worker puts in a job is
// the one the scanner rebuilds, and that a malformed one is refused.
func TestNetworkRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       *scanexec.Network
		addr    string
		allowed bool
	}{
		{"default refuses loopback", nil, "127.0.0.1", false},
		{"default allows public", nil, "8.8.8.8", true},
		{"listed loopback", &scanexec.Network{Allow: []string{"127.0.0.1/32"}}, "127.0.0.1", true},
		{"other loopback", &scanexec.Network{Allow: []string{"127.0.0.1/32"}}, "127.0.0.2", false},
		{"deny public", &scanexec.Network{Allow: []string{"10.0.0.0/8"}, DenyPublic: true}, "8.8.8.8", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.n.Policy()
			if err != nil {
				t.Fatal(err)
			}
			// Through the worker's form and back.
			p, err = scanexec.NetworkOf(p).Policy()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.CheckAddr(netip.MustParseAddr(tc.addr)); (err == nil) != tc.allowed {
				t.Errorf("CheckAddr(%s) = %v, want allowed %v", tc.addr, err, tc.allowed)
			}
		})
	}
	job := scanexec.Job{Kind: scanexec.KindCrashTest, CrashTest: &scanexec.CrashTest{Mode: "panic"}, Network: &scanexec.Network{Allow: []string{"10.0.0.1/8"}}}
	if err := job.Validate(); !errors.Is(err, scanexec.ErrInvalidJob) {
		t.Errorf("Validate with a malformed network = %v, want ErrInvalidJob", err)
	}
}
