package scheduler_test

import "github.com/starpipe/starpipe/scheduler/schedulertest"

type fakeClock = schedulertest.FakeClock

var newFakeClock = schedulertest.NewFakeClock
