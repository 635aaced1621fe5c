//go:build !linux

package code

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
)

// newSandbox refuses to run analysers as root where starpipe has no way to
// drop to an unprivileged account and contain them.
func newSandbox() (sandbox, error) {
	if os.Geteuid() == 0 {
		return sandbox{}, fmt.Errorf("%w: running code analysers as root is only supported on Linux", ErrSandbox)
	}
	return sandbox{}, nil
}

func (s sandbox) apply(*exec.Cmd) {}

func owner(fs.FileInfo) (uint32, uint32) { return ^uint32(0), ^uint32(0) }

// EnableSubreaper does nothing outside Linux.
func EnableSubreaper() error { return nil }

func killOrphans() {}
