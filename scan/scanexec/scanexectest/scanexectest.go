// Package scanexectest gives tests the starpipe-scanner binary: the one
// named by STARPIPE_SCANNER_BIN (`make test` builds it and sets it), or
// else one built once per test process with `go build` into a temporary
// directory. The first build of the scanner links nuclei and amass and
// takes minutes on a cold cache.
package scanexectest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// EnvVar names the variable that points tests at a built scanner.
const EnvVar = "STARPIPE_SCANNER_BIN"

var (
	once    sync.Once
	built   string
	buildEr error
)

// Binary returns the absolute path of the scanner binary, failing the test
// when it cannot be had.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvVar); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("%s=%s: %v", EnvVar, p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("%s=%s: %v (run `make build`)", EnvVar, p, err)
		}
		return abs
	}
	once.Do(func() { built, buildEr = build() })
	if buildEr != nil {
		t.Fatalf("building starpipe-scanner (set %s to skip the build): %v", EnvVar, buildEr)
	}
	return built
}

// build compiles cmd/starpipe-scanner into a directory that lives as long
// as the test process. It is removed by no test's cleanup (tests share
// it); the operating system's temporary directory takes it.
func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "starpipe-scanner-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "starpipe-scanner")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/starpipe-scanner")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of this module's go.mod, found from this
// source file's location.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the module")
	}
	dir := filepath.Dir(file)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/starpipe/starpipe\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod of github.com/starpipe/starpipe not found above %s", file)
		}
		dir = parent
	}
}
