package nuclei

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/starpipe/starpipe/scan/nucleienv"
)

// TestMain re-runs the test binary with STARPIPE_SCAN_HOME pointing at a
// fresh temporary directory, so that nuclei's files (written while its
// packages initialise, before any test code runs) land there and are
// removed afterwards.
func TestMain(m *testing.M) {
	// nucleienv sets STARPIPE_SCAN_HOME in every process, so the re-run
	// child is marked by a variable of its own.
	if os.Getenv(childVar) != "" {
		os.Exit(m.Run())
	}
	os.Exit(reexec())
}

const childVar = "STARPIPE_NUCLEI_TEST_CHILD"

func reexec() int {
	// The temporary directory the test was started with, not the one
	// nucleienv substituted.
	tmp, _ := nucleienv.Original("TMPDIR")
	dir, err := os.MkdirTemp(tmp, "starpipe-nuclei-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating test state directory:", err)
		return 2
	}
	defer os.RemoveAll(dir)
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
