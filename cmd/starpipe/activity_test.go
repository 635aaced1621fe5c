package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestActivityExportVerify: `activity export` writes a file that `activity
// verify FILE` accepts offline; one changed byte makes it fail naming the
// row; `activity verify` without a file checks the live table.
func TestActivityExportVerify(t *testing.T) {
	st, dbURL := storetest.New(t)
	for i := range 4 {
		if _, err := st.AppendActivity(t.Context(), nil, store.Activity{Actor: "alice", Action: "schedule.updated",
			SubjectType: "schedule", SubjectID: fmt.Sprintf("nightly-%d", i), After: map[string]any{"cadence": "@daily", "n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "starpipe.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %q\ndatabase: {url: %q}\n", filepath.Join(dir, "state"), dbURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "activity.jsonl")
	if _, stderr, code := run(t, "", "activity", "export", "-c", cfg, "-o", file); code != 0 {
		t.Fatalf("activity export: exit %d: %s", code, stderr)
	}
	out, stderr, code := run(t, "", "activity", "verify", file)
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "(4 rows)") {
		t.Fatalf("activity verify FILE: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = run(t, "", "activity", "verify", "-c", cfg)
	if code != 0 || !strings.Contains(out, "(4 rows)") {
		t.Fatalf("activity verify (live): exit %d, %q %q", code, out, stderr)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "nightly-2")
	if i < 0 {
		t.Fatalf("export lacks nightly-2:\n%s", data)
	}
	bad := append([]byte(nil), data...)
	bad[i+len("nightly-")] = '7'
	badFile := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, "", "activity", "verify", badFile)
	if code != exitChainBroken || !strings.Contains(stderr, "row seq 3") {
		t.Fatalf("tampered export: exit %d, stderr %q; want exit %d naming row seq 3", code, stderr, exitChainBroken)
	}
	_, _, code = run(t, "", "activity", "verify", filepath.Join(dir, "missing.jsonl"))
	if code != exitNotChecked {
		t.Fatalf("missing file: exit %d, want %d", code, exitNotChecked)
	}
}
