// Package schedulertest provides a fake scheduler.Clock for tests of the
// scheduler and of what it drives (the scan workers): time moves only when
// the test says so, and tests learn that a scheduler is waiting from the
// timers it registers, never from sleeping.
package schedulertest

import (
	"sync"
	"testing"
	"time"
)

// FakeClock is a scheduler.Clock that moves only when the test says so.
// Tests learn that a scheduler has finished its work and is waiting again
// from the timers it registers (awaitTimer), never from sleeping.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	changed chan struct{} // closed and replaced whenever a timer is added
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func NewFakeClock(now time.Time) *FakeClock {
	return &FakeClock{now: now, changed: make(chan struct{})}
}

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Set moves the clock to t and fires every timer due by then.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(t) {
			kept = append(kept, tm)
			continue
		}
		tm.ch <- t
	}
	c.timers = kept
}

// AwaitTimers waits until n timers set to fire at exactly at are
// pending: the schedulers that set them have finished their step and are
// waiting.
func (c *FakeClock) AwaitTimers(t testing.TB, at time.Time, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		found := 0
		for _, tm := range c.timers {
			if tm.at.Equal(at) {
				found++
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if found >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			var ats []time.Time
			for _, tm := range c.timers {
				ats = append(ats, tm.at)
			}
			t.Fatalf("want %d timers at %s, still missing after 20s; pending timers: %v", n, at.UTC(), ats)
		}
	}
}
