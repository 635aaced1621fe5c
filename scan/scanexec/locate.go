package scanexec

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Locate finds the scanner binary. A configured value (scan.scanner_path)
// containing a path separator is that file; another non-empty value is a
// name looked up in PATH. Without one: starpipe-scanner next to the
// running executable (where `make build` and an install put it), then
// starpipe-scanner in PATH.
func Locate(configured string) (string, error) {
	if configured != "" {
		if strings.ContainsRune(configured, os.PathSeparator) {
			abs, err := filepath.Abs(configured)
			if err != nil {
				return "", fmt.Errorf("%w: %s: %v", ErrNotFound, configured, err)
			}
			if err := executable(abs); err != nil {
				return "", fmt.Errorf("%w: %s (scan.scanner_path): %v", ErrNotFound, abs, err)
			}
			return abs, nil
		}
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("%w: %s (scan.scanner_path) is not in PATH", ErrNotFound, configured)
		}
		return filepath.Abs(p)
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		p := filepath.Join(filepath.Dir(exe), BinaryName)
		if executable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath(BinaryName); err == nil {
		return filepath.Abs(p)
	}
	tried = append(tried, BinaryName+" in PATH")
	return "", fmt.Errorf("%w: tried %s; build it with `make build` or set scan.scanner_path",
		ErrNotFound, strings.Join(tried, ", "))
}

// executable checks that p is a regular file with an execute bit.
func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("not executable")
	}
	return nil
}
