//go:build unix

package procgroup

import (
	"os/exec"
	"syscall"
)

// Isolate makes cmd lead a process group of its own, so that the group
// (the program and whatever it started in it) can be signalled whole, and
// makes cancellation send cancel to the group. Callers that ask for SIGTERM
// follow up with KillGroup (and exec.Cmd.WaitDelay) for what ignores it.
func Isolate(cmd *exec.Cmd, cancel syscall.Signal) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, cancel)
	}
}

// KillGroup kills what is left of the process group led by pid.
func KillGroup(pid int) {
	// ESRCH (the group is already empty) is the usual answer.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
