//go:build !unix

package scanexec

import "os/exec"

// isolate leaves the command as it is: without process groups, a cancelled
// or timed-out run kills the scanner's own process only (exec's default).
func isolate(*exec.Cmd) {}

// killGroup does nothing where there are no process groups.
func killGroup(int) {}
