package code

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// newSandbox decides how the analyser runs: as SandboxUser when the
// scanner is root, as the scanner's user otherwise.
func newSandbox() (sandbox, error) {
	if os.Geteuid() != 0 {
		return sandbox{}, nil
	}
	u, err := user.Lookup(SandboxUser)
	if err != nil {
		return sandbox{}, fmt.Errorf("%w: starpipe runs as root, and code analysers then run as the unprivileged account %s, which does not exist: create it with `make deps` (scripts/ensure-deps.sh): %v",
			ErrSandbox, SandboxUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return sandbox{}, fmt.Errorf("%w: account %s has uid %s gid %s: not an unprivileged account", ErrSandbox, SandboxUser, u.Uid, u.Gid)
	}
	return sandbox{run: true, uid: uint32(uid), gid: uint32(gid)}, nil
}

// apply sets up cmd (already isolated in a process group with a parent
// death signal) to run as the account, with no supplementary groups, as
// the first process of a PID namespace of its own. When that process
// ends, for whatever reason, the kernel kills every process left in the
// namespace: a helper that left the process group with setsid, or forked
// twice, goes with it.
func (s sandbox) apply(cmd *exec.Cmd) {
	if !s.run {
		return
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.uid, Gid: s.gid, Groups: []uint32{}}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
}

func owner(st fs.FileInfo) (uint32, uint32) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Uid, s.Gid
	}
	return ^uint32(0), ^uint32(0)
}

// subreaper is set by EnableSubreaper.
var subreaper atomic.Bool

// EnableSubreaper makes this process the reaper of every process its
// analysers leave behind, and Run kill them when the analyser ends. It is
// for a process that runs nothing else (the scanner process calls it):
// Run then kills every child of the process it did not account for.
//
// Without root there is no PID namespace to put the analyser in; a
// process group does not hold a helper that calls setsid. Orphans,
// setsid or not, are re-parented to the nearest subreaper, so they all
// come back to this process, which kills them. The limit: a process that
// forks faster than the loop kills could in theory outrun it for a while;
// as root the PID namespace has no such limit.
func EnableSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	subreaper.Store(true)
	return nil
}

// killOrphans kills and reaps every child of this process, until none is
// left, when EnableSubreaper was called.
func killOrphans() {
	if !subreaper.Load() {
		return
	}
	self := os.Getpid()
	for range 1000 {
		kids := children(self)
		if len(kids) == 0 {
			return
		}
		for _, pid := range kids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range kids {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}
	}
}

// children lists the processes whose parent is pid, from /proc.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}
