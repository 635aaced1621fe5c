package procgroup

import "syscall"

// setDeathSignal has the kernel kill the child when its parent dies, so
// that a daemon (or scanner) killed with SIGKILL leaves nothing running
// unattended. The signal follows the thread that started the child; Go's
// runtime ends a thread only when a goroutine locked to it exits locked,
// which the callers' goroutines never do.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
