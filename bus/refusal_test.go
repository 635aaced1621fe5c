package bus

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestRefusalOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Refusal
	}{
		{"nil", nil, NotRefused},
		{"over the client's limit", &MessageTooLargeError{Topic: "t", Size: 2, Limit: 1}, RefusedForGood},
		{"over the broker's limit", fmt.Errorf("publishing: %w", kafka.MessageSizeTooLarge), RefusedForGood},
		{"invalid record", kafka.InvalidRecord, RefusedForGood},
		{"invalid timestamp", kafka.InvalidTimestamp, RefusedForGood},
		{"policy violation", kafka.PolicyViolation, Refused},
		{"leader election", kafka.NotLeaderForPartition, NotRefused},
		{"not enough replicas", kafka.NotEnoughReplicas, NotRefused},
		{"missing topic", kafka.UnknownTopicOrPartition, NotRefused},
		{"authorisation", kafka.TopicAuthorizationFailed, NotRefused},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, NotRefused},
		{"other", errors.New("boom"), NotRefused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := RefusalOf(c.err); got != c.want {
				t.Fatalf("RefusalOf(%v) = %d, want %d", c.err, got, c.want)
			}
		})
	}
}
