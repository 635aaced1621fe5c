// Package scheduler fires scan schedules: it turns each due time of every
// enabled schedule into a scan request on starpipe.scan.requests and keeps
// a ledger row for every due time, so that the Level 3 cadence report can
// show that each committed scan ran, or why it did not.
//
// Cadences are robfig/cron/v3 schedules (cron.Schedule, built by
// scheduler/cadence, with biweekly and clamped monthly as custom
// implementations). The firing loop is the scheduler's own rather than
// cron.Cron's, because cron.Cron reads the wall clock internally and
// cannot be driven by an injected Clock in tests, and because each firing
// must first win a database claim.
//
// # Exactly once across replicas
//
// Any number of `starpipe serve` replicas may run a scheduler. Two guards
// make each due time fire at most once:
//
//  1. Leadership: a session-level PostgreSQL advisory lock held on a
//     dedicated connection. Only the holder fires; the others stand by and
//     retry every StandbyRetry. When the leader's session ends (Stop, a
//     crash, a lost network) PostgreSQL releases the lock and a standby
//     takes over.
//  2. The claim: the ledger's unique (schedule, due time, catch-up) row.
//     A scheduler fires a due time only if it inserted that row, so even
//     two schedulers that both believe they lead (a network partition
//     noticed late) fire it once.
//
// The scan request is written to the transactional outbox in the claim's
// transaction, so a claimed run is never without its request and the
// request never exists without its ledger row.
//
// # Overlap
//
// A due time that comes while an earlier run of the same schedule is still
// pending or running is recorded as skipped, naming the blocking ledger
// row. A run with no reported end after AbandonAfter is marked failed
// (abandoned) so that a lost request cannot block a schedule forever.
//
// # Missed runs and the catch-up run
//
// Each schedule has a watermark: the latest due time accounted for in the
// ledger (fired, skipped or missed), advanced in the same transaction as
// the row. Due times are owed from the schedule's active_since (its
// creation, re-enabling, or change of cadence, time zone or start date).
// Whenever the leader looks at a schedule (on becoming leader and at every
// wake-up), it takes the due times in (watermark, now]:
//
//   - if the latest is at most Grace old, it fires normally and any earlier
//     ones are recorded missed;
//   - otherwise every one of them is recorded missed, and one catch-up run
//     fires: a separate ledger row flagged catch_up whose due time is the
//     latest missed one. Its row is claimed like any other, so the catch-up
//     too fires once across replicas and restarts.
//
// Every due time that passed without a run therefore shows as missed (the
// evidence gap the cadence report shows), and the catch-up run restores
// current evidence without pretending the gap did not happen.
//
// # Completion
//
// The scan worker that consumes starpipe.scan.requests reports progress
// through the store (MarkLedger): pending -> running -> succeeded or
// failed, with every scan run the due time produced.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler/cadence"
	"github.com/starpipe/starpipe/store"
)

// DefaultLockKey is the advisory lock key that elects the leading
// scheduler: the ASCII bytes "starschd" as an int64. Other lock users
// (goose's migration lock) use other keys.
const DefaultLockKey int64 = 0x7374_6172_7363_6864

// Defaults for Options.
const (
	DefaultGrace        = 5 * time.Minute
	DefaultPollInterval = 10 * time.Second
	DefaultStandbyRetry = 10 * time.Second
	DefaultAbandonAfter = 24 * time.Hour
)

// maxBatch bounds the due times handled in one step, so that a long outage
// of a frequent cadence is recorded in bounded chunks rather than one huge
// statement.
const maxBatch = 1000

// Store is what the scheduler needs from the database; *store.Store
// implements it.
type Store interface {
	ListSchedules(ctx context.Context) ([]store.Schedule, error)
	ClaimDue(ctx context.Context, req store.ClaimRequest) (store.Claim, error)
	RecordMissed(ctx context.Context, schedule string, dues []time.Time, now time.Time) (int, error)
	TryLead(ctx context.Context, key int64) (*store.LeaderSession, bool, error)
}

