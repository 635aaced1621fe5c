package code

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SandboxUser is the account analysers run as when the scanner runs as
// root. `make deps` (scripts/ensure-deps.sh) creates it; starpipe never
// creates accounts itself.
const SandboxUser = "starpipe-scan"

// DefaultSandboxDir is where a root scanner makes a run's work directory
// when Config.WorkDir is empty. The scanner's own TMPDIR lies inside the
// daemon's state directory (0700 root), which the analyser's account must
// not be able to enter; the work directory therefore lives outside it, in
// a world-traversable sticky directory, as a 0700 directory owned by the
// analyser's account (nobody else can list or read it).
const DefaultSandboxDir = "/var/tmp"

// ErrSandbox marks a run refused because the analyser could not be
// isolated as required: no account to run it as, a work directory the
// account cannot reach, or a checkout with a symlink leading out of it.
var ErrSandbox = errors.New("analyser sandbox")

// sandbox says how the analyser is isolated.
type sandbox struct {
	// uid and gid of the account the analyser runs as; run is false when
	// the scanner is not root and the analyser runs as the scanner's own
	// user.
	run      bool
	uid, gid uint32
}

// checkReachable makes sure the account (uid, gid) can traverse every
// directory down to dir, so that the checkout made inside it is reachable;
// the error names the directory that is not.
func checkReachable(dir string, uid, gid uint32) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("%w: work directory %s: %v", ErrSandbox, dir, err)
	}
	for d := real; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("%w: work directory %s: %v", ErrSandbox, dir, err)
		}
		ouid, ogid := owner(st)
		m := st.Mode().Perm()
		ok := m&0o001 != 0 || (ouid == uid && m&0o100 != 0) || (ogid == gid && m&0o010 != 0)
		if !ok {
			return fmt.Errorf("%w: the analyser account %s cannot reach the work directory %s: %s is mode %04o (the work directory must lie outside the state directory, under directories others may traverse)",
				ErrSandbox, SandboxUser, dir, d, m)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// checkSymlinks refuses a checkout holding a symbolic link that leads out
// of it (or cannot be resolved): the analyser reads the checkout, and a
// link to /etc/... or to the state directory would hand it files of the
// host. Links are resolved for real (filepath.EvalSymlinks), not read
// lexically: "a/b/c/../../.." with c -> ../.. leaves the tree although
// every link in it looks inside.
func checkSymlinks(checkout string) error {
	root, err := filepath.EvalSymlinks(checkout)
	if err != nil {
		return fmt.Errorf("%w: resolving the checkout: %v", ErrSandbox, err)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("%w: the repository holds a symbolic link %s that cannot be resolved inside the checkout; refused", ErrSandbox, rel)
		}
		if target != root && !strings.HasPrefix(target, root+string(filepath.Separator)) {
			return fmt.Errorf("%w: the repository holds a symbolic link %s that leads out of the checkout; refused", ErrSandbox, rel)
		}
		return nil
	})
}

// chownTree gives the tree at dir to the account, without following
// symbolic links.
func chownTree(dir string, uid, gid uint32) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
}
