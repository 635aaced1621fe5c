//go:build unix

package code

import (
	"os/exec"
	"syscall"
)

// isolate puts the command in a process group of its own, and makes a
// cancelled or timed-out run kill the whole group: scanners fork workers
// that would otherwise outlive the command and keep its pipes open. Being
// in another group, the command would also outlive the scanner process
// killed with its group: on Linux the kernel kills it when that process
// dies.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killGroup kills what is left of the process group led by pid.
func killGroup(pid int) {
	// ESRCH (the group is already empty) is the usual answer.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
