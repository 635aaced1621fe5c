package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starpipe/starpipe/internal/testlog"
)

// noLeaks fails the test if it leaves goroutines behind. Register it first
// so that it runs after every other cleanup (the store, the broker).
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// recorder notes the order of events across parts.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waiting is a part that runs until interrupted and records when it was.
func waiting(rec *recorder, name string, s stage) part {
	return part{name: name, stage: s, run: func(ctx context.Context) error {
		<-ctx.Done()
		rec.add("stopped " + name)
		return nil
	}}
}

func TestGroupStopsInStageOrder(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name    string
		failing bool
	}{
		{"cancelled", false},
		{"a part fails", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			errBoom := errors.New("boom")
			started := make(chan struct{})
			parts := []part{
				waiting(rec, "http", stageHTTP),
				waiting(rec, "relay", stageBackground),
				waiting(rec, "consumer", stageIntake),
				{name: "scheduler", stage: stageIntake, run: func(ctx context.Context) error {
					close(started)
					if tc.failing {
						return errBoom
					}
					<-ctx.Done()
					rec.add("stopped scheduler")
					return nil
				}},
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- runGroup(ctx, testlog.New(t, 0), parts, shutdownPlan{
					timeout:    time.Minute,
					notReady:   func() { rec.add("not ready") },
					stopIntake: func() { rec.add("intake closed") },
					release:    func(context.Context) { rec.add("released") },
				})
			}()
			<-started
			if !tc.failing {
				cancel()
			}
			err := <-done
			if tc.failing {
				if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "scheduler") {
					t.Fatalf("runGroup = %v, want the scheduler's error", err)
				}
			} else if err != nil {
				t.Fatalf("runGroup after cancel = %v", err)
			}
			got := rec.list()
			// The consumer and the scheduler stop in the same stage, in
			// either order; everything else is fixed.
			at := func(e string) int { return slices.Index(got, e) }
			order := []string{"not ready", "intake closed", "stopped consumer", "stopped relay", "stopped http", "released"}
			for i := 1; i < len(order); i++ {
				if at(order[i-1]) < 0 || at(order[i-1]) > at(order[i]) {
					t.Fatalf("events %q: %q must come before %q", got, order[i-1], order[i])
				}
			}
			if !tc.failing && at("stopped scheduler") > at("stopped relay") {
				t.Fatalf("events %q: the scheduler stopped after the relay", got)
			}
		})
	}
}

// A part that does not stop must not hold the shutdown past its bound:
// runGroup returns an error naming it, and releases nothing it might still
// be using.
func TestGroupBoundsShutdown(t *testing.T) {
	noLeaks(t)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // lets the stuck part end before the leak check
	rec := &recorder{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := runGroup(ctx, testlog.New(t, 0), []part{
		waiting(rec, "http", stageHTTP),
		{name: "stuck", stage: stageIntake, run: func(context.Context) error {
			<-stuck
			return nil
		}},
	}, shutdownPlan{timeout: 50 * time.Millisecond, release: func(context.Context) { rec.add("released") }})
	if err == nil || !strings.Contains(err.Error(), "stuck") || !strings.Contains(err.Error(), "shutdown_timeout") {
		t.Fatalf("runGroup = %v, want an error naming the stuck part", err)
	}
	if slices.Contains(rec.list(), "released") {
		t.Fatal("resources were released while a part may still use them")
	}
}

// A part returning nil before the daemon was asked to stop is a failure:
// a supervisor must see the process fail, not exit 0.
func TestGroupPartEndingEarlyIsAFailure(t *testing.T) {
	noLeaks(t)
	rec := &recorder{}
	err := runGroup(t.Context(), testlog.New(t, 0), []part{
		waiting(rec, "relay", stageBackground),
		{name: "quitter", stage: stageIntake, run: func(context.Context) error { return nil }},
	}, shutdownPlan{timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "quitter") {
		t.Fatalf("runGroup = %v, want an error naming the part", err)
	}
	if !slices.Equal(rec.list(), []string{"stopped relay"}) {
		t.Fatalf("events %q", rec.list())
	}
}
