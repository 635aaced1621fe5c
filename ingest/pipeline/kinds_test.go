package pipeline_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/starpipe/starpipe/ingest/pipeline"
)

// TestKindsKeepTheirOwnFindings: an external and an authenticated scan of
// the same URL see the same issue; each kind's finding is reconciled only
// by that kind's rescans, so a clean external rescan closes the external
// finding and leaves the authenticated one open.
func TestKindsKeepTheirOwnFindings(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	line := []byte(`{"template-id":"git-config","info":{"name":"Git config","severity":"medium"},"host":"https://shop.example.com","matched-at":"https://shop.example.com/.git/config","type":"http"}` + "\n")
	submit := func(kind string, data []byte) string {
		id, err := h.intake.Submit(h.ctx, bytes.NewReader(data), pipeline.Request{Scope: "https://shop.example.com", Kind: kind, Format: "nuclei"})
		if err != nil {
			t.Fatalf("submit %s: %v", kind, err)
		}
		h.waitRunStatus(id, "succeeded", time.Minute)
		return id
	}
	submit("external", line)
	submit("authenticated", line)
	count := func(kind, status string) int {
		return h.count(`SELECT count(*) FROM findings WHERE scope = 'https://shop.example.com' AND kind = $1 AND status = $2`, kind, status)
	}
	if count("external", "open") != 1 || count("authenticated", "open") != 1 {
		t.Fatalf("want one open finding per kind: external %d, authenticated %d", count("external", "open"), count("authenticated", "open"))
	}
	submit("external", nil) // a clean external rescan
	if count("external", "resolved") != 1 || count("authenticated", "open") != 1 {
		t.Fatalf("after a clean external rescan: external resolved %d, authenticated open %d", count("external", "resolved"), count("authenticated", "open"))
	}
}
