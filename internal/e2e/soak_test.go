package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// allRoles is what `serve` runs by default, spelled out so that the test
// says what it runs.
var allRoles = []string{"api", "ingest", "relay", "scheduler", "worker"}

// TestSoakTwoReplicasSIGKILL runs two `starpipe serve` replicas with every
// role on one database and one broker process, sends 20 uploads at once
// spread over both replicas' APIs, kills one replica with SIGKILL while
// runs are part-way stored, and restarts it with the same configuration.
// Every run must succeed with exact counts: each finding stored once per
// scope, each observed once per run, every batch once, and the outbox
// drained.
func TestSoakTwoReplicasSIGKILL(t *testing.T) {
	// Most of this test is waiting for the broker to expire the killed
	// replica's group membership (kafka-go's 30 s session timeout), so the
	// CPU-heavy test beside it runs meanwhile.
	t.Parallel()
	r := newRig(t)
	opts := replicaOptions{roles: allRoles, batchSize: 100, shutdownTimeout: 20 * time.Second}
	a, b := r.newReplica("replica-a", opts), r.newReplica("replica-b", opts)
	r.serve(a)
	r.serve(b)
	r.waitReady(a)
	r.waitReady(b)
	token := r.token(a, "soak-ci", "ingest")
	bases := []string{"http://" + a.listen, "http://" + b.listen}

	// Scopes of different sizes, so that runs finish at different times
	// and the kill finds some done, some part-way and some not started.
	type sent struct {
		scope string
		n     int
		id    string
		tries int
		err   error
	}
	const uploads = 20
	ups := make([]sent, uploads)
	want := map[string]int{} // findings per scope
	var wg sync.WaitGroup
	for i := range ups {
		u := &ups[i]
		u.scope, u.n = fmt.Sprintf("git.example.com/soak/repo-%02d", i), 600+150*i
		want[u.scope] = u.n
		body := genSARIF("soakscan", u.n)
		order := []string{bases[i%2], bases[(i+1)%2]}
		wg.Go(func() { u.id, u.tries, u.err = upload(t.Context(), order, token, u.scope, body) })
	}

	// The kill lands while the pipeline is busy: a run has batches stored
	// and is not finished.
	began := time.Now()
	r.waitFor("runs to be done, part-way stored and not started", func() bool {
		return r.count(`SELECT count(*) FROM scan_runs WHERE status = 'succeeded'`) >= 3 &&
			r.count(`SELECT count(*) FROM scan_runs WHERE status = 'processing' AND batches_stored > 0`) > 0
	})
	r.kill(a.p)
	runs := r.count(`SELECT count(*) FROM scan_runs`)
	unfinished := r.count(`SELECT count(*) FROM scan_runs WHERE status <> 'succeeded'`) + uploads - runs
	processing := r.count(`SELECT count(*) FROM scan_runs WHERE status = 'processing'`)
	t.Logf("%v after the uploads began: SIGKILL %s with %d of %d runs unfinished (%d processing)",
		time.Since(began).Round(time.Millisecond), a.name, unfinished, uploads, processing)
	if unfinished == 0 {
		t.Fatal("every run had finished before the kill: the test proves nothing")
	}
	r.serve(a)
	r.waitReady(a)
	t.Logf("%v after the uploads began: %s restarted and ready", time.Since(began).Round(time.Millisecond), a.name)

	wg.Wait()
	for _, u := range ups {
		if u.err != nil {
			t.Fatalf("upload of %s: %v", u.scope, u.err)
		}
		if u.tries > 1 {
			t.Logf("upload of %s took %d tries", u.scope, u.tries)
		}
	}

	r.waitFor("every run to leave received, queued and processing", func() bool {
		return r.count(`SELECT count(*) FROM scan_runs WHERE status IN ('received', 'queued', 'processing')`) == 0
	})
	r.waitFor("the outbox to drain", func() bool {
		return r.count(`SELECT count(*) FROM outbox WHERE sent_at IS NULL`) == 0
	})
	t.Logf("%v after the uploads began: every run finished, the outbox drained", time.Since(began).Round(time.Millisecond))

	// Every run, including any an upload started on the killed replica and
	// never heard back from, finished with every batch once.
	rows, err := r.db.Query(t.Context(), `
		SELECT r.id::text, r.scope, r.status, coalesce(r.error, ''), r.batches_stored, coalesce(r.batches_expected, -1),
		       (SELECT count(*) FROM run_batches b WHERE b.run_id = r.id),
		       (SELECT coalesce(sum(b.findings), 0) FROM run_batches b WHERE b.run_id = r.id),
		       (SELECT count(*) FROM observations o WHERE o.run_id = r.id),
		       (SELECT count(DISTINCT o.finding_id) FROM observations o WHERE o.run_id = r.id)
		FROM scan_runs r ORDER BY r.scope`)
	if err != nil {
		t.Fatal(err)
	}
	runsPerScope := map[string]int{}
	var problems []string
	for rows.Next() {
		var id, scope, status, runErr string
		var stored, expected, batches, batchFindings, obs, distinct int
		if err := rows.Scan(&id, &scope, &status, &runErr, &stored, &expected, &batches, &batchFindings, &obs, &distinct); err != nil {
			t.Fatal(err)
		}
		runsPerScope[scope]++
		n, ok := want[scope]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("run %s of unknown scope %q", id, scope))
		case status != "succeeded":
			problems = append(problems, fmt.Sprintf("run %s (%s): status %s %s", id, scope, status, runErr))
		case stored != expected || batches != expected:
			problems = append(problems, fmt.Sprintf("run %s (%s): batches stored %d, receipts %d, expected %d", id, scope, stored, batches, expected))
		case batchFindings != n || obs != n || distinct != n:
			problems = append(problems, fmt.Sprintf("run %s (%s): %d findings in batches, %d observations (%d distinct), want %d", id, scope, batchFindings, obs, distinct, n))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for scope, n := range runsPerScope {
		if n > 1 {
			t.Logf("%s has %d runs (an upload retried after the kill)", scope, n)
		}
	}
	if len(runsPerScope) != uploads {
		problems = append(problems, fmt.Sprintf("runs for %d scopes, want %d", len(runsPerScope), uploads))
	}

	// Each finding exists once per scope, is open, and was opened once.
	for scope, n := range want {
		found := r.count(`SELECT count(*) FROM findings WHERE scope = $1`, scope)
		open := r.count(`SELECT count(*) FROM findings WHERE scope = $1 AND status = 'open'`, scope)
		opened := r.count(`SELECT count(*) FROM activity_log a JOIN scan_runs r ON r.id = a.run_id
			WHERE r.scope = $1 AND a.action = 'finding.opened'`, scope)
		if found != n || open != n || opened != n {
			problems = append(problems, fmt.Sprintf("%s: %d findings, %d open, %d opened in the activity log; want %d", scope, found, open, opened, n))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("after the kill and restart:\n%s", strings.Join(problems, "\n"))
	}

	// What a CI pipeline polling its run sees, from either replica.
	for i, u := range ups {
		status, err := runStatus(t.Context(), bases[i%2], token, u.id)
		if err != nil || status != "succeeded" {
			t.Errorf("GET /v1/runs/%s (%s): %q, %v", u.id, u.scope, status, err)
		}
	}

	for _, rep := range []*replica{a, b} {
		if code, took := r.terminate(rep.p, time.Minute+opts.shutdownTimeout); code != 0 {
			t.Errorf("%s exited %d after SIGTERM (in %v), want 0", rep.name, code, took.Round(time.Millisecond))
		}
	}
}
