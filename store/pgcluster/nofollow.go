package pgcluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// When starpipe runs as root, the server's directory belongs to the server
// account, which could replace any file or directory in it with a symbolic
// link to, say, /etc/shadow. Everything root does in there therefore goes
// through these helpers: each path is opened one component at a time from /
// with O_NOFOLLOW, so a symbolic link anywhere in it is refused rather than
// followed, and ownership changes use the descriptor (fchown), never the
// path. The paths handed in have had their trusted part (above the server's
// directory) resolved once with filepath.EvalSymlinks, so a legitimately
// symlinked parent (a home directory on another disk) still works.

// ErrSymlink is wrapped by errors about a symbolic link where the server's
// files are.
var ErrSymlink = errors.New("refusing to follow a symbolic link")

// openNoFollow opens the absolute, clean path with flag (O_NOFOLLOW and
// O_CLOEXEC added), refusing a symbolic link in any component.
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return nil, fmt.Errorf("opening %s: not an absolute clean path", path)
	}
	dirfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /: %w", err)
	}
	comps := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if path == "/" {
		comps = nil
	}
	for i, name := range comps {
		last := i == len(comps)-1
		f := unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			f |= flag
		} else {
			f |= unix.O_PATH | unix.O_DIRECTORY
		}
		fd, err := unix.Openat(dirfd, name, f, uint32(perm.Perm()))
		if err != nil {
			sub := "/" + filepath.Join(comps[:i+1]...)
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = fmt.Errorf("%w: %s is a symbolic link", ErrSymlink, sub)
			} else {
				err = &os.PathError{Op: "open", Path: sub, Err: err}
			}
			unix.Close(dirfd)
			return nil, err
		}
		unix.Close(dirfd)
		dirfd = fd
	}
	if len(comps) == 0 {
		return os.NewFile(uintptr(dirfd), path), nil
	}
	// An O_PATH descriptor of a symlink (possible for the last component
	// only if the caller passed O_PATH) is refused too.
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(dirfd)
		return nil, fmt.Errorf("%w: %s is a symbolic link", ErrSymlink, path)
	}
	return os.NewFile(uintptr(dirfd), path), nil
}

// readNoFollow reads a whole file (see openNoFollow); at most limit bytes
// from its end when limit > 0.
func readNoFollow(path string, limit int64) ([]byte, error) {
	f, err := openNoFollow(path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if limit > 0 {
		if fi, err := f.Stat(); err == nil && fi.Size() > limit {
			_, _ = f.Seek(-limit, io.SeekEnd)
		}
	}
	return io.ReadAll(f)
}

// createNoFollow creates a new file (it must not exist: O_EXCL also refuses
// a symbolic link planted in its place), writes data and gives it to uid:gid
// through the descriptor when chown is set.
func createNoFollow(path string, data []byte, perm os.FileMode, u *serverUser) error {
	f, err := openNoFollow(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := u.fchown(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// removeNoFollow removes the entry path names, whatever it is (a symbolic
// link is removed, not followed); a missing entry is not an error.
func removeNoFollow(path string) error {
	parent, err := openNoFollow(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	defer parent.Close()
	if err := unix.Unlinkat(int(parent.Fd()), filepath.Base(path), 0); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// mkdirNoFollow makes sure path is a directory owned by u (creating it
// 0700 if missing) and returns it open. An existing directory owned by
// anyone but u is refused: it is not the server's.
func mkdirNoFollow(path string, u *serverUser) (*os.File, error) {
	parent, err := openNoFollow(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	err = unix.Mkdirat(int(parent.Fd()), filepath.Base(path), 0o700)
	parent.Close()
	created := err == nil
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	d, err := openNoFollow(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if created {
		if err := u.fchown(d); err != nil {
			d.Close()
			return nil, err
		}
	}
	fi, err := d.Stat()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("checking %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != u.uid {
		d.Close()
		return nil, fmt.Errorf("%s belongs to uid %d, not to %s (uid %d) who runs the server: remove it or choose another directory", path, st.Uid, u.name, u.uid)
	}
	return d, nil
}

// trustedDir resolves dir (which must exist) and checks that nobody but root
// and this process's user can change what its path leads to: it is owned by
// one of them and not writable by others unless sticky (like /tmp, where no
// one else can replace our entries).
func trustedDir(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", dir, err)
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("checking %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("checking %s: no ownership information", p)
		}
		euid := uint32(os.Geteuid())
		if st.Uid != 0 && st.Uid != euid {
			return "", fmt.Errorf("%s belongs to uid %d: the server's directory must be below directories only root or uid %d can change", p, st.Uid, euid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return "", fmt.Errorf("%s is writable by others (mode %v): the server's directory must be below directories only root or uid %d can change", p, fi.Mode().Perm(), euid)
		}
		if p == filepath.Dir(p) {
			return real, nil
		}
	}
}
