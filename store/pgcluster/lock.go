package pgcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// InUseError is returned when another process manages the state directory.
type InUseError struct {
	Dir string
	PID int // 0 when the holder did not record one
}

func (e *InUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("state directory %s is in use by another starpipe", e.Dir)
	}
	return fmt.Sprintf("state directory %s is in use by another starpipe (pid %d)", e.Dir, e.PID)
}

// dirLock is an flock on Dir/cluster.lock. flock rather than a pid file
// because the kernel drops it when the holder dies, so a crash never leaves
// a lock to clean up; the pid written inside is only for the error message.
// The descriptor is close-on-exec, so neither pg_ctl nor the postmaster ever
// inherits it: the lock lives exactly as long as the managing process holds
// it, which is what lets `starpipe testdb start` return and leave the server
// running.
type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, "cluster.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
			return nil, &InUseError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	// Blank the pid first so a reader never names a process that no longer
	// holds the lock; closing the descriptor drops the flock.
	_ = l.f.Truncate(0)
	_ = l.f.Close()
	l.f = nil
}
