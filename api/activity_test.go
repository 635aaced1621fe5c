package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/activity"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// activityEnv is readEnv plus rows in the activity log: 3 by alice on
// findings 1..3 at base+0..2h, 2 by bob on schedule nightly at base+3..4h.
// off is how many rows readEnv's own set-up logged first (its tokens, now):
// the test's rows are seq off+1..off+5.
func activityEnv(t *testing.T) (e *readEnv, base time.Time, off int64) {
	e = newReadEnv(t)
	base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := storetest.SQL(t, e.st).QueryRow(t.Context(), `SELECT count(*) FROM activity_log`).Scan(&off); err != nil {
		t.Fatal(err)
	}
	add := func(at time.Time, actor, typ, id string) {
		if _, err := e.st.AppendActivity(t.Context(), nil, store.Activity{At: at, Actor: actor, Action: typ + ".changed",
			SubjectType: typ, SubjectID: id, Before: map[string]string{"v": "old"}, After: map[string]string{"v": "=new"}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		add(base.Add(time.Duration(i)*time.Hour), "alice", "finding", fmt.Sprint(i+1))
	}
	add(base.Add(3*time.Hour), "bob", "schedule", "nightly")
	add(base.Add(4*time.Hour), "bob", "schedule", "nightly")
	return e, base, off
}

func TestActivityList(t *testing.T) {
	t.Parallel()
	e, _, off := activityEnv(t)
	list := func(role, query string) (int, listPage[activity.Entry]) {
		t.Helper()
		rec := e.do(role, http.MethodGet, "/v1/activity"+query)
		var p listPage[activity.Entry]
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code, p
	}
	for _, role := range store.Roles() {
		want := http.StatusOK
		if role == RoleIngest {
			want = http.StatusForbidden
		}
		if code, _ := list(role, ""); code != want {
			t.Errorf("role %s: %d, want %d", role, code, want)
		}
	}
	tests := []struct {
		query string
		seqs  []int64
	}{
		{"?to=2025-01-02", []int64{1, 2, 3, 4, 5}},
		{"?actor=bob", []int64{4, 5}},
		{"?entity_type=finding", []int64{1, 2, 3}},
		{"?entity_type=schedule&entity_id=nightly", []int64{4, 5}},
		{"?finding=2", []int64{2}},
		{"?from=2025-01-01T01:00:00Z&to=2025-01-01T03:00:00Z", []int64{2, 3}},
		{"?from=2025-01-01T04:00:00%2B01:00&to=2025-01-02", []int64{4, 5}}, // 03:00Z
		{"?to=2025-01-01", nil},
		{"?format=json&actor=nobody", nil},
	}
	for _, tc := range tests {
		code, p := list(RoleAuditor, tc.query)
		if code != http.StatusOK {
			t.Errorf("%s: %d", tc.query, code)
			continue
		}
		var got []int64
		for _, it := range p.Items {
			got = append(got, it.Seq-off)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.seqs) {
			t.Errorf("%s: seqs %v, want %v", tc.query, got, tc.seqs)
		}
	}
	// Pages chain through the cursor, and listed rows verify as a chain.
	var all []activity.Entry
	q := "?limit=2"
	for {
		code, p := list(RoleOwner, q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", q, code)
		}
		all = append(all, p.Items...)
		if p.Next == nil {
			break
		}
		q = "?limit=2&cursor=" + url.QueryEscape(*p.Next)
	}
	v := activity.NewVerifier(1, activity.GenesisHash)
	for _, it := range all {
		if err := v.Check(it); err != nil {
			t.Fatal(err)
		}
	}
	if v.Count() != 5+off {
		t.Fatalf("paged through %d rows, want %d", v.Count(), 5+off)
	}
	for _, bad := range []string{"?from=yesterday", "?finding=x", "?finding=2&entity_type=schedule", "?format=xml",
		"?from=2025-01-02&to=2025-01-01", "?cursor=bogus", "?entity=finding"} {
		if rec := e.do(RoleAuditor, http.MethodGet, "/v1/activity"+bad); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, rec.Code, rec.Body)
		}
	}
}

func TestActivityCSV(t *testing.T) {
	t.Parallel()
	e, _, off := activityEnv(t)
	for _, tc := range []struct{ query, accept string }{{"?actor=alice", "text/csv"}, {"?actor=alice&format=csv", ""}} {
		var hdr []string
		if tc.accept != "" {
			hdr = []string{"Accept", tc.accept}
		}
		rec := e.do(RoleAuditor, http.MethodGet, "/v1/activity"+tc.query, hdr...)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") {
			t.Fatalf("%s: %d %s", tc.query, rec.Code, rec.Header().Get("Content-Type"))
		}
		recs, err := csv.NewReader(bytes.NewReader(rec.Body.Bytes())).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 4 || strings.Join(recs[0], ",") != strings.Join(activityCSVColumns, ",") {
			t.Fatalf("%s: %d records, header %v", tc.query, len(recs), recs[0])
		}
		row := recs[2]
		if row[0] != fmt.Sprint(off+2) || row[3] != "alice" || row[6] != "2" || row[8] != `{"v": "old"}` || row[9] != `{"v": "=new"}` || len(row[11]) != 64 {
			t.Fatalf("%s: row %v", tc.query, row)
		}
	}
}

func TestActivityExport(t *testing.T) {
	t.Parallel()
	e, _, off := activityEnv(t)
	rec := e.do(RoleAuditor, http.MethodGet, "/v1/activity/export?from=2025-01-01T01:00:00Z&to=2025-01-01T04:00:00Z")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	res, err := activity.VerifyExport(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstSeq != off+2 || res.LastSeq != off+4 || res.PrevHash == activity.GenesisHash {
		t.Fatalf("export covers %+v, want seq 2..4 anchored on row 1", res)
	}
	if rec := e.do(RoleIngest, http.MethodGet, "/v1/activity/export"); rec.Code != http.StatusForbidden {
		t.Fatalf("ingest role: %d", rec.Code)
	}
	if rec := e.do(RoleAuditor, http.MethodGet, "/v1/activity/export?actor=bob"); rec.Code != http.StatusBadRequest {
		t.Fatalf("unknown parameter: %d", rec.Code)
	}
}
