package scanexec

import "syscall"

// setDeathSignal has the kernel kill the scanner when the daemon dies, so
// that a daemon killed with SIGKILL leaves no scan running unattended. The
// signal follows the thread that started the scanner; Go's runtime ends a
// thread only when a goroutine locked to it exits locked, which the
// worker's goroutines never do.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
