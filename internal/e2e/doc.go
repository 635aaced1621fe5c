// Package e2e holds end-to-end tests that run real processes of the built
// starpipe binary: a standalone broker (`starpipe broker`), `starpipe serve`
// replicas configured by files, a PostgreSQL database from storetest. They
// talk to the processes only through the command line, the configuration
// file, the HTTP API and signals, and check outcomes in the database, so
// that they prove what an operator running the binary would see: a replica
// killed with SIGKILL or stopped with SIGTERM mid-ingest loses and
// duplicates nothing.
//
// The binary is the one STARPIPE_BIN names (`make test` sets it to the
// `make build` output) or else one built with `go build` once per test
// process. The package has no non-test code beyond this comment.
package e2e
