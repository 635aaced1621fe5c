//go:build unix

package scanexec

import (
	"os/exec"
	"syscall"
)

// isolate makes the scanner lead a process group of its own, so that the
// group (the scanner and whatever it started in it) can be signalled
// whole, and makes cancellation ask the group to stop with SIGTERM; the
// runner's WaitDelay and killGroup follow up with SIGKILL.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}

// killGroup kills what is left of the process group led by pid.
func killGroup(pid int) {
	// ESRCH (the group is already empty) is the usual answer.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
