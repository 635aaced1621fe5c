package code

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// sarifMain and sarifFeature are the findings.sarif of the default branch
// and of the feature branch of the test repository.
const (
	sarifMain    = "\ufeff \n{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":{\"name\":\"main\"}},\"results\":[]}]}\n"
	sarifFeature = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"feature"}},"results":[]}]}`
	sarifTagged  = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"tagged"}},"results":[]}]}`
)

// testRepo is a git repository made with go-git in a temporary directory.
type testRepo struct {
	dir     string
	head    string // hash of the default branch (master)
	feature string // hash of branch "feature"
	tagged  string // commit of annotated tag "v1"
}

// newTestRepo commits findings.sarif on three lines of history: master,
// branch feature, and annotated tag v1 on a commit of its own.
func newTestRepo(t *testing.T) testRepo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "test", Email: "test@example.invalid", When: time.Unix(1700000000, 0)}
	// commit writes and commits files; a nil body commits the path as it
	// is on disk (a symlink must never be written through).
	commit := func(files map[string]*string) string {
		t.Helper()
		for name, body := range files {
			if body == nil {
				if _, err := wt.Add(name); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(*body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := wt.Add(name); err != nil {
				t.Fatal(err)
			}
		}
		h, err := wt.Commit("commit", &git.CommitOptions{Author: sig})
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	checkout := func(branch string, create bool) {
		t.Helper()
		if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch), Create: create}); err != nil {
			t.Fatal(err)
		}
	}
	var r testRepo
	r.dir = dir
	r.head = commit(map[string]*string{"README": ptr("test repository\n"), "findings.sarif": ptr(sarifMain)})
	checkout("feature", true)
	r.feature = commit(map[string]*string{"findings.sarif": ptr(sarifFeature)})
	checkout("tagging", true)
	r.tagged = commit(map[string]*string{"findings.sarif": ptr(sarifTagged)})
	if _, err := repo.CreateTag("v1", plumbing.NewHash(r.tagged), &git.CreateTagOptions{Tagger: sig, Message: "v1"}); err != nil {
		t.Fatal(err)
	}
	// Branch "escape" holds a link out of the checkout, which Run
	// refuses. It comes last, so no checkout ever writes through it, and
	// it points at a file of the test's own, never a system file.
	checkout("master", false)
	checkout("escape", true)
	outside := filepath.Join(t.TempDir(), "outside.sarif")
	if err := os.WriteFile(outside, []byte(`{"outside":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape.sarif")); err != nil {
		t.Fatal(err)
	}
	commit(map[string]*string{"escape.sarif": nil})
	// HEAD back to master without a checkout (which would have to write
	// through the link): clones take the default branch from HEAD.
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.Master)); err != nil {
		t.Fatal(err)
	}
	return r
}

// baseConfig runs argv on repo with a work dir of the test's own.
func baseConfig(t *testing.T, repo string, argv ...string) Config {
	return Config{Repository: repo, Command: argv, WorkDir: workDir(t), Timeout: 30 * time.Second}
}

// assertEmptyDir fails unless Run removed everything it made in dir.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("work dir %s not cleaned up: %d entries left (first %s)", dir, len(ents), ents[0].Name())
	}
}

func TestRunCopiesStdout(t *testing.T) {
	r := newTestRepo(t)
	t.Setenv("STARPIPE_TEST_DAEMON_SECRET", "daemon-only")
	// The script fails unless the environment is the minimal one.
	cfg := baseConfig(t, r.dir, "/bin/sh", "-c",
		`test -z "$STARPIPE_TEST_DAEMON_SECRET" && test "$EXTRA" = yes && test -d "$HOME" && test -d "$TMPDIR" && cat findings.sarif`)
	cfg.Env = []string{"EXTRA=yes"}
	var out bytes.Buffer
	res, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out.String() != sarifMain {
		t.Fatalf("output = %q, want findings.sarif of master", out.String())
	}
	if res.Commit != r.head || res.ExitCode != 0 || res.Bytes != int64(len(sarifMain)) || res.Duration <= 0 {
		t.Fatalf("result = %+v, want commit %s, exit 0, %d bytes", res, r.head, len(sarifMain))
	}
	assertEmptyDir(t, cfg.WorkDir)
}

func TestRunRef(t *testing.T) {
	r := newTestRepo(t)
	for _, tc := range []struct {
		repo, ref, want, commit string
	}{
		{"file://" + r.dir, "feature", sarifFeature, r.feature},
		{r.dir, "refs/heads/feature", sarifFeature, r.feature},
		{r.dir, "v1", sarifTagged, r.tagged},
		{r.dir, "", sarifMain, r.head},
	} {
		t.Run("ref="+tc.ref, func(t *testing.T) {
			cfg := baseConfig(t, tc.repo, "cat", "findings.sarif")
			cfg.Ref = tc.ref
			var out bytes.Buffer
			res, err := Run(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.String() != tc.want || res.Commit != tc.commit {
				t.Fatalf("got commit %s output %q, want commit %s output %q", res.Commit, out.String(), tc.commit, tc.want)
			}
		})
	}
	t.Run("ref=missing", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "cat", "findings.sarif")
		cfg.Ref = "no-such-branch"
		_, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrClone) || !strings.Contains(err.Error(), "no-such-branch") {
			t.Fatalf("err = %v, want ErrClone naming the ref", err)
		}
		assertEmptyDir(t, cfg.WorkDir)
	})
}

func TestRunOutputFile(t *testing.T) {
	r := newTestRepo(t)
	cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `mkdir -p out && cp findings.sarif out/report.sarif && echo "scan done"`)
	cfg.OutputFile = "out/report.sarif"
	var out bytes.Buffer
	res, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out.String() != sarifMain || res.Bytes != int64(len(sarifMain)) {
		t.Fatalf("output = %q (%d bytes), want findings.sarif", out.String(), res.Bytes)
	}

	t.Run("symlink out of the checkout", func(t *testing.T) {
		// The analyser makes the link itself: the output file is read
		// through an os.Root, which does not follow it.
		outside := filepath.Join(t.TempDir(), "outside.sarif")
		if err := os.WriteFile(outside, []byte(`{"outside":true}`), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := baseConfig(t, r.dir, "ln", "-s", outside, "escape.sarif")
		cfg.OutputFile = "escape.sarif"
		var out bytes.Buffer
		_, err := Run(context.Background(), cfg, &out)
		if !errors.Is(err, ErrCommand) || out.Len() != 0 {
			t.Fatalf("err = %v with %d bytes of output, want ErrCommand and nothing", err, out.Len())
		}
	})
}

func TestRunNonZeroExit(t *testing.T) {
	r := newTestRepo(t)
	t.Run("with SARIF", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `cat findings.sarif; echo "2 issues found" >&2; exit 1`)
		var out bytes.Buffer
		res, err := Run(context.Background(), cfg, &out)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.ExitCode != 1 || out.String() != sarifMain {
			t.Fatalf("exit %d output %q, want exit 1 and findings.sarif", res.ExitCode, out.String())
		}
	})
	t.Run("without output", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `echo "boom: config not found" >&2; exit 3`)
		res, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrCommand) || res.ExitCode != 3 {
			t.Fatalf("err = %v exit %d, want ErrCommand and exit 3", err, res.ExitCode)
		}
		for _, want := range []string{"code 3", "boom: config not found"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q, want it to mention %q", err, want)
			}
		}
		assertEmptyDir(t, cfg.WorkDir)
	})
	t.Run("not JSON", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `echo "usage: gosec [flags]"; exit 2`)
		_, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), "code 2") {
			t.Fatalf("err = %v, want ErrCommand with exit code 2", err)
		}
	})
	t.Run("missing program", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "starpipe-no-such-scanner")
		_, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrCommand) {
			t.Fatalf("err = %v, want ErrCommand", err)
		}
	})
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	r := newTestRepo(t)
	pidFile := filepath.Join(dropDir(t), "pid")
	// The background sleep holds the command's stdout: unless the whole
	// group is killed, Run would also wait for it. It records its pid as
	// the host sees it ($! is the PID namespace's when run as root).
	cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `sh -c 'read -r pid rest < /proc/self/stat; echo $pid > "$PIDFILE"; exec sleep 30' & wait`)
	cfg.Env = []string{"PIDFILE=" + pidFile}
	cfg.Timeout = 500 * time.Millisecond
	start := time.Now()
	_, err := Run(context.Background(), cfg, &bytes.Buffer{})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %s after a 500ms timeout", d)
	}
	assertEmptyDir(t, cfg.WorkDir)

	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not record its sleep within the timeout: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The killed sleep may stay a zombie until init reaps it: poll /proc
	// for it to be gone or dead.
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep (pid %d) survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processGone reports whether pid no longer runs (absent, or a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

func TestRunOutputLimit(t *testing.T) {
	r := newTestRepo(t)
	// Endless output: only the limit stops it.
	cfg := baseConfig(t, r.dir, "/bin/sh", "-c", `while :; do echo '{"results":[]}'; done`)
	cfg.MaxOutputBytes = 4096
	res, err := Run(context.Background(), cfg, &bytes.Buffer{})
	if !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("err = %v, want ErrOutputTooLarge", err)
	}
	if res.Bytes > cfg.MaxOutputBytes {
		t.Fatalf("wrote %d bytes past a limit of %d", res.Bytes, cfg.MaxOutputBytes)
	}
	assertEmptyDir(t, cfg.WorkDir)

	t.Run("output file", func(t *testing.T) {
		cfg := baseConfig(t, r.dir, "true")
		cfg.OutputFile = "findings.sarif"
		cfg.MaxOutputBytes = 10
		_, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrOutputTooLarge) {
			t.Fatalf("err = %v, want ErrOutputTooLarge", err)
		}
	})
}

func TestRunCancelled(t *testing.T) {
	r := newTestRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := baseConfig(t, r.dir, "cat", "findings.sarif")
	_, err := Run(ctx, cfg, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmptyDir(t, cfg.WorkDir)
}

func TestCloneErrorsHideCredentials(t *testing.T) {
	const token = "ghs_s3cr3tT0kenValue"
	for _, tc := range []struct {
		name, repo, token string
		secrets           []string
	}{
		{"token", "http://127.0.0.1:1/repo.git", token, []string{token}},
		{"user info", "http://alice:hunter2-password@127.0.0.1:1/repo.git", "", []string{"alice", "hunter2-password"}},
		{"token as user", "http://" + token + "@127.0.0.1:1/repo.git", "", []string{token}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, tc.repo, "true")
			cfg.Token = tc.token
			cfg.Ref = "main" // the ref lookup fails first, then the clone is not tried
			for _, ref := range []string{"main", ""} {
				cfg.Ref = ref
				_, err := Run(context.Background(), cfg, &bytes.Buffer{})
				if !errors.Is(err, ErrClone) {
					t.Fatalf("err = %v, want ErrClone", err)
				}
				for _, s := range tc.secrets {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error text %q holds credential %q", err, s)
					}
				}
				if !strings.Contains(err.Error(), "127.0.0.1:1/repo.git") {
					t.Fatalf("error text %q does not name the repository", err)
				}
			}
			assertEmptyDir(t, cfg.WorkDir)
		})
	}
}

func TestCloneAuth(t *testing.T) {
	src, err := parseRepository("https://git.example.com/org/repo.git", "tok-123")
	if err != nil {
		t.Fatal(err)
	}
	want := &githttp.BasicAuth{Username: "x-access-token", Password: "tok-123"}
	if got, ok := src.auth.(*githttp.BasicAuth); !ok || *got != *want {
		t.Fatalf("auth = %#v, want %#v", src.auth, want)
	}
	if strings.Contains(src.auth.String(), "tok-123") {
		t.Fatalf("auth.String() = %q shows the token", src.auth.String())
	}

	// Credentials in the URL move to the auth method, so that the
	// checkout's .git/config does not keep them.
	src, err = parseRepository("https://bob:pw-1234@git.example.com/org/repo.git", "")
	if err != nil {
		t.Fatal(err)
	}
	if src.url != "https://git.example.com/org/repo.git" {
		t.Fatalf("clone URL = %q, want it without user info", src.url)
	}
	if got, ok := src.auth.(*githttp.BasicAuth); !ok || got.Username != "bob" || got.Password != "pw-1234" {
		t.Fatalf("auth = %#v, want bob's", src.auth)
	}
	// The token wins over URL credentials.
	src, err = parseRepository("https://bob:pw-1234@git.example.com/org/repo.git", "tok-123")
	if err != nil {
		t.Fatal(err)
	}
	if got := src.auth.(*githttp.BasicAuth); *got != *want {
		t.Fatalf("auth = %#v, want the token's", got)
	}
	// Anonymous and local clones send nothing.
	for _, repo := range []string{"https://git.example.com/org/repo.git", "/srv/git/repo", "file:///srv/git/repo"} {
		if src, err := parseRepository(repo, ""); err != nil || src.auth != nil {
			t.Fatalf("%s: auth %v err %v, want no auth", repo, src.auth, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Repository: "https://git.example.com/r.git", Command: []string{"gosec", "-fmt", "sarif", "./..."}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // in the message
	}{
		{"no repository", func(c *Config) { c.Repository = "" }, "repository is empty"},
		{"no command", func(c *Config) { c.Command = nil }, "command is empty"},
		{"ssh URL", func(c *Config) { c.Repository = "ssh://git@github.com/org/r.git" }, "SSH"},
		{"scp form", func(c *Config) { c.Repository = "git@github.com:org/r.git" }, "SSH"},
		{"scp form without user", func(c *Config) { c.Repository = "github.com:org/r.git" }, "SSH"},
		{"git protocol", func(c *Config) { c.Repository = "git://github.com/org/r.git" }, "not supported"},
		{"token over http", func(c *Config) {
			c.Repository, c.Token = "http://git.example.com/r.git", "tok-secret"
		}, "clear text"},
		{"password over http", func(c *Config) { c.Repository = "http://u:pw-secret@git.example.com/r.git" }, "clear text"},
		{"token to a local path", func(c *Config) { c.Repository, c.Token = "/srv/git/r", "tok-secret" }, "token"},
		{"token to file URL", func(c *Config) { c.Repository, c.Token = "file:///srv/git/r", "tok-secret" }, "credentials"},
		{"no host", func(c *Config) { c.Repository = "https:///r.git" }, "no host"},
		{"output file escapes", func(c *Config) { c.OutputFile = "../out.sarif" }, "output file"},
		{"output file absolute", func(c *Config) { c.OutputFile = "/tmp/out.sarif" }, "output file"},
		{"bad ref", func(c *Config) { c.Ref = "a..b" }, "ref"},
		{"ref neither branch nor tag", func(c *Config) { c.Ref = "refs/pull/1/head" }, "neither"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout"},
		{"negative limit", func(c *Config) { c.MaxOutputBytes = -1 }, "limit"},
		{"env without =", func(c *Config) { c.Env = []string{"tok-secret"} }, "KEY=value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.modify(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error text %q holds a credential", err)
			}
			// Run refuses it the same way, before making anything.
			c.WorkDir = workDir(t)
			if _, err := Run(context.Background(), c, &bytes.Buffer{}); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Run: err = %v, want ErrInvalidConfig", err)
			}
			assertEmptyDir(t, c.WorkDir)
		})
	}
}

func TestRedactorScrub(t *testing.T) {
	r := newRedactor("p@ss/w rd")
	r.add("longuser", true)
	r.add("x", true) // too short to redact alone; user info removal covers it
	in := `Get "https://x:p%40ss%2Fw%20rd@host/r": p@ss/w rd p%40ss%2Fw+rd longuser`
	got := r.scrub(in)
	for _, leak := range []string{"p@ss", "p%40ss", "longuser", "x:"} {
		if strings.Contains(got, leak) {
			t.Fatalf("scrub(%q) = %q, still holds %q", in, got, leak)
		}
	}
	if !strings.Contains(got, "https://host/r") {
		t.Fatalf("scrub(%q) = %q, want the URL kept without user info", in, got)
	}
}

func TestJSONSniffer(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		want   byte
	}{
		{[]string{`{"a":1}`}, '{'},
		{[]string{"\xEF", "\xBB\xBF", " \r\n\t", `{}`}, '{'},
		{[]string{"  [", "]"}, '['},
		{[]string{"usage: tool"}, 'u'},
		{[]string{" \n"}, 0},
		{[]string{"\xEF\xBB\xBF\xEF\xBB\xBF{"}, 0xEF}, // one BOM only
	} {
		var s jsonSniffer
		for _, c := range tc.chunks {
			s.observe([]byte(c))
		}
		if s.first != tc.want {
			t.Errorf("%q: first = %q, want %q", tc.chunks, s.first, tc.want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 8}
	for i := range 100 {
		tb.Write([]byte(strconv.Itoa(i % 10)))
	}
	if got := tb.suffix(redactor{}); got != `; stderr tail: "23456789"` {
		t.Fatalf("suffix = %s", got)
	}
}

func TestScope(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/org/repo.git":                       "https://github.com/org/repo",
		"HTTPS://GitHub.com/org/Repo/":                          "https://github.com/org/Repo",
		"https://gitlab-ci-token:job-secret@gl.example/g/p.git": "https://gl.example/g/p",
		"https://github.com/org/repo?x=1#frag":                  "https://github.com/org/repo",
		"/srv/git/repo":                                         "/srv/git/repo",
		"file:///srv/git/repo":                                  "file:///srv/git/repo",
		"ssh://git:pw@host/repo":                                "ssh://host/repo",
	} {
		if got := Scope(in); got != want {
			t.Errorf("Scope(%q) = %q, want %q", in, got, want)
		}
	}
}

func ptr(s string) *string { return &s }

// workDir is a work directory the analyser's account can reach when the
// test runs as root (the analyser then runs as SandboxUser): t.TempDir()
// makes its directories 0700, which only root could traverse. Nothing
// below it becomes readable: the run directory Run makes in it is 0700.
func workDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// dropDir is a directory the analyser may write to whatever account it
// runs as, for the tests' markers.
func dropDir(t *testing.T) string {
	t.Helper()
	d := workDir(t)
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}
