package code_test

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
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
)

// TestAnalyzerHelpersDieWithIt runs, in the real scanner process, an
// analyser that leaves a helper behind which escaped its process group
// (a double fork and setsid) and would write a marker later. After the
// scan, the helper is gone. As root the analyser's PID namespace takes
// it; otherwise the scanner, as the helper's subreaper, kills it.
func TestAnalyzerHelpersDieWithIt(t *testing.T) {
	repo := t.TempDir()
	r, err := git.PlainInit(repo, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "findings.sarif"), []byte(`{"version":"2.1.0","runs":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("findings.sarif"); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Commit("c", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.invalid", When: time.Unix(1700000000, 0)}}); err != nil {
		t.Fatal(err)
	}

	// Reachable and writable by the analyser's account when root.
	base := t.TempDir()
	work, drop := filepath.Join(base, "work"), filepath.Join(base, "drop")
	for d, mode := range map[string]os.FileMode{base: 0o711, filepath.Dir(base): 0o711, work: 0o711, drop: 0o777} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	pidFile, marker := filepath.Join(drop, "pid"), filepath.Join(drop, "marker")
	// The helper records its pid as the host sees it (/proc/self of a
	// shell builtin), then sleeps and writes the marker; the analyser
	// waits for the pid, prints its SARIF and exits.
	script := `(setsid sh -c 'read -r pid rest < /proc/self/stat; echo $pid > "$PIDFILE.tmp"; mv "$PIDFILE.tmp" "$PIDFILE"; sleep 5; touch "$MARKER"' </dev/null >/dev/null 2>&1 &)
while [ ! -s "$PIDFILE" ]; do sleep 0.01; done
cat findings.sarif`
	runner := &scanexec.Runner{Path: scanexectest.Binary(t), Home: t.TempDir()}
	var out bytes.Buffer
	err = runner.Run(context.Background(), scanexec.Job{Kind: scanexec.KindCode, Code: &code.Config{
		Repository: repo, Command: []string{"/bin/sh", "-c", script}, WorkDir: work,
		Env: []string{"PIDFILE=" + pidFile, "MARKER=" + marker}, Timeout: time.Minute,
	}}, &out)
	if err != nil {
		t.Fatalf("code scan: %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the helper never recorded its pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// Killed processes may linger a moment as zombies: poll.
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the helper (pid %d) outlived the scan", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the helper wrote its marker")
	}
}

// gone reports whether pid no longer runs (absent, or a zombie).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}
