package activity_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starpipe/starpipe/activity"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// awkward are before/after values whose canonical text depends on every
// rule of the canonical form: key order by length then bytes, nesting,
// escapes, non-ASCII, numbers PostgreSQL rewrites (1e2, 1.50, -0, huge).
var awkward = []any{
	nil,
	map[string]any{"status": "open"},
	map[string]any{"bb": 1, "a": 2, "ccc": []any{}, "ab": map[string]any{}, "é": true, "z": nil},
	map[string]any{"s": "quote\" back\\ nl\n tab\t cr\r bs\b ff\f bell\x07 del\x7f </script> & ü 漢字 \u2028 😀"},
	[]any{1.5, 100.0, 1e21, -0.0, 12345678901234567890.0, 0.000001, 3},
	map[string]any{"nested": map[string]any{"longer_key": []any{map[string]any{"y": 1, "x": 2}}, "k": "v"}},
	"just a string",
	42,
	false,
}

// TestCanonicalMatchesPostgreSQL: the Go canonical form is byte for byte
// the one the trigger hashed, for rows written by every append path.
func TestCanonicalMatchesPostgreSQL(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	for i, v := range awkward {
		if _, err := st.AppendActivity(ctx, nil, store.Activity{Actor: "tester", Action: "test.single", SubjectType: "test",
			SubjectID: fmt.Sprint(i), Before: v, After: v}); err != nil {
			t.Fatal(err)
		}
	}
	var batch []store.Activity
	for i, v := range awkward {
		batch = append(batch, store.Activity{At: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
			Actor: "système", Action: "test.batch", SubjectType: "test", SubjectID: fmt.Sprint(i),
			RunID: "0195a0c4-1f2e-7d3c-9b4a-AABBCCDDEEFF", After: v})
	}
	if err := st.InTx(ctx, func(tx *store.Tx) error { return store.AppendActivityBatch(ctx, tx, batch) }); err != nil {
		t.Fatal(err)
	}

	rows, err := st.ActivityChain(ctx, 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2*len(awkward) {
		t.Fatalf("%d rows, want %d", len(rows), 2*len(awkward))
	}
	db := storetest.SQL(t, st)
	for _, r := range rows {
		var want string
		if err := db.QueryRow(ctx, `SELECT activity_log_canonical(id, seq, at, actor, action, subject_type, subject_id,
			run_id, before, after, prev_hash) FROM activity_log WHERE seq = $1`, r.Seq).Scan(&want); err != nil {
			t.Fatal(err)
		}
		got, err := activity.Canonical(activity.FromStore(r))
		if err != nil {
			t.Fatalf("row %d: %v", r.Seq, err)
		}
		if string(got) != want {
			t.Fatalf("row %d canonical form:\n got %s\nwant %s", r.Seq, got, want)
		}
		// The trigger writes the canonical form out rather than calling
		// activity_log_canonical: its hash must be the helper's.
		var helperHash string
		if err := db.QueryRow(ctx, `SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')`, want).Scan(&helperHash); err != nil {
			t.Fatal(err)
		}
		if helperHash != r.Hash {
			t.Fatalf("row %d: trigger hash %s, activity_log_canonical's %s", r.Seq, r.Hash, helperHash)
		}
	}
	res, err := activity.VerifyTable(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != int64(len(rows)) || res.LastHash != rows[len(rows)-1].Hash {
		t.Fatalf("VerifyTable = %+v", res)
	}
}

// TestConcurrentAppendsChain: appends from many goroutines at once (single
// rows and COPY batches, each in its own transaction, as replicas do)
// leave one unbroken chain.
func TestConcurrentAppendsChain(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := t.Context()
	const workers, rounds, batch = 8, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				a := store.Activity{Actor: fmt.Sprintf("w%d", w), Action: "test.concurrent", SubjectType: "test",
					SubjectID: fmt.Sprintf("%d-%d", w, r), After: map[string]int{"round": r}}
				var err error
				if r%2 == 0 {
					_, err = st.AppendActivity(ctx, nil, a)
				} else {
					acts := make([]store.Activity, batch)
					for i := range acts {
						acts[i] = a
					}
					err = st.InTx(ctx, func(tx *store.Tx) error { return store.AppendActivityBatch(ctx, tx, acts) })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := activity.VerifyTable(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(workers * (rounds/2 + rounds/2*batch))
	if res.Count != want || res.LastSeq != want {
		t.Fatalf("chain of %d rows ending at seq %d, want %d", res.Count, res.LastSeq, want)
	}
}

// seed appends n rows, one per second from base, and returns the export
// of them all.
func seed(t *testing.T, st *store.Store, base time.Time, n int) {
	t.Helper()
	for i := range n {
		if _, err := st.AppendActivity(t.Context(), nil, store.Activity{At: base.Add(time.Duration(i) * time.Second),
			Actor: "alice", Action: "finding.reviewed", SubjectType: "finding", SubjectID: fmt.Sprint(100 + i),
			Before: map[string]string{"review": "untriaged"}, After: map[string]any{"review": "false_positive", "note": fmt.Sprintf("row %d", i+1)}}); err != nil {
			t.Fatal(err)
		}
	}
}

func export(t *testing.T, st *store.Store, from, to time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := activity.WriteExport(t.Context(), &buf, st, from, to, time.Now()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportVerifies(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	seed(t, st, base, 10)

	tests := []struct {
		name        string
		from, to    time.Time
		first, last int64
		genesis     bool
	}{
		{"everything", time.Time{}, time.Time{}, 1, 10, true},
		{"a middle range", base.Add(3 * time.Second), base.Add(7 * time.Second), 4, 7, false},
		{"from only", base.Add(8 * time.Second), time.Time{}, 9, 10, false},
		{"empty range after the end", base.Add(time.Hour), time.Time{}, 11, 10, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := activity.VerifyExport(bytes.NewReader(export(t, st, tc.from, tc.to)))
			if err != nil {
				t.Fatal(err)
			}
			if res.FirstSeq != tc.first || res.LastSeq != tc.last || res.Count != tc.last-tc.first+1 {
				t.Fatalf("verified seq %d..%d (%d rows), want %d..%d", res.FirstSeq, res.LastSeq, res.Count, tc.first, tc.last)
			}
			if (res.PrevHash == activity.GenesisHash) != tc.genesis {
				t.Fatalf("prev_hash %s, genesis %v", res.PrevHash, tc.genesis)
			}
		})
	}
	// Consecutive ranges join: one's last hash is the next one's anchor.
	a, err := activity.VerifyExport(bytes.NewReader(export(t, st, time.Time{}, base.Add(5*time.Second))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := activity.VerifyExport(bytes.NewReader(export(t, st, base.Add(5*time.Second), time.Time{})))
	if err != nil {
		t.Fatal(err)
	}
	if a.LastHash != b.PrevHash || a.LastSeq+1 != b.FirstSeq {
		t.Fatalf("ranges do not join: %+v then %+v", a, b)
	}
}

// TestTamperedExportFails: every kind of change to an export is caught and
// the error names the row where the chain first breaks.
func TestTamperedExportFails(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	seed(t, st, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 6)
	good := export(t, st, time.Time{}, time.Time{})
	lines := strings.Split(strings.TrimSuffix(string(good), "\n"), "\n") // header, rows 1..6, end
	if len(lines) != 8 {
		t.Fatalf("export has %d lines:\n%s", len(lines), good)
	}
	join := func(ls []string) string { return strings.Join(ls, "\n") + "\n" }
	edit := func(line int, old, new string) string {
		ls := append([]string(nil), lines...)
		if !strings.Contains(ls[line], old) {
			t.Fatalf("line %d has no %q: %s", line, old, ls[line])
		}
		ls[line] = strings.Replace(ls[line], old, new, 1)
		return join(ls)
	}
	flipHash := func(line int, field string) string {
		ls := append([]string(nil), lines...)
		i := strings.Index(ls[line], `"`+field+`":"`) + len(field) + 4
		c := byte('0')
		if ls[line][i] == '0' {
			c = '1'
		}
		ls[line] = ls[line][:i] + string(c) + ls[line][i+1:]
		return join(ls)
	}
	tests := []struct {
		name    string
		file    string
		seq     int64
		mention string
	}{
		{"a value changed", edit(3, `"row 3"`, `"row 8"`), 3, "content hashes"},
		{"the actor changed", edit(5, `"alice"`, `"alicf"`), 5, "content hashes"},
		{"the time changed", edit(2, `"time":"2025-01-01T00:00:01`, `"time":"2025-01-01T00:00:02`), 2, "content hashes"},
		{"a number added to after", edit(4, `"review":"false_positive"`, `"review":"false_positive","n":1`), 4, "content hashes"},
		{"a hash changed", flipHash(2, "hash"), 2, "content hashes"},
		{"a prev_hash changed", flipHash(4, "prev_hash"), 4, "prev_hash"},
		{"a row deleted", join(append(append([]string(nil), lines[:3]...), lines[4:]...)), 4, "row 3 is missing"},
		{"two rows swapped", join([]string{lines[0], lines[1], lines[3], lines[2], lines[4], lines[5], lines[6], lines[7]}), 3, "out of order"},
		{"a row duplicated", join([]string{lines[0], lines[1], lines[2], lines[2], lines[3], lines[4], lines[5], lines[6], lines[7]}), 2, "duplicated"},
		{"the last row deleted", join(append(append([]string(nil), lines[:6]...), lines[7])), 5, "end line"},
		{"cut short", join(lines[:5]), 4, "cut short"},
		{"a key renamed", edit(6, `"actor"`, `"actos"`), 6, "not a valid row"},
		{"a row made invalid JSON", edit(1, `{"seq"`, `{"seq`), 1, "not a valid row"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := activity.VerifyExport(strings.NewReader(tc.file))
			var brk *activity.BreakError
			if !errors.As(err, &brk) {
				t.Fatalf("VerifyExport = %v, want a *BreakError", err)
			}
			if brk.Seq != tc.seq || !strings.Contains(brk.Reason, tc.mention) {
				t.Fatalf("break at seq %d (%q), want seq %d mentioning %q", brk.Seq, brk.Reason, tc.seq, tc.mention)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", tc.seq)) {
				t.Fatalf("error %q does not name seq %d", err, tc.seq)
			}
		})
	}
	// A header anchored elsewhere: the first row no longer chains to it.
	ls := append([]string(nil), lines...)
	ls[0] = strings.Replace(ls[0], `"first_seq":1,"prev_hash":"`+activity.GenesisHash, `"first_seq":1,"prev_hash":"`+strings.Repeat("1", 64), 1)
	if _, err := activity.VerifyExport(strings.NewReader(join(ls))); err == nil {
		t.Fatal("an export starting the chain with a non-genesis anchor verified")
	}
}

// TestVerifyTableFindsBreak: a row changed behind the daemon's back (only
// a superuser can, with the append-only trigger off) is named.
func TestVerifyTableFindsBreak(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	seed(t, st, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 5)
	db := storetest.SQL(t, st)
	ctx := context.Background()
	for _, sql := range []string{
		"ALTER TABLE activity_log DISABLE TRIGGER activity_log_no_update_delete",
		`UPDATE activity_log SET after = '{"review": "confirmed"}' WHERE seq = 3`,
		"ALTER TABLE activity_log ENABLE TRIGGER activity_log_no_update_delete",
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, err := activity.VerifyTable(t.Context(), st)
	var brk *activity.BreakError
	if !errors.As(err, &brk) || brk.Seq != 3 {
		t.Fatalf("VerifyTable = %v, want a break at seq 3", err)
	}
}

// TestMigrationChainsExistingRows: rows written before the chain existed
// are chained in id order by the migration, and new rows continue it.
func TestMigrationChainsExistingRows(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyDatabase(t)
	ctx := t.Context()
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	if err := store.MigrateDown(ctx, url, beforeChain(t, url)); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, url, store.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	storetest.Attach(t, st, url)
	if _, err := storetest.SQL(t, st).Exec(ctx, `
		INSERT INTO activity_log (at, actor, action, subject_type, subject_id, before, after)
		SELECT now() - make_interval(secs => 100 - i), 'old', 'test.old', 'test', i::text,
		       CASE WHEN i % 2 = 0 THEN jsonb_build_object('i', i, 'half', i / 2.0) END, '[1, "x"]'
		FROM generate_series(1, 50) i`); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	seed(t, st, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 3)
	res, err := activity.VerifyTable(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 53 {
		t.Fatalf("chain of %d rows, want 53", res.Count)
	}
	ids := storetest.Strings(t, st, `SELECT id::text FROM activity_log WHERE seq <= 50 AND seq::text <> id::text`)
	if len(ids) != 0 {
		t.Fatalf("existing rows not chained in id order: %v", ids)
	}
}

// beforeChain is the migration version just before the one that chains the
// log, found by name so that renumbering the migration needs no edit here.
func beforeChain(t testing.TB, url string) int64 {
	t.Helper()
	ms, err := store.MigrationStatus(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if strings.HasSuffix(m.Name, "_activity_chain.sql") {
			if i == 0 {
				t.Fatal("the chain migration is the first one")
			}
			return ms[i-1].Version
		}
	}
	t.Fatal("no *_activity_chain.sql migration")
	return 0
}