// Options configure a Scheduler. Store is required.
type Options struct {
	Store     Store
	Publisher Publisher // nil: OutboxPublisher
	Clock     Clock     // nil: RealClock
	Logger    *slog.Logger

	// LockKey is the advisory lock that elects the leader; 0 means
	// DefaultLockKey. Schedulers share a database's schedules only if
	// they share the key.
	LockKey int64
	// Grace is how late a due time may still be fired as an ordinary run
	// (a leader that took over seconds after it, a slow wake-up); older
	// ones are recorded missed and caught up once. Default DefaultGrace.
	Grace time.Duration
	// PollInterval is how often the leader reloads schedules and checks its
	// lock session when no change is announced. It runs on the wall clock
	// (it paces the database, not the due times). Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// StandbyRetry is how often a standby (or a leader after an error)
	// tries again, on Clock. Default DefaultStandbyRetry.
	StandbyRetry time.Duration
	// AbandonAfter is how long a run may stay pending or running before
	// the next due time of its schedule marks it failed. Default
	// DefaultAbandonAfter.
	AbandonAfter time.Duration
}

func (o Options) withDefaults() Options {
	if o.Publisher == nil {
		o.Publisher = OutboxPublisher{}
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockKey == 0 {
		o.LockKey = DefaultLockKey
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.StandbyRetry <= 0 {
		o.StandbyRetry = DefaultStandbyRetry
	}
	if o.AbandonAfter <= 0 {
		o.AbandonAfter = DefaultAbandonAfter
	}
	return o
}

// Scheduler fires due schedules while it leads. Use New, then Start and
// Stop.
type Scheduler struct {
	opt   Options
	log   *slog.Logger
	clock Clock

	leading atomic.Bool

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}

	// badSpecs remembers schedules already reported as unusable (by name
	// and update time), so that the log gets one line per bad version
	// instead of one per wake-up.
	badSpecs map[string]time.Time
}

// New returns a scheduler; it does nothing until Start.
func New(opt Options) (*Scheduler, error) {
	if opt.Store == nil {
		return nil, errors.New("scheduler: Options.Store is required")
	}
	opt = opt.withDefaults()
	return &Scheduler{
		opt:      opt,
		log:      opt.Logger.With("component", "scheduler"),
		clock:    opt.Clock,
		badSpecs: map[string]time.Time{},
	}, nil
}

// Start runs the scheduler in the background until ctx is cancelled or
// Stop is called, and returns at once. It tries to lead right away; a
// standby keeps trying. Start may be called once.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("scheduler: already started")
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx)
	return nil
}

// Stop stops firing, releases leadership and waits for the loop to end.
// A claim in progress completes or rolls back first. Stop is idempotent
// and may be called without Start.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Leading reports whether this scheduler currently holds the leader lock.
func (s *Scheduler) Leading() bool { return s.leading.Load() }

func (s *Scheduler) run(ctx context.Context) {
	defer close(s.done)
	for {
		sess, ok, err := s.opt.Store.TryLead(ctx, s.opt.LockKey)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("scheduler lock unavailable", "err", err, "retry_in", s.opt.StandbyRetry)
		case ok:
			s.log.Info("leading")
			s.lead(ctx, sess)
			s.log.Info("stopped leading")
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(s.opt.StandbyRetry):
		}
	}
}

// lead fires schedules until ctx ends or the lock session is lost.
func (s *Scheduler) lead(ctx context.Context, sess *store.LeaderSession) {
	lctx, cancel := context.WithCancel(ctx)
	wake := make(chan struct{}, 1)
	lost := make(chan struct{})
	// The session's connection is not safe for concurrent use: this
	// goroutine owns it, turns its notifications and polls into wake-ups,
	// and closes it (releasing the lock) when leading ends.
	go func() {
		defer close(lost)
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = sess.Close(cctx)
		}()
		for {
			if _, err := sess.Wait(lctx, s.opt.PollInterval); err != nil {
				if lctx.Err() == nil {
					s.log.Warn("scheduler lock session lost", "err", err)
				}
				return
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	s.leading.Store(true)
	defer func() {
		s.leading.Store(false)
		cancel()
		<-lost
	}()

	for {
		next, err := s.tick(lctx)
		if lctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Error("firing schedules", "err", err, "retry_in", s.opt.StandbyRetry)
			if retry := s.clock.Now().Add(s.opt.StandbyRetry); next.IsZero() || retry.Before(next) {
				next = retry
			}
		}
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = s.clock.After(next.Sub(s.clock.Now()))
		}
		select {
		case <-lctx.Done():
			return
		case <-lost:
			return
		case <-wake:
		case <-timer:
		}
	}
}

