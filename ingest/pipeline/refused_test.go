package pipeline

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starpipe/starpipe/bus"
)

func TestRefused(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("storing batch 1 of run r: %w", &pgconn.PgError{Code: code})
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{pg("22021"), true},  // NUL in text
		{pg("22P05"), true},  // \u0000 in jsonb
		{pg("22001"), true},  // value too long
		{pg("54000"), true},  // index row too large
		{pg("23503"), true},  // a batch of a run that does not exist
		{pg("23514"), true},  // a check constraint
		{pg("23505"), false}, // a concurrent batch inserted the finding first: retry updates it
		{pg("40001"), false}, // serialization failure
		{pg("40P01"), false}, // deadlock
		{pg("57P01"), false}, // server shutting down
		{pg("08006"), false}, // connection failure
		{errors.New("broker unreachable"), false},
		{fmt.Errorf("publishing: %w", &bus.MessageTooLargeError{}), true},
	} {
		if got := refused(tc.err); got != tc.want {
			t.Errorf("refused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
