package worker_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/starpipe/starpipe/scan/nucleienv"
	"github.com/starpipe/starpipe/store/storetest"
)

// childVar marks the re-run test process. STARPIPE_SCAN_HOME cannot
// serve as the mark: scan/nucleienv sets it in every process that imports
// nuclei, before TestMain runs.
const childVar = "STARPIPE_WORKER_TEST_CHILD"

// TestMain first re-runs the test binary with STARPIPE_SCAN_HOME pointing
// at a fresh temporary directory, so that the files nuclei writes while its
// packages initialise (before any test code runs) and the scanners' files
// land there and are removed afterwards, as scan/nuclei's tests intend.
// The re-run child is the process that runs the tests, so it alone hands
// control to storetest.Main, which starts the private PostgreSQL on first
// use and stops it (and drops the template database) when the tests are
// done. The parent never runs a test and never starts a server.
func TestMain(m *testing.M) {
	if os.Getenv(childVar) != "" {
		storetest.Main(m)
		return
	}
	os.Exit(reexec())
}

func reexec() int {
	// The temporary directory the test was started with, not the one
	// nucleienv substituted (which os.TempDir would return, also when
	// TMPDIR was unset: then it is /tmp).
	tmp, _ := nucleienv.Original("TMPDIR")
	if tmp == "" {
		tmp = "/tmp"
	}
	dir, err := os.MkdirTemp(tmp, "starpipe-worker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating test state directory:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	// The child's TMPDIR is dir/tmp, where storetest puts a private
	// PostgreSQL's files. When the tests run as root the server runs as
	// another user, who must be able to reach them; otherwise pgcluster
	// keeps them under /var/lib/starpipe, outside this directory.
	err = os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing test state directory:", err)
		return 2
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), nucleienv.Env(dir)...)
	cmd.Env = append(cmd.Env, childVar+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "re-running tests:", err)
		return 2
	}
	return 0
}
