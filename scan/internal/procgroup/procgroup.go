// Package procgroup runs child programs (the scanner, an analyser) so that
// everything they start can be stopped with them: a process group of their
// own, killed whole, and on Linux a parent-death signal so that a child does
// not outlive the process that started it. It also removes the scratch trees
// such programs leave behind.
package procgroup

import (
	"io/fs"
	"os"
	"path/filepath"
)

// RemoveTree removes dir. Tools may leave read-only directories behind
// (Go's module cache does), which os.RemoveAll cannot empty: they are made
// writable and the removal tried again.
func RemoveTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
