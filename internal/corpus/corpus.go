// Package corpus locates the shared corpus of real scanner outputs that the
// parser and pipeline tests read. The corpus is not part of the repository
// (it is large and its files carry their own licences); it lives beside the
// clone, or wherever STARPIPE_CORPUS says.
//
// Where it is found:
//
//   - STARPIPE_CORPUS, an absolute path or one relative to the module root;
//   - otherwise ../shared/corpus relative to the module root (the directory
//     holding go.mod, found by walking up from the test's working directory).
//
// A missing corpus fails the test under CI=true (CI must run every test; a
// skip there would hide that the corpus tests never ran) and skips it
// elsewhere, so that a fresh clone without the corpus still runs the rest of
// the suite. Either way the message names STARPIPE_CORPUS.
package corpus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Env names the variable that points at the corpus directory.
const Env = "STARPIPE_CORPUS"

// manifest is the file every complete corpus has at its top.
const manifest = "MANIFEST.csv"

// Locate returns the absolute corpus directory without checking that it
// exists; for code that has no testing.TB (a TestMain, a tool).
func Locate() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := os.Getenv(Env)
	if dir == "" {
		dir = filepath.Join("..", "shared", "corpus")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	return filepath.Clean(dir), nil
}

// ModuleRoot is the nearest directory at or above the working directory
// that holds a go.mod: `go test` runs each package in its own directory, so
// this is the module root whichever package asks.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("finding the module root: %w", err)
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("finding the module root: no go.mod at or above %s", wd)
		}
	}
}

// Dir returns the absolute corpus directory, or ends the test (see the
// package comment) when there is no corpus there.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := Locate()
	if err != nil {
		t.Fatalf("shared corpus: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, manifest)); err != nil {
		missing(t, fmt.Sprintf("no shared scanner corpus at %s (%v): set %s to the corpus directory (absolute, or relative to the module root)", dir, err, Env))
	}
	return dir
}

// Path returns the path of a corpus file or directory given relative to the
// corpus root (elements are joined), ending the test if it does not exist:
// a corpus that lacks a file the test names is incomplete, which is a
// failure even outside CI.
func Path(t testing.TB, rel ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, rel...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared corpus (%s) is incomplete: %v", Env, err)
	}
	return p
}

// Read returns the contents of a corpus file (see Path).
func Read(t testing.TB, rel ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(t, rel...))
	if err != nil {
		t.Fatalf("reading shared corpus file: %v", err)
	}
	return b
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
		return // a stand-in TB (this package's tests) returns from Fatal

	}
	t.Skip(msg)
}
