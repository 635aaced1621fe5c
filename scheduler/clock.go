package scheduler

import "time"

// Clock is the scheduler's source of time. Due times are computed from Now
// and waited for with After, so that tests can drive the scheduler through
// days of due times by advancing a fake clock instead of sleeping.
type Clock interface {
	Now() time.Time
	// After sends the time once d has passed; d <= 0 sends at once.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
