package main

import (
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// TestPrintLedger: a due time with several runs prints each run, with its
// tool, scope and status, under the due time.
func TestPrintLedger(t *testing.T) {
	due := time.Date(2030, 3, 1, 2, 0, 0, 0, time.UTC)
	es := []store.LedgerEntry{
		{Due: due, Status: finding.LedgerSucceeded, Runs: []store.LedgerRun{
			{ID: "11111111-1111-1111-1111-111111111111", Scope: "domains:example.test", Tool: "amass", Status: "succeeded"},
			{ID: "22222222-2222-2222-2222-222222222222", Scope: "http://www.example.test", Tool: "nuclei", Status: "processing"},
		}},
		{Due: due.AddDate(0, 0, 1), Status: finding.LedgerMissed, Error: "no scheduler was leading at the due time", Runs: []store.LedgerRun{}},
	}
	var b strings.Builder
	if err := printLedger(&b, es, "UTC"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want a header, two runs, a missed row and its error:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"DUE", "RUN STATUS"},
		{"2030-03-01 02:00", "succeeded", "11111111-", "amass", "domains:example.test", "succeeded"},
		{"22222222-", "nuclei", "http://www.example.test", "processing"},
		{"2030-03-02 02:00", "missed", "-"},
		{"error: no scheduler was leading"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	if strings.Contains(lines[2], "2030") {
		t.Errorf("second run repeats the due time: %q", lines[2])
	}
}
