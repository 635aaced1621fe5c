package finding

import (
	"slices"
	"testing"
)

func TestParseRunStatus(t *testing.T) {
	tests := []struct {
		in       string
		want     RunStatus
		finished bool
		wantErr  bool
	}{
		{"received", RunReceived, false, false},
		{"queued", RunQueued, false, false},
		{"processing", RunProcessing, false, false},
		{"succeeded", RunSucceeded, true, false},
		{"failed", RunFailed, true, false},
		{"", "", false, true},
		{"Succeeded", "", false, true},
		{"pending", "", false, true}, // a ledger status, not a run status
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRunStatus(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseRunStatus(%q) = %q, %v", tt.in, got, err)
			}
			if got.Finished() != tt.finished {
				t.Errorf("%q.Finished() = %v", got, got.Finished())
			}
		})
	}
}

func TestRunStatusesInLifecycleOrder(t *testing.T) {
	want := []RunStatus{RunReceived, RunQueued, RunProcessing, RunSucceeded, RunFailed, RunHeld, RunDiscarded}
	got := RunStatuses()
	if !slices.Equal(got, want) {
		t.Fatalf("RunStatuses() = %v, want %v", got, want)
	}
	got[0] = "changed" // a copy: callers cannot change the list
	if RunStatuses()[0] != RunReceived {
		t.Fatal("RunStatuses returned the package's own slice")
	}
}

func TestLedgerStatusUnfinished(t *testing.T) {
	tests := []struct {
		s    LedgerStatus
		want bool
	}{
		{LedgerPending, true},
		{LedgerRunning, true},
		{LedgerSucceeded, false},
		{LedgerFailed, false},
		{LedgerSkipped, false},
		{LedgerMissed, false},
	}
	for _, tt := range tests {
		if got := tt.s.Unfinished(); got != tt.want {
			t.Errorf("%q.Unfinished() = %v, want %v", tt.s, got, tt.want)
		}
	}
}
