package worker_test

import (
	"testing"

	"github.com/starpipe/starpipe/store/storetest"
)

// TestMain hands control to storetest.Main, which starts the private
// PostgreSQL on first use and stops it when the tests are done. Nothing
// here links a scanner library: the scans run in starpipe-scanner child
// processes, each with a HOME and TMPDIR inside the test's scan home.
func TestMain(m *testing.M) { storetest.Main(m) }
