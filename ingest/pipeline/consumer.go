package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sanitize"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store"
)

// Publisher is the part of the Kafka producer the consumer uses to emit the
// parse stage's messages.
type Publisher interface {
	Publish(ctx context.Context, topic string, msgs ...bus.Message) error
}

// Enricher scores and maps a finding in place (scoring.Apply, then
// mapping); it must be safe for concurrent use. env is the environmental
// CVSS context the run's schedule asks for, or nil (the enricher may then
// use the scope's own context from configuration).
type Enricher func(f *finding.Finding, env *scoring.Environment)

// Config tunes the consumer.
type Config struct {
	Limits        parse.Limits
	BatchSize     int // findings per message at most
	MaxBatchBytes int // encoded findings per message at most
	SLA           store.SLA
	// Hold says when a run is held instead of resolving (zero: the
	// default, store.DefaultHoldPolicy).
	Hold store.HoldPolicy
	// Sanitize bounds the fields of parsed records (zero: defaults); see
	// parseStorable.
	Sanitize sanitize.Limits
}

// RunStore is what the consumer needs of the database; *store.Store
// implements it. The transactional steps (store.RecordBatch,
// store.UpsertFindings, store.Reconcile, ...) run in the *store.Tx that
// InTx hands out.
type RunStore interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
	GetRunInput(ctx context.Context, id string) (store.RunInput, error)
	OpenArtifact(ctx context.Context, sha string) (store.Artifact, *store.ArtifactReader, error)
	RunFileName(ctx context.Context, runID string) (string, error)
	RunEnvironment(ctx context.Context, runID string) (string, error)
	StartRun(ctx context.Context, id, format string) (bool, error)
	FailRun(ctx context.Context, id, reason string) error
}

// Consumer handles starpipe.scan.results messages.
type Consumer struct {
	st     RunStore
	pub    Publisher
	enrich Enricher
	cfg    Config
	log    *slog.Logger
	m      *metrics
	parse  parseFunc // ingest.ParseReader; tests replace it
}

type metrics struct {
	findings *prometheus.CounterVec
	runs     *prometheus.CounterVec
	batchDur prometheus.Histogram
}

// NewConsumer builds the handler. reg may be nil.
func NewConsumer(st RunStore, pub Publisher, enrich Enricher, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 512 << 10
	}
	if cfg.SLA == (store.SLA{}) {
		cfg.SLA = store.DefaultSLA()
	}
	if cfg.Hold == (store.HoldPolicy{}) {
		cfg.Hold = store.DefaultHoldPolicy()
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if enrich == nil {
		enrich = func(*finding.Finding, *scoring.Environment) {}
	}
	m := &metrics{
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starpipe_ingest_findings_total", Help: "Findings stored by the ingest consumer, by outcome.",
		}, []string{"outcome"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starpipe_ingest_runs_total", Help: "Runs finished by the ingest consumer, by status.",
		}, []string{"status"}),
		batchDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starpipe_ingest_batch_seconds", Help: "Time to store one findings batch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.findings, m.runs, m.batchDur)
	}
	return &Consumer{st: st, pub: pub, enrich: enrich, cfg: cfg, log: log.With("component", "ingest"), m: m, parse: ingest.ParseReader}
}

// Handle processes one message. What cannot succeed however often it is
// tried is poison: the run fails with the reason and the message goes to
// the dead-letter topic (see poisonous). Everything else (the database or
// the broker away for a while, a conflict between concurrent writers) is
// returned for the caller to retry. A panic is poison too: retrying the
// input that caused it would panic again.
func (c *Consumer) Handle(ctx context.Context, msg bus.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// bus logs the poison error once, with the stack.
			err = c.poison(ctx, string(msg.Key), &bus.PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	err = c.handle(ctx, msg)
	if err == nil || bus.IsPoison(err) || !poisonous(ctx, err) {
		return err
	}
	c.log.Warn("message refused for good", "run_id", string(msg.Key), "type", msgType(msg), "err", err)
	return c.poison(ctx, string(msg.Key), err)
}

// poisonous is the consumer's one decision between poison and retriable.
// Poison: a message the broker refuses for its size, a value or reference the database refuses for good (a malformed
// run id, a NUL byte, a value over a limit, a batch of a run that does not
// exist: store.IsPermanent), something the message names that is not there
// (store.ErrNotFound: the outbox commits a message only with its rows, so
// they will not appear later), and an artifact whose content no longer
// matches its hash. Retriable: everything else, notably the database or
// broker being unreachable or shutting down, a serialization failure or
// deadlock, and this consumer being stopped.
func poisonous(ctx context.Context, err error) bool {
	if ctx.Err() != nil || store.IsUnavailable(err) {
		return false
	}
	return store.IsPermanent(err) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, bus.ErrMessageTooLarge) // the broker will refuse it every time
}

