package store

import "github.com/jackc/pgx/v5"

// PgxTx exposes a Tx's connection to this package's tests, for looking
// inside a transaction (a temporary table) before it commits.
func PgxTx(t *Tx) pgx.Tx { return t.tx }
