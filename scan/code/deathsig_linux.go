package code

import "syscall"

// setDeathSignal has the kernel kill the command when the process that
// started it (the scanner) dies.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