func msgType(msg bus.Message) string {
	typ, err := bus.PeekType(msg.Value)
	if err != nil {
		return "unreadable"
	}
	return typ
}

func (c *Consumer) handle(ctx context.Context, msg bus.Message) error {
	env, err := bus.Decode(msg.Value)
	if err != nil {
		return c.poison(ctx, string(msg.Key), err)
	}
	switch env.Type {
	case bus.TypeRunReceived:
		var p RunReceived
		if err := env.Unmarshal(&p); err != nil || p.RunID == "" {
			return c.poison(ctx, string(msg.Key), fmt.Errorf("decode run-received: %w", errors.Join(err, errors.New("run id missing"))))
		}
		return c.parseRun(ctx, p.RunID)
	case bus.TypeRunStarted:
		return nil // informational: the run row already says processing
	case bus.TypeFindings:
		var p FindingsBatch
		if err := env.Unmarshal(&p); err != nil {
			return c.poison(ctx, string(msg.Key), fmt.Errorf("decode findings batch: %w", err))
		}
		if p.RunID == "" || p.Seq < 1 {
			return c.poison(ctx, string(msg.Key), fmt.Errorf("findings batch without run id or sequence"))
		}
		return c.storeBatch(ctx, p)
	case bus.TypeRunFinished:
		var p RunFinished
		if err := env.Unmarshal(&p); err != nil || p.RunID == "" {
			return c.poison(ctx, string(msg.Key), fmt.Errorf("decode run-finished: %w", errors.Join(err, errors.New("run id missing"))))
		}
		return c.finishRun(ctx, p)
	}
	return c.poison(ctx, string(msg.Key), fmt.Errorf("unknown message type %q", env.Type))
}

// Parallel says which messages may be handled concurrently: findings
// batches, which are independent of each other, and run-received, whose
// parse stage can publish batches while earlier ones are being stored. A
// run's run-finished is a barrier: it waits for everything before it, so a
// run is reconciled only after its parse and all its batches are done.
func Parallel(msg bus.Message) bool {
	typ, err := bus.PeekType(msg.Value)
	return err == nil && (typ == bus.TypeFindings || typ == bus.TypeRunReceived)
}

// poison fails the run the message belongs to (its key is the run id) and
// marks the error for the dead-letter topic.
func (c *Consumer) poison(ctx context.Context, runID string, cause error) error {
	if runID != "" {
		if err := c.st.FailRun(ctx, runID, sanitize.Text("unprocessable message: "+cause.Error(), maxReason)); err != nil {
			// A bad key is not a reason to retry a poison message forever.
			c.log.Warn("failing run of poison message", "run_id", runID, "err", err)
		}
		c.m.runs.WithLabelValues(string(finding.RunFailed)).Inc()
	}
	return bus.Poison(cause)
}