// tick accounts for every due time up to now and returns the earliest
// next due time (zero when nothing is scheduled).
func (s *Scheduler) tick(ctx context.Context) (time.Time, error) {
	now := s.clock.Now()
	scs, err := s.opt.Store.ListSchedules(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var (
		next time.Time
		errs []error
	)
	for _, sc := range scs {
		if !sc.Enabled {
			continue
		}
		c, err := s.cadenceOf(sc)
		if err != nil {
			continue
		}
		if err := s.settle(ctx, sc, c, now); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		if n := nextAfter(c, now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next, errors.Join(errs...)
}

// nextAfter is the first firing of a robfig/cron schedule after now; every
// cadence, the custom biweekly and clamped monthly ones included, is one.
func nextAfter(s cron.Schedule, now time.Time) time.Time { return s.Next(now) }

// cadenceOf parses a stored schedule's cadence, logging a schedule that
// cannot be used once per version. Validation on the way in makes this
// rare: a time zone missing from the running binary, say.
func (s *Scheduler) cadenceOf(sc store.Schedule) (cadence.Cadence, error) {
	sp, err := SpecOf(sc)
	var c cadence.Cadence
	if err == nil {
		c, err = sp.CadenceOf()
	}
	if err != nil {
		if s.badSpecs[sc.Name] != sc.UpdatedAt {
			s.badSpecs[sc.Name] = sc.UpdatedAt
			s.log.Error("schedule not fired: unusable definition", "schedule", sc.Name, "err", err)
		}
		return nil, err
	}
	delete(s.badSpecs, sc.Name)
	return c, nil
}

// settle accounts for the due times of one schedule in (watermark, now]:
// see the package comment for what is fired, missed and caught up.
func (s *Scheduler) settle(ctx context.Context, sc store.Schedule, c cadence.Cadence, now time.Time) error {
	from := sc.ActiveSince
	if sc.LastFiredDue.After(from) {
		from = sc.LastFiredDue
	}
	for {
		dues := cadence.Between(c, from, now, maxBatch+1)
		if len(dues) == 0 {
			return nil
		}
		more := len(dues) > maxBatch
		if more {
			dues = dues[:maxBatch]
		}
		last := dues[len(dues)-1]
		onTime := !more && now.Sub(last) <= s.opt.Grace
		missed := dues
		if onTime {
			missed = dues[:len(dues)-1]
		}
		if len(missed) > 0 {
			n, err := s.opt.Store.RecordMissed(ctx, sc.Name, missed, now)
			if err != nil {
				return err
			}
			if n > 0 {
				s.log.Warn("due times missed", "schedule", sc.Name, "count", n,
					"first", missed[0], "last", missed[len(missed)-1])
			}
		}
		if more {
			from = last
			continue
		}
		return s.fire(ctx, sc, last, !onTime, now)
	}
}

// fire claims one due time and, if this scheduler won the claim and no
// earlier run is unfinished, queues its scan request.
func (s *Scheduler) fire(ctx context.Context, sc store.Schedule, due time.Time, catchUp bool, now time.Time) error {
	req := store.ClaimRequest{
		Schedule:      sc.Name,
		Due:           due,
		CatchUp:       catchUp,
		Now:           now,
		AbandonBefore: now.Add(-s.opt.AbandonAfter),
		// The request names the schedule and the version claimed, read
		// under the claim's lock; the worker loads that version.
		Enqueue: func(ctx context.Context, q *store.Tx, c store.Claim) error {
			return s.opt.Publisher.PublishScanRequest(ctx, q, ScanRequest{
				LedgerID: c.LedgerID, Schedule: sc.Name, Version: c.Version, Due: due, CatchUp: catchUp,
			})
		},
	}
	c, err := s.opt.Store.ClaimDue(ctx, req)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted since the list was read
	}
	if err != nil {
		return fmt.Errorf("firing %s: %w", sc.Name, err)
	}
	switch {
	case !c.Claimed:
		s.log.Debug("due time already claimed", "schedule", sc.Name, "due", due, "catch_up", catchUp, "ledger_id", c.LedgerID)
	case c.Status == finding.LedgerSkipped:
		s.log.Warn("run skipped: previous run unfinished", "schedule", sc.Name, "due", due,
			"catch_up", catchUp, "ledger_id", c.LedgerID, "blocked_by", c.Blocker)
	case catchUp:
		s.log.Info("catch-up run queued", "schedule", sc.Name, "due", due, "ledger_id", c.LedgerID)
	default:
		s.log.Info("run queued", "schedule", sc.Name, "due", due, "ledger_id", c.LedgerID)
	}
	return nil
}
