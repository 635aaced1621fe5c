//go:build !unix

package mapping_test

import "time"

// cpuTime is not measured on this platform; the CPU metrics then read 0.
func cpuTime() time.Duration { return 0 }