// parseRun is the parse stage: it validates the artifact completely before
// emitting anything, so a corrupt file fails its run with nothing written,
// then streams it again into batches. Both passes read the artifact from
// storage one chunk at a time: memory does not grow with its size.
func (c *Consumer) parseRun(ctx context.Context, runID string) error {
	in, err := c.st.GetRunInput(ctx, runID)
	if err != nil {
		return err
	}
	if in.Status.Finished() {
		return nil // a replay of a run already done
	}
	name, err := c.st.RunFileName(ctx, runID)
	if err != nil {
		return err
	}
	if name == "" {
		name = "run " + runID
	}
	opt := parse.Options{File: name, Kind: finding.ScanKind(in.Kind), Scope: in.Scope, Limits: c.cfg.Limits}
	format := ingest.Format(in.Format)

	// Pass 1: validate, and check the whole artifact against its hash
	// (the parser may stop before the end of its input). Stored content
	// that no longer matches is poison: reading it again will not help.
	count := parse.Sink{
		Finding: func(*finding.Finding) error { return nil },
		Asset:   func(*finding.Asset) error { return nil },
	}
	err = c.readArtifact(ctx, in.ArtifactSHA, func(r *store.ArtifactReader) error {
		_, _, perr := c.parse(ctx, r, format, opt, count)
		if rerr := r.Err(); rerr != nil {
			return rerr // the parser saw the reader's failure, maybe unwrapped
		}
		if perr != nil {
			return &invalidArtifact{perr}
		}
		return r.Verify()
	})
	if ia, ok := errors.AsType[*invalidArtifact](err); ok {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("run failed: unreadable artifact", "run_id", runID, "err", ia.err)
		c.m.runs.WithLabelValues(string(finding.RunFailed)).Inc()
		return c.st.FailRun(ctx, runID, sanitize.Text(ia.err.Error(), maxReason))
	}
	if err != nil {
		return err
	}
	ok, err := c.st.StartRun(ctx, runID, in.Format)
	if err != nil || !ok {
		return err
	}
	if err := c.publish(ctx, runID, bus.TypeRunStarted, RunStarted{RunID: runID, Format: in.Format}); err != nil {
		return err
	}

	// Pass 2: emit. A crash here replays run-received; batches carry their
	// sequence number, so the ones already stored are skipped.
	b := &batcher{maxCount: c.cfg.BatchSize, maxBytes: c.cfg.MaxBatchBytes, runID: runID}
	b.flush = func(seq int, payload []byte) error {
		v, err := bus.EncodeRawID(runID+"/"+strconv.Itoa(seq), bus.TypeFindings, time.Now(), payload)
		if err != nil {
			return err
		}
		return c.pub.Publish(ctx, bus.TopicScanResults, bus.Message{Key: []byte(runID), Value: v})
	}
	now := time.Now().UTC()
	sink := parse.Sink{
		Finding: func(f *finding.Finding) error {
			if f.SeenAt.IsZero() {
				f.SeenAt = now
			}
			return b.add(f)
		},
		Asset: func(*finding.Asset) error { return nil },
	}
	var stats parse.Stats
	var sanitized *sanitize.Counts
	err = c.readArtifact(ctx, in.ArtifactSHA, func(r *store.ArtifactReader) error {
		var perr error
		stats, sanitized, perr = c.parseStorable(ctx, r, format, opt, sink)
		if rerr := r.Err(); rerr != nil {
			return rerr
		}
		return perr
	})
	if err == nil {
		err = b.emit()
	}
	if err != nil {
		return fmt.Errorf("emitting batches of run %s: %w", runID, err)
	}
	return c.publish(ctx, runID, bus.TypeRunFinished, RunFinished{
		RunID: runID, Status: string(finding.RunSucceeded), Batches: b.seq,
		Findings: stats.Findings, Suppressed: stats.Suppressed, NotFinding: stats.NotFindings,
		Assets: stats.Assets, Tools: stats.Tools, Sanitized: sanitized,
	})
}

// invalidArtifact is a parse error of pass 1: the file is not what its
// format says, which fails the run (the DLQ has nothing to add).
type invalidArtifact struct{ err error }

func (e *invalidArtifact) Error() string { return e.err.Error() }
func (e *invalidArtifact) Unwrap() error { return e.err }

// readArtifact opens the run's artifact for one pass of fn.
func (c *Consumer) readArtifact(ctx context.Context, sha string, fn func(*store.ArtifactReader) error) error {
	_, r, err := c.st.OpenArtifact(ctx, sha)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}

func (c *Consumer) publish(ctx context.Context, runID, typ string, payload any) error {
	v, err := bus.EncodeID(runID+"/"+typ, typ, time.Now(), payload)
	if err != nil {
		return err
	}
	return c.pub.Publish(ctx, bus.TopicScanResults, bus.Message{Key: []byte(runID), Value: v})
}

