package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// stage orders the shutdown: every part of a stage is interrupted, and has
// returned, before the next stage is interrupted.
type stage int

const (
	// stageIntake parts take new work: the scheduler fires, consumers
	// fetch. Interrupted, they stop taking work and finish (and commit)
	// what they hold.
	stageIntake stage = iota
	// stageBackground parts serve the others: the outbox relay, topic
	// provisioning, the dev demo target. They stop once work has drained,
	// so that what the drain wrote is still delivered while it can be.
	stageBackground
	// stageHTTP is the API server, which closes last: reads keep working
	// while the rest stops.
	stageHTTP
)

// part is one long-running piece of the daemon, in the manner of
// oklog/run.Group's actors: a run function and an interrupt.
type part struct {
	name  string
	stage stage
	// run runs until its context is cancelled and then returns nil, or
	// returns an error when the part cannot go on. Returning before the
	// daemon stops, even with nil, stops the daemon: a part that ends on
	// its own is a failure of the process.
	run func(ctx context.Context) error
	// stop, when set, is the interrupt instead of cancelling run's
	// context: the HTTP server's graceful Shutdown. ctx carries the
	// shutdown deadline; stop must return by then.
	stop func(ctx context.Context)
}

// running is a started part.
type running struct {
	part
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned
	err    error         // run's result, valid once done is closed
}

// shutdownPlan is what runGroup does between the first part ending and the
// parts being interrupted.
type shutdownPlan struct {
	timeout time.Duration // the whole shutdown, delay included
	delay   time.Duration // not-ready but still serving
	// notReady flips readiness to 503; stopIntake makes new uploads
	// answer 503. Both run once, before any part is interrupted.
	notReady   func()
	stopIntake func()
	// release closes what the parts used (producer, pool) after they all
	// returned; it gets what is left of the deadline.
	release func(ctx context.Context)
}

// runGroup starts every part and waits until ctx is cancelled or a part
// returns. Then it shuts down once, in order, within plan.timeout: not
// ready, the delay, intake stops, each stage interrupted and awaited, the
// resources released. It returns the first part's error (nil when ctx was
// cancelled and everything stopped in time).
func runGroup(ctx context.Context, log *slog.Logger, parts []part, plan shutdownPlan) error {
	ended := make(chan *running, len(parts))
	rs := make([]*running, len(parts))
	for i, p := range parts {
		// Parts do not inherit ctx's cancellation: the shutdown below
		// decides when, and in which order, each one is interrupted.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &running{part: p, cancel: cancel, done: make(chan struct{})}
		rs[i] = r
		go func() {
			r.err = p.run(pctx)
			close(r.done)
			ended <- r
		}()
	}

	var first error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case r := <-ended:
		first = r.err
		if first == nil {
			first = errors.New("stopped on its own")
		}
		first = fmt.Errorf("%s: %w", r.name, first)
		log.Error("a part stopped; shutting down the others", "part", r.name, "err", r.err)
	}

	deadline := time.Now().Add(plan.timeout)
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	if plan.notReady != nil {
		plan.notReady()
	}
	if plan.delay > 0 {
		// Everything still serves while the load balancer notices the
		// 503; a part failing meanwhile ends the wait early.
		t := time.NewTimer(plan.delay)
		select {
		case <-t.C:
		case r := <-ended:
			ended <- r // seen again below through r.done
		}
		t.Stop()
	}
	if plan.stopIntake != nil {
		plan.stopIntake()
	}

	var late []string
	for _, st := range []stage{stageIntake, stageBackground, stageHTTP} {
		var stopped []chan struct{}
		for _, r := range rs {
			if r.stage != st {
				continue
			}
			s := make(chan struct{})
			stopped = append(stopped, s)
			go func() {
				defer close(s)
				if r.stop != nil {
					r.stop(sctx)
				}
				r.cancel()
				<-r.done
			}()
		}
		i := 0
		for _, r := range rs {
			if r.stage != st {
				continue
			}
			select {
			case <-stopped[i]:
			case <-sctx.Done():
			}
			select {
			case <-stopped[i]:
				if r.err != nil && first == nil {
					first = fmt.Errorf("%s: %w", r.name, r.err)
				}
			default:
				// The process exits regardless: a part that does not
				// stop in time must not hold the shutdown past its
				// bound. Later stages are still interrupted.
				late = append(late, r.name)
			}
			i++
		}
	}
	if len(late) == 0 && plan.release != nil {
		released := make(chan struct{})
		go func() {
			defer close(released)
			plan.release(sctx)
		}()
		select {
		case <-released:
		case <-sctx.Done():
			late = append(late, "release")
		}
	}
	if len(late) > 0 {
		err := fmt.Errorf("did not stop within shutdown_timeout (%v): %v", plan.timeout, late)
		log.Error("shutdown incomplete", "err", err)
		if first == nil {
			first = err
		}
	}
	for _, r := range rs {
		r.cancel()
	}
	log.Info("stopped")
	return first
}
