package finding

// RunStatus is where a scan run is in the pipeline: received (stored, its
// message in the outbox), queued (the message reached Kafka), processing
// (the parse stage started it), then succeeded or failed. A run whose
// reconciliation would close too much of its scope at once is held instead
// (its observations stored, nothing resolved) until a person releases it
// (then succeeded) or discards it (then discarded).
type RunStatus string

// Run statuses, as stored in scan_runs.status and shown by the API.
const (
	RunReceived   RunStatus = "received"
	RunQueued     RunStatus = "queued"
	RunProcessing RunStatus = "processing"
	RunSucceeded  RunStatus = "succeeded"
	RunFailed     RunStatus = "failed"
	// RunHeld: every batch is stored but the resolutions wait for a
	// person (POST /v1/runs/{id}/release or /discard).
	RunHeld RunStatus = "held"
	// RunDiscarded: a held run whose resolutions were dropped; its own
	// observations stay, it resolved nothing.
	RunDiscarded RunStatus = "discarded"
)

// Finished reports whether the pipeline is done with the run: nothing more
// is stored for it and a replayed message changes nothing. A held run is
// finished for the pipeline; only a person's release or discard moves it.
func (s RunStatus) Finished() bool {
	return s == RunSucceeded || s == RunFailed || s == RunHeld || s == RunDiscarded
}
