package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store"
)

// The PostgreSQL classes behind store.IsPermanent are tested against the
// real server in store (TestErrorClasses); this pins what the consumer adds.
func TestPoisonous(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"message too large", context.Background(), fmt.Errorf("publishing: %w", &bus.MessageTooLargeError{}), true},
		{"missing run", context.Background(), fmt.Errorf("run r: %w", store.ErrNotFound), true},
		{"hash mismatch", context.Background(), fmt.Errorf("artifact: %w", store.ErrCorrupt), true},
		{"broker away", context.Background(), errors.New("broker unreachable"), false},
		{"stopping", cancelled, fmt.Errorf("run r: %w", store.ErrNotFound), false},
	} {
		if got := poisonous(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: poisonous(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
