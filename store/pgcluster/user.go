package pgcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the system account postgres runs as. When the manager itself
// is not root it is the current user and no credential switch happens.
type serverUser struct {
	name    string
	uid     uint32
	gid     uint32
	groups  []uint32 // supplementary groups, for the directory access check
	setCred bool     // run children with this credential (we are root)
}

// fallbackUser is created when running as root on a machine without a
// postgres account, because PostgreSQL refuses to run as root.
const fallbackUser = "starpipe"

// resolveUser decides who runs the server. As root, an explicit name must
// exist; otherwise the owner of an existing data directory is kept (so a
// restart never changes owner), then "postgres", then a created "starpipe"
// system user.
func resolveUser(ctx context.Context, name, dataDir string, log *slog.Logger) (*serverUser, error) {
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
	if name == "" {
		if fi, err := os.Stat(dataDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
					return userFrom(u, true)
				}
			}
		}
	}
	if name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("looking up server user %q: %w", name, err)
		}
		if u.Uid == "0" {
			return nil, fmt.Errorf("server user %q is root: PostgreSQL refuses to run as root", name)
		}
		return userFrom(u, true)
	}
	if u, err := user.Lookup("postgres"); err == nil {
		return userFrom(u, true)
	}
	if u, err := user.Lookup(fallbackUser); err == nil {
		return userFrom(u, true)
	}
	args := []string{"-r", "-M", "-s", "/usr/sbin/nologin"}
	// A group of that name may be left from an earlier user; join it
	// rather than fail.
	if _, err := user.LookupGroup(fallbackUser); err == nil {
		args = append(args, "-g", fallbackUser)
	}
	out, err := exec.CommandContext(ctx, "useradd", append(args, fallbackUser)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("creating system user %q to run PostgreSQL (it refuses to run as root and there is no postgres user): %w: %s",
			fallbackUser, err, out)
	}
	log.Warn("created system user to run PostgreSQL, which refuses to run as root", "user", fallbackUser)
	u, err := user.Lookup(fallbackUser)
	if err != nil {
		return nil, fmt.Errorf("looking up created user %q: %w", fallbackUser, err)
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
	su := &serverUser{name: u.Username, uid: uint32(uid), gid: uint32(gid), setCred: switchCred}
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

// chown gives path to the server user when we are root.
func (u *serverUser) chown(path string) error {
	if !u.setCred {
		return nil
	}
	if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("giving %s to user %s: %w", path, u.name, err)
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

// relocatedBase is where the server's files go when the server user cannot
// reach the state directory. It is derived from the state directory's path so
// that every manager of that directory finds the same place, and it is also
// recorded in the state file.
func relocatedBase(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return filepath.Join("/var/lib/starpipe/pgcluster", hex.EncodeToString(sum[:8]))
}
