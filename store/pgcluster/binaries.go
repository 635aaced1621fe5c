package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// BinDirEnv names the environment variable that, when set, is the only place
// searched for the PostgreSQL server binaries.
const BinDirEnv = "STARPIPE_PG_BINDIR"

// ErrBinariesNotFound is wrapped by the error Start returns when no directory
// holds initdb, pg_ctl and postgres together.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries not found")

// binaries are the server programs of one PostgreSQL installation.
type binaries struct {
	dir    string
	initdb string
	pgCtl  string
	major  int // 0 when unknown
}

// findBinaries picks the installation to run. explicit (Config.BinDir) or the
// environment variable, when set, are the only place looked at so that a
// user's choice is never silently overridden. Otherwise the candidates are, in
// order: PATH, `pg_config --bindir`, and /usr/lib/postgresql/*/bin newest
// first. wantMajor, when non-zero, prefers the candidate of that major version
// because a data directory only opens with the major version that created it.
func findBinaries(ctx context.Context, explicit string, wantMajor int) (*binaries, error) {
	if explicit == "" {
		explicit = os.Getenv(BinDirEnv)
	}
	var candidates []string
	if explicit != "" {
		candidates = []string{explicit}
	} else {
		candidates = candidateDirs(ctx)
	}
	var found []*binaries
	for _, dir := range candidates {
		if b := binariesIn(dir); b != nil {
			found = append(found, b)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%w (looked in %s): install them with `apt-get install -y postgresql` (Debian/Ubuntu) or set %s",
			ErrBinariesNotFound, strings.Join(candidates, ", "), BinDirEnv)
	}
	for _, b := range found {
		b.major = majorVersion(ctx, b.pgCtl)
		if wantMajor != 0 && b.major == wantMajor {
			return b, nil
		}
	}
	return found[0], nil
}

func candidateDirs(ctx context.Context) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" {
			return
		}
		// Symlinks such as /usr/local/bin/initdb are resolved because pg_ctl
		// finds postgres next to its own real path.
		if r, err := filepath.EvalSymlinks(d); err == nil {
			d = r
		}
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		add(filepath.Dir(p))
	}
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output(); err == nil {
			add(strings.TrimSpace(string(out)))
		}
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool {
		return versionOfPath(versioned[i]) > versionOfPath(versioned[j])
	})
	for _, d := range versioned {
		add(d)
	}
	if len(dirs) == 0 {
		// Nothing at all: name the usual place so the error message says
		// where we looked.
		dirs = append(dirs, "PATH", "/usr/lib/postgresql/*/bin")
	}
	return dirs
}

// versionOfPath reads N from /usr/lib/postgresql/N/bin.
func versionOfPath(p string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(p)), 64)
	return v
}

func binariesIn(dir string) *binaries {
	b := &binaries{dir: dir, initdb: filepath.Join(dir, "initdb"), pgCtl: filepath.Join(dir, "pg_ctl")}
	for _, p := range []string{b.initdb, b.pgCtl, filepath.Join(dir, "postgres")} {
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil
		}
	}
	return b
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

func majorVersion(ctx context.Context, pgCtl string) int {
	out, err := exec.CommandContext(ctx, pgCtl, "--version").Output()
	if err != nil {
		return 0
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
