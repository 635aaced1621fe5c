package code

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// linkRepo is a repository with one file and the given symbolic links
// (name -> target) committed.
func linkRepo(t *testing.T, links map[string]string) string {
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
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "findings.sarif"), []byte(sarifFeature), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("a/b/findings.sarif"); err != nil {
		t.Fatal(err)
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "test", Email: "test@example.invalid", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit("links", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSymlinksOutOfTheCheckoutRefused checks that a repository with a
// link leading out of the checkout is refused before the analyser runs,
// however the link is written, and that links inside it are fine.
func TestSymlinksOutOfTheCheckoutRefused(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		links map[string]string
		ok    bool
	}{
		{"inside", map[string]string{"report.sarif": "a/b/findings.sarif", "a/up": ".."}, true},
		{"absolute", map[string]string{"report.sarif": secret}, false},
		{"relative", map[string]string{"report.sarif": "../../../../../../../../../../" + strings.TrimPrefix(secret, "/")}, false},
		// Every link looks inside when read on its own: "a/b/c" is
		// ../.., the checkout; through it "a/b/c/../../.." is above it.
		{"through another link", map[string]string{"a/b/c": "../..", "report.sarif": "a/b/c/../../../x"}, false},
		{"dangling", map[string]string{"report.sarif": "does/not/exist"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drop := dropDir(t)
			marker := filepath.Join(drop, "ran")
			cfg := baseConfig(t, linkRepo(t, tc.links), "/bin/sh", "-c", `touch "$MARKER"; cat a/b/findings.sarif`)
			cfg.Env = []string{"MARKER=" + marker}
			var out bytes.Buffer
			_, err := Run(context.Background(), cfg, &out)
			if tc.ok {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSandbox) || !strings.Contains(err.Error(), "report.sarif") {
				t.Fatalf("err = %v, want ErrSandbox naming the link", err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the analyser ran on a checkout with a link out of it")
			}
			if out.Len() != 0 || strings.Contains(out.String(), "s3cret") {
				t.Errorf("output %q", out.String())
			}
			assertEmptyDir(t, cfg.WorkDir)
		})
	}
}

// TestAnalyzerCannotReadTheStateDirectory checks, as root, that the
// analyser runs as SandboxUser and cannot read a file in a 0700 directory
// of root's (the state directory); its environment holds only what the
// scanner sets. Not as root, the analyser runs as the scanner's user, who
// owns the state directory and can read it: the documented limit, which
// the test checks holds as documented.
func TestAnalyzerCannotReadTheStateDirectory(t *testing.T) {
	// Like the state directory: 0700. The file in it is world-readable,
	// so that only the directory (and the account) keep the analyser out.
	state := t.TempDir()
	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(state, "master.key")
	if err := os.WriteFile(secret, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STARPIPE_DATABASE_URL", "postgres://leak")
	script := `if cat "$SECRET" >/dev/null 2>&1; then r=true; else r=false; fi
printf '{"read":%s,"uid":%s,"env":"%s"}\n' "$r" "$(id -u)" "$(env | cut -d= -f1 | sort | tr '\n' ' ')"`
	cfg := baseConfig(t, newTestRepo(t).dir, "/bin/sh", "-c", script)
	cfg.Env = []string{"SECRET=" + secret}
	var out bytes.Buffer
	if _, err := Run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got struct {
		Read bool
		UID  int
		Env  string
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("analyser output %q: %v", out.String(), err)
	}
	if strings.Contains(got.Env, "STARPIPE") {
		t.Errorf("analyser environment holds the daemon's variables: %s", got.Env)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(SandboxUser)
		if err != nil {
			t.Fatalf("the tests run as root and need the account %s: run `make deps`: %v", SandboxUser, err)
		}
		if strconv.Itoa(got.UID) != u.Uid {
			t.Errorf("analyser ran as uid %d, want %s (%s)", got.UID, u.Uid, SandboxUser)
		}
		if got.Read {
			t.Error("the analyser read a file in root's 0700 state directory")
		}
		// The state directory itself is refused as a work directory.
		bad := cfg
		bad.WorkDir = state
		if _, err := Run(context.Background(), bad, &bytes.Buffer{}); !errors.Is(err, ErrSandbox) || !strings.Contains(err.Error(), state) {
			t.Errorf("work dir in the state directory: err = %v, want ErrSandbox naming it", err)
		}
		return
	}
	if got.UID != os.Geteuid() || !got.Read {
		t.Errorf("not root: analyser uid %d read=%v, want the scanner's uid %d, which can read its own state directory", got.UID, got.Read, os.Geteuid())
	}
}
