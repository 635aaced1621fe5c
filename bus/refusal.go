package bus

import (
	"errors"

	"github.com/segmentio/kafka-go"
)

// Refusal says what a failed publish means for one message, so that a
// sender that must not retry a message for ever (the outbox relay) can
// tell a message the broker will never take from a broker that is away.
type Refusal int

const (
	// NotRefused: the failure says nothing about the message (the broker
	// unreachable, a timeout, a leader election, a missing topic, failed
	// authentication): send it again as it is, however long that takes.
	NotRefused Refusal = iota
	// Refused: the broker answered for this message with an error that is
	// not known to pass, nor known to be final; a few more attempts may
	// tell.
	Refused
	// RefusedForGood: the broker will never take this message as it is
	// (over the message size limit, an invalid record or timestamp).
	RefusedForGood
)

// RefusalOf classifies err, an error Publish returned for a message or one
// of the per-message errors of a *PublishError.
func RefusalOf(err error) Refusal {
	if err == nil {
		return NotRefused
	}
	if errors.Is(err, ErrMessageTooLarge) {
		return RefusedForGood
	}
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return NotRefused // not an answer from the broker about this message
	}
	switch ke {
	case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidRecord, kafka.InvalidTimestamp:
		return RefusedForGood
	case kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed, kafka.TransactionalIDAuthorizationFailed,
		kafka.SASLAuthenticationFailed, kafka.UnsupportedVersion, kafka.UnsupportedForMessageFormat:
		// The client's or the cluster's configuration, not the message:
		// every message would be refused alike until an operator acts.
		return NotRefused
	}
	if ke.Temporary() {
		return NotRefused
	}
	return Refused
}
