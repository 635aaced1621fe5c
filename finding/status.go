package finding

// RunStatus is where a scan run is in the pipeline: received (stored, its
// message in the outbox), queued (the message reached Kafka), processing
// (the parse stage started it), then succeeded or failed.
type RunStatus string

// Run statuses, as stored in scan_runs.status and shown by the API.
const (
	RunReceived   RunStatus = "received"
	RunQueued     RunStatus = "queued"
	RunProcessing RunStatus = "processing"
	RunSucceeded  RunStatus = "succeeded"
	RunFailed     RunStatus = "failed"
)

// Finished reports whether the run has reached a final status: nothing
// more is stored for it and a replayed message changes nothing.
func (s RunStatus) Finished() bool { return s == RunSucceeded || s == RunFailed }
