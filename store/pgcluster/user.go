package pgcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the system account postgres runs as. When the manager itself
// is not root it is the current user and no credential switch happens.
type serverUser struct {
	name    string
	home    string
	uid     uint32
	gid     uint32
	groups  []uint32 // supplementary groups, for the directory access check
	setCred bool     // run children with this credential (we are root)
}

// DefaultUser is the system account the server runs as when starpipe is
// root (PostgreSQL refuses to run as root). `make deps`
// (scripts/ensure-deps.sh) creates it, with its home directory
// /var/lib/starpipe-pg where the server's files then live; starpipe itself
// never creates accounts.
const DefaultUser = "starpipe-pg"

// resolveUser decides who runs the server. Not root: the current user (a
// name, if given, must be that user). Root: the owner of an existing data
// directory (so a restart never changes owner), else the named account,
// else DefaultUser; the account must exist.
func resolveUser(name, dataDir string) (*serverUser, error) {
	if os.Geteuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("looking up the current user: %w", err)
		}
		if name != "" && name != cur.Username {
			return nil, fmt.Errorf("running the server as %q needs root; starpipe runs as %q", name, cur.Username)
		}
		return userFrom(cur, false)
	}
	if dataDir != "" {
		if fi, err := os.Lstat(dataDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && fi.IsDir() {
				if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
					return userFrom(u, true)
				}
			}
		}
	}
	if name == "" {
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root, so starpipe runs it as the system account %q, which was not found (%v): run `make deps` (scripts/ensure-deps.sh) as root to create it", name, err)
	}
	if u.Uid == "0" {
		return nil, fmt.Errorf("server user %q is root: PostgreSQL refuses to run as root", name)
	}
	return userFrom(u, true)
}

func userFrom(u *user.User, switchCred bool) (*serverUser, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %q: %w", u.Username, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %q: %w", u.Username, err)
	}
	su := &serverUser{name: u.Username, home: u.HomeDir, uid: uint32(uid), gid: uint32(gid), setCred: switchCred}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				su.groups = append(su.groups, uint32(g))
			}
		}
	}
	return su, nil
}

// sysProcAttr runs a child as the server user. The credential is set directly
// rather than through su or runuser so that no PAM session or login shell is
// involved (the fallback user has none). Setpgid keeps a Ctrl-C aimed at the
// terminal from reaching the server: stopping it is the caller's job.
func (u *serverUser) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if u.setCred {
		a.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
	}
	return a
}

// fchown gives an open file to the server user when we are root. Through
// the descriptor, so that a symbolic link swapped in after the open cannot
// redirect it.
func (u *serverUser) fchown(f *os.File) error {
	if !u.setCred {
		return nil
	}
	if err := f.Chown(int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("giving %s to user %s: %w", f.Name(), u.name, err)
	}
	return nil
}

// canReach reports whether the user may search every directory from / down
// to dir. A root-owned 0700 directory on the way (t.TempDir, /root, mktemp -d)
// would otherwise make initdb fail with a bare "Permission denied".
func (u *serverUser) canReach(dir string) (bool, string) {
	if !u.setCred {
		return true, ""
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return false, p
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false, p
		}
		perm := fi.Mode().Perm()
		var bit os.FileMode
		switch {
		case st.Uid == u.uid:
			bit = 0o100
		case st.Gid == u.gid || u.inGroup(st.Gid):
			bit = 0o010
		default:
			bit = 0o001
		}
		if perm&bit == 0 {
			return false, p
		}
		if p == filepath.Dir(p) {
			return true, ""
		}
	}
}

func (u *serverUser) inGroup(gid uint32) bool {
	for _, g := range u.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// homeServerDir is where the server's files go when starpipe is root and
// the caller named no directory: in the server account's home, one
// directory per state directory (named by a hash of its path, so every
// manager of that state directory finds the same place; cluster.json
// records it too). The state directory itself then stays 0700: the account
// never needs to enter it.
func (u *serverUser) homeServerDir(stateDir string) (string, error) {
	if u.home == "" || u.home == "/" || !filepath.IsAbs(u.home) {
		return "", fmt.Errorf("server account %s has no usable home directory (%q) to keep the server's files in: run `make deps` to create the account with one, or set a server directory", u.name, u.home)
	}
	fi, err := os.Lstat(u.home)
	if err != nil {
		return "", fmt.Errorf("home directory of server account %s: %w (run `make deps` to create it)", u.name, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != u.uid {
		return "", fmt.Errorf("home directory %s of server account %s is not a directory owned by it (run `make deps`)", u.home, u.name)
	}
	sum := sha256.Sum256([]byte(stateDir))
	return filepath.Join(u.home, "clusters", hex.EncodeToString(sum[:8])), nil
}