// storeBatch upserts one batch in one transaction, with its receipt, the
// opened events and their activity rows; a replayed batch changes nothing.
func (c *Consumer) storeBatch(ctx context.Context, p FindingsBatch) error {
	start := time.Now()
	env, err := c.runEnvironment(ctx, p.RunID)
	if err != nil {
		return err
	}
	for i := range p.Findings {
		c.enrich(&p.Findings[i], env)
	}
	var inserted, updated int
	err = c.st.InTx(ctx, func(tx *store.Tx) error {
		inserted, updated = 0, 0
		fresh, err := store.RecordBatch(ctx, tx, p.RunID, p.Seq, len(p.Findings))
		if err != nil || !fresh {
			return err
		}
		status, err := store.RunStatus(ctx, tx, p.RunID)
		if err != nil {
			return err
		}
		if status.Finished() {
			// A failed run stores nothing more; committing the receipt
			// alone keeps a replay from trying again.
			return nil
		}
		res, err := store.UpsertFindings(ctx, tx, p.RunID, p.Findings, time.Now(), &c.cfg.SLA)
		if err != nil {
			return err
		}
		var opened []store.StatusChange
		byFP := make(map[string]*finding.Finding, len(p.Findings))
		for i := range p.Findings {
			byFP[p.Findings[i].Fingerprint] = &p.Findings[i]
		}
		for _, r := range res {
			if !r.Inserted {
				updated++
				continue
			}
			inserted++
			f := byFP[r.Fingerprint]
			opened = append(opened, store.StatusChange{
				ID: r.ID, Scope: r.Scope, Fingerprint: r.Fingerprint, Tool: f.Tool, Rule: f.RuleID,
				Title: f.Title, Severity: f.Severity.String(), To: finding.StatusOpen,
			})
		}
		if err := recordChanges(ctx, tx, p.RunID, systemActor, opened); err != nil {
			return err
		}
		// Counted last: the run row's lock then serialises concurrent
		// batches of one run only for the moment before they commit.
		prog, err := store.AddBatch(ctx, tx, p.RunID, len(p.Findings))
		if err != nil {
			return err
		}
		if prog.Complete() && prog.Status == finding.RunProcessing {
			return c.reconcile(ctx, tx, p.RunID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing batch %d of run %s: %w", p.Seq, p.RunID, err)
	}
	c.m.findings.WithLabelValues("new").Add(float64(inserted))
	c.m.findings.WithLabelValues("seen_again").Add(float64(updated))
	c.m.batchDur.Observe(time.Since(start).Seconds())
	return nil
}

// runEnvironment returns the run's environmental CVSS context, if its
// schedule set one. Intake validated it; a value that no longer parses is
// ignored rather than blocking the run.
func (c *Consumer) runEnvironment(ctx context.Context, runID string) (*scoring.Environment, error) {
	frag, err := c.st.RunEnvironment(ctx, runID)
	if err != nil || frag == "" {
		return nil, err
	}
	env, err := scoring.ParseEnvironment(frag)
	if err != nil {
		c.log.Warn("run environment ignored", "run_id", runID, "err", err)
		return nil, nil
	}
	return &env, nil
}

// finishRun records run-finished and reconciles when every batch is in.
func (c *Consumer) finishRun(ctx context.Context, p RunFinished) error {
	if finding.RunStatus(p.Status) != finding.RunSucceeded {
		c.m.runs.WithLabelValues(string(finding.RunFailed)).Inc()
		return c.st.FailRun(ctx, p.RunID, p.Error)
	}
	stats := map[string]any{
		"findings": p.Findings, "suppressed": p.Suppressed, "not_findings": p.NotFinding,
		"assets": p.Assets, "tools": nonNil(p.Tools), "batches": p.Batches,
	}
	if p.Sanitized != nil {
		stats["sanitized"] = p.Sanitized
	}
	return c.st.InTx(ctx, func(tx *store.Tx) error {
		prog, err := store.FinishRun(ctx, tx, p.RunID, p.Batches, stats)
		if err != nil || !prog.Complete() || prog.Status != finding.RunProcessing {
			return err
		}
		return c.reconcile(ctx, tx, p.RunID)
	})
}

func (c *Consumer) reconcile(ctx context.Context, tx *store.Tx, runID string) error {
	res, err := store.Reconcile(ctx, tx, runID, c.cfg.SLA, c.cfg.Hold)
	if err != nil {
		return err
	}
	if err := recordChanges(ctx, tx, runID, systemActor, res.Changes); err != nil {
		return err
	}
	if err := RecordRetests(ctx, tx, res.Retests); err != nil {
		return err
	}
	if res.Status == finding.RunHeld {
		if err := recordRunEvent(ctx, tx, bus.TypeRunHeld, "run.held", systemActor, RunEvent{
			RunID: runID, Scope: res.Scope, Kind: res.Kind, WouldResolve: res.WouldResolve, Open: res.Open,
		}); err != nil {
			return err
		}
		c.m.runs.WithLabelValues(string(finding.RunHeld)).Inc()
		c.log.Warn("run held: it would resolve too much of its scope at once; release or discard it",
			"run_id", runID, "would_resolve", res.WouldResolve, "open", res.Open, "status_changes", len(res.Changes))
		return nil
	}
	c.m.runs.WithLabelValues(string(finding.RunSucceeded)).Inc()
	c.log.Info("run succeeded", "run_id", runID, "status_changes", len(res.Changes))
	return nil
}

// systemActor is the activity log's actor for what the pipeline decides.
const systemActor = "system"

// recordChanges writes an activity row (by actor) and a finding event per
// change, in the caller's transaction.
func recordChanges(ctx context.Context, tx *store.Tx, runID, actor string, changes []store.StatusChange) error {
	if len(changes) == 0 {
		return nil
	}
	acts := make([]store.Activity, len(changes))
	msgs := make([]store.OutboxMessage, len(changes))
	now := time.Now().UTC()
	for i, ch := range changes {
		typ := eventType(ch.From, ch.To)
		var before any
		if ch.From != "" {
			before = map[string]string{"status": string(ch.From)}
		}
		acts[i] = store.Activity{
			At: now, Actor: actor, Action: "finding." + typ, SubjectType: "finding",
			SubjectID: strconv.FormatInt(ch.ID, 10), RunID: runID,
			Before: before, After: map[string]string{"status": string(ch.To)},
		}
		v, err := bus.EncodeID(bus.NewID(), typ, now, FindingEvent{
			FindingID: ch.ID, Scope: ch.Scope, Fingerprint: ch.Fingerprint, Tool: ch.Tool, Rule: ch.Rule,
			Title: ch.Title, Severity: ch.Severity, From: string(ch.From), To: string(ch.To), RunID: runID,
		})
		if err != nil {
			return err
		}
		msgs[i] = store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(ch.ID, 10), Payload: v}
	}
	if err := store.AppendActivityBatch(ctx, tx, acts); err != nil {
		return err
	}
	return store.EnqueueBatch(ctx, tx, msgs)
}

// RetestEvent is published on starpipe.finding.events (type retested when
// a run answered a retest, retest-requested when a person asked for one).
type RetestEvent struct {
	RetestID    int64  `json:"retest_id"`
	FindingID   int64  `json:"finding_id"`
	Scope       string `json:"scope"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Tool        string `json:"tool"`
	Rule        string `json:"rule"`
	Title       string `json:"title,omitempty"`
	Severity    string `json:"severity,omitempty"`
	Target      string `json:"target,omitempty"`
	Schedule    string `json:"schedule,omitempty"`
	Result      string `json:"result"` // pending, passed, failed
	RunID       string `json:"run_id,omitempty"`
	RequestedBy string `json:"requested_by"`
}

// RecordRetests writes an activity row (by the system) and a retested
// event per answered retest, in the caller's transaction: passed means the
// run resolved the finding (its resolved row and event come from the
// status change), failed that it saw it again and it stays open.
func RecordRetests(ctx context.Context, tx *store.Tx, ps []store.RetestPairing) error {
	if len(ps) == 0 {
		return nil
	}
	now := time.Now().UTC()
	acts := make([]store.Activity, len(ps))
	msgs := make([]store.OutboxMessage, len(ps))
	for i, p := range ps {
		run := ""
		if p.RunID != nil {
			run = *p.RunID
		}
		acts[i] = store.Activity{
			At: now, Actor: systemActor, Action: "finding.retest_" + p.Result, SubjectType: "finding",
			SubjectID: strconv.FormatInt(p.FindingID, 10), RunID: run,
			Before: map[string]any{"retest": p.ID, "result": store.RetestPending},
			After:  map[string]any{"retest": p.ID, "result": p.Result},
		}
		v, err := bus.EncodeID(bus.NewID(), bus.TypeRetested, now, RetestEvent{
			RetestID: p.ID, FindingID: p.FindingID, Scope: p.Scope, Fingerprint: p.Fingerprint, Tool: p.Tool,
			Rule: p.Rule, Title: p.Title, Severity: p.Severity, Target: p.Target, Schedule: p.Schedule,
			Result: p.Result, RunID: run, RequestedBy: p.RequestedBy,
		})
		if err != nil {
			return err
		}
		msgs[i] = store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(p.FindingID, 10), Payload: v}
	}
	if err := store.AppendActivityBatch(ctx, tx, acts); err != nil {
		return err
	}
	return store.EnqueueBatch(ctx, tx, msgs)
}

// recordRunEvent writes a run-level activity row and its event on
// starpipe.finding.events (keyed by run id), in the caller's transaction.
func recordRunEvent(ctx context.Context, tx *store.Tx, typ, action, actor string, ev RunEvent) error {
	now := time.Now().UTC()
	ev.Actor = actor
	v, err := bus.EncodeID(bus.NewID(), typ, now, ev)
	if err != nil {
		return err
	}
	if err := store.AppendActivityBatch(ctx, tx, []store.Activity{{
		At: now, Actor: actor, Action: action, SubjectType: "run", SubjectID: ev.RunID, RunID: ev.RunID,
		After: ev,
	}}); err != nil {
		return err
	}
	return store.EnqueueBatch(ctx, tx, []store.OutboxMessage{{Topic: bus.TopicFindingEvents, Key: ev.RunID, Payload: v}})
}

func eventType(from, to finding.Status) string {
	switch {
	case to == finding.StatusResolved:
		return bus.TypeResolved
	case to == finding.StatusReopened:
		return bus.TypeReopened
	}
	return bus.TypeOpened
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
