package bus

import (
	"errors"
	"fmt"
	"time"
)

// ScanRequest is the payload of a scan-request message on
// starpipe.scan.requests, keyed by schedule name. It names what to run,
// never how: the worker loads the stored schedule (by Schedule and
// Version) and the ledger row (LedgerID), checks that they agree with the
// request, and runs the stored definition. A request cannot carry a
// schedule's definition: whoever can write to the topic could otherwise
// make a worker scan anything (DESIGN.md, "Trust boundaries").
type ScanRequest struct {
	LedgerID int64  `json:"ledger_id"`
	Schedule string `json:"schedule"`
	// Version is the schedule's version when its due time was claimed
	// (store.Schedule.Version). Zero only in a request queued by a
	// starpipe from before versions; the worker does not run those.
	Version int64     `json:"version"`
	Due     time.Time `json:"due"`
	// CatchUp marks the run that stands in for missed due times; Due is
	// then the latest of them.
	CatchUp bool `json:"catch_up"`
}

// DecodeScanRequest reads a scan-request message value, for the worker. A
// message of another type or without its required fields is poison.
// Fields it does not know (such as the "spec" that requests once carried)
// are ignored: nothing in the message but the names above is read.
func DecodeScanRequest(value []byte) (ScanRequest, error) {
	env, err := Decode(value)
	if err != nil {
		return ScanRequest{}, err
	}
	if env.Type != TypeScanRequest {
		return ScanRequest{}, Poison(fmt.Errorf("scan request: unexpected message type %q", env.Type))
	}
	var req ScanRequest
	if err := env.Unmarshal(&req); err != nil {
		return ScanRequest{}, err
	}
	if req.LedgerID <= 0 || req.Schedule == "" || req.Due.IsZero() || req.Version < 0 {
		return ScanRequest{}, Poison(errors.New("scan request: ledger_id, schedule and due are required, and version may not be negative"))
	}
	return req, nil
}
