package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that notes Fatal and Skip instead of stopping, so
// that the outcome of Dir can be checked.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatal(args ...any)            { r.fatal = sprint(args) }
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = sprintf(f, args) }
func (r *recorder) Skip(args ...any)             { r.skip = sprint(args) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = sprintf(f, args) }

func sprint(args []any) string            { return fmt.Sprint(args...) }
func sprintf(f string, args []any) string { return fmt.Sprintf(f, args...) }

func fakeCorpus(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, "corpus")
	if err := os.MkdirAll(filepath.Join(dir, "sarif"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{manifest, "sarif/a.sarif"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// This package is internal/corpus of the module.
	wd, _ := os.Getwd()
	if want := filepath.Dir(filepath.Dir(wd)); root != want {
		t.Fatalf("ModuleRoot = %s, want %s", root, want)
	}
}

func TestLocate(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	abs := t.TempDir()
	tests := []struct {
		name, env, want string
	}{
		{"default beside the module root", "", filepath.Join(filepath.Dir(root), "shared", "corpus")},
		{"absolute", abs, abs},
		{"relative to the module root", "testdata/corpus", filepath.Join(root, "testdata", "corpus")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(Env, tt.env)
			got, err := Locate()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Locate = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDirAndPath(t *testing.T) {
	dir := fakeCorpus(t, t.TempDir())
	t.Setenv(Env, dir)
	if got := Dir(t); got != dir {
		t.Fatalf("Dir = %s, want %s", got, dir)
	}
	if got := Path(t, "sarif", "a.sarif"); got != filepath.Join(dir, "sarif", "a.sarif") {
		t.Fatalf("Path = %s", got)
	}
	if got := string(Read(t, "sarif/a.sarif")); got != "x" {
		t.Fatalf("Read = %q", got)
	}
	r := &recorder{TB: t}
	Path(r, "sarif", "missing.sarif")
	if !strings.Contains(r.fatal, "incomplete") || r.skip != "" {
		t.Fatalf("missing file in a present corpus: fatal %q, skip %q; want a failure", r.fatal, r.skip)
	}
}

// A missing corpus fails under CI=true and skips elsewhere, naming the
// variable either way.
func TestMissingCorpus(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "nowhere")
	t.Setenv(Env, gone)
	for _, ci := range []string{"true", ""} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recorder{TB: t}
			Dir(r)
			got, other := r.skip, r.fatal
			if ci == "true" {
				got, other = r.fatal, r.skip
			}
			if !strings.Contains(got, Env) || !strings.Contains(got, gone) || other != "" {
				t.Fatalf("fatal %q, skip %q", r.fatal, r.skip)
			}
		})
	}
}
