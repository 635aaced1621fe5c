package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ScanRequest is the payload of a scan-request message on
// starpipe.scan.requests, keyed by schedule name. The worker that runs it
// reports the run's progress against LedgerID.
type ScanRequest struct {
	LedgerID int64     `json:"ledger_id"`
	Schedule string    `json:"schedule"`
	Due      time.Time `json:"due"`
	// CatchUp marks the run that stands in for missed due times; Due is
	// then the latest of them.
	CatchUp bool `json:"catch_up"`
	// Spec is the schedule as it was when the run was claimed (the JSON
	// form of spec.Schedule), so that an edit after the claim cannot change
	// what this run scans.
	Spec json.RawMessage `json:"spec"`
}

// DecodeScanRequest reads a scan-request message value, for the worker. A
// message of another type or without its required fields is poison.
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
	if req.LedgerID <= 0 || req.Schedule == "" || len(req.Spec) == 0 {
		return ScanRequest{}, Poison(errors.New("scan request: ledger_id, schedule and spec are required"))
	}
	return req, nil
}
