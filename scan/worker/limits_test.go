package worker_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/worker"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// pacedScanner stands in for the scanner process. A code job for
// "/tarpit" never answers (a target that holds connections open) until its
// context ends; jobs for "/pair-a" and "/pair-b" each wait until both have
// started, so they finish only if the worker runs them at the same time;
// any other job succeeds at once.
type pacedScanner struct {
	mu      sync.Mutex
	started map[string]bool
	both    chan struct{}
	network []*scanexec.Network
}

func (p *pacedScanner) Run(ctx context.Context, job scanexec.Job, out io.Writer) error {
	p.mu.Lock()
	p.network = append(p.network, job.Network)
	repo := job.Code.Repository
	if strings.HasPrefix(repo, "/pair-") {
		p.started[repo] = true
		if len(p.started) == 2 {
			close(p.both)
		}
	}
	p.mu.Unlock()
	switch {
	case repo == "/tarpit":
		<-ctx.Done()
		return context.Cause(ctx)
	case strings.HasPrefix(repo, "/pair-"):
		select {
		case <-p.both:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	_, err := io.WriteString(out, sarifFindings)
	return err
}

// TestTimeLimitAndConcurrency runs scan requests through the real
// consumer with scan.concurrency 2: a schedule whose target tarpits fails
// at its time limit with a "time limit" error, while a second schedule
// runs and finishes meanwhile; then two scans that can only finish
// together (each waits for the other to start) both succeed.
func TestTimeLimitAndConcurrency(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	log := testLogger(t)
	ctx := t.Context()
	broker, err := bus.StartEmbedded(ctx, bus.EmbeddedConfig{Partitions: 2, GroupMinSessionTimeout: 500 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	bcfg := bus.Config{Brokers: broker.Addrs(), Partitions: 2, SessionTimeout: 2 * time.Second, HeartbeatInterval: 200 * time.Millisecond}.WithDefaults()
	prod := bus.NewProducer(bcfg, log)
	t.Cleanup(func() { prod.Close() })

	sc := &pacedScanner{started: map[string]bool{}, both: make(chan struct{})}
	wk := worker.New(worker.Options{
		Submitter: pipeline.NewIntake(st, 64<<20, log), Ledger: st,
		StateDir: t.TempDir(), Logger: log, Scanner: sc, Analyzers: testAnalyzers,
		Network: loopbackPolicy, MaxScanDuration: time.Hour,
	})

	codeSchedule := func(name, repo string, timeout time.Duration) []byte {
		sp := schedule(name, finding.KindCode)
		sp.Targets.Repositories = []string{repo}
		sp.Code.Analyzer = "cat-sarif"
		sp.Timeout = spec.Duration(timeout)
		_, msg := claim(t, st, sp)
		return msg.Value
	}
	publish := func(name string, v []byte) {
		t.Helper()
		if err := prod.Publish(ctx, bus.TopicScanRequests, bus.Message{Key: []byte(name), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	// The tarpit's limit is the schedule's (lower than MaxScanDuration);
	// the others never reach theirs unless they wait on each other.
	publish("tarpit", codeSchedule("tarpit", "/tarpit", 3*time.Second))
	publish("quick", codeSchedule("quick", "/quick", time.Hour))

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.NewConsumer(bcfg, "starpipe-workers", bus.TopicScanRequests, log).Run(runCtx, wk.Handle,
			bus.RunOptions{DLQ: prod, Concurrency: 2, Parallel: worker.Parallel, DrainTimeout: 5 * time.Second})
	}()
	t.Cleanup(func() { cancel(); <-done })

	status := func(name string) store.LedgerEntry {
		es, err := st.ListLedger(ctx, name, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			return store.LedgerEntry{}
		}
		return es[0]
	}
	waitEnded := func(name string) store.LedgerEntry {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			e := status(name)
			if e.Status != "" && e.Status != finding.LedgerPending && e.Status != finding.LedgerRunning {
				return e
			}
			if time.Now().After(deadline) {
				t.Fatalf("schedule %s still %q", name, e.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The quick schedule ends while the tarpit still holds its slot.
	if e := waitEnded("quick"); e.Status != finding.LedgerSucceeded {
		t.Fatalf("quick: %+v, want succeeded", e)
	}
	if e := status("tarpit"); e.Status != finding.LedgerRunning {
		t.Fatalf("tarpit is %q when the quick schedule ended, want running (the quick one did not overtake it)", e.Status)
	}
	e := waitEnded("tarpit")
	if e.Status != finding.LedgerFailed || !strings.Contains(e.Error, "time limit") {
		t.Fatalf("tarpit: %+v, want failed with a time limit error", e)
	}

	publish("pair-a", codeSchedule("pair-a", "/pair-a", time.Minute))
	publish("pair-b", codeSchedule("pair-b", "/pair-b", time.Minute))
	for _, name := range []string{"pair-a", "pair-b"} {
		if e := waitEnded(name); e.Status != finding.LedgerSucceeded {
			t.Fatalf("%s: %+v, want succeeded (both scans running at once)", name, e)
		}
	}

	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, n := range sc.network {
		if want := scanexec.NetworkOf(loopbackPolicy); n == nil || !slices.Equal(n.Allow, want.Allow) || n.DenyPublic != want.DenyPublic {
			t.Fatalf("a job carried network policy %+v, want the worker's", n)
		}
	}
}
