//go:build !unix

package procgroup

import (
	"os/exec"
	"syscall"
)

// Isolate does nothing where there are no process groups.
func Isolate(*exec.Cmd, syscall.Signal) {}

// KillGroup does nothing where there are no process groups.
func KillGroup(int) {}
