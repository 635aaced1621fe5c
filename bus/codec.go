package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// EnvelopeVersion is the envelope format this build writes and reads. A
// change that old readers would misread gets a new version; adding an
// optional payload field does not.
const EnvelopeVersion = 1

// Message types, by topic. Payload structs belong to their producers.
const (
	// starpipe.scan.requests
	TypeScanRequest = "scan-request"

	// starpipe.scan.results
	TypeRunReceived = "run-received" // a stored run waits to be parsed
	TypeRunStarted  = "run-started"
	TypeFindings    = "findings"
	TypeRunFinished = "run-finished"

	// starpipe.finding.events
	TypeOpened           = "opened"
	TypeReopened         = "reopened"
	TypeResolved         = "resolved"
	TypeSLABreached      = "sla-breached"
	TypeExceptionExpired = "exception-expired"
	// Run-level events on the same topic, keyed by run id: reconciliation
	// held a run that would close too much at once, and a person released
	// (its resolved events follow) or discarded it.
	TypeRunHeld      = "run-held"
	TypeRunReleased  = "run-released"
	TypeRunDiscarded = "run-discarded"
	TypeReviewed     = "reviewed" // a person's review decision (review state) changed
	// Exception-level warnings on the same topic, keyed by "exception-ID":
	// an exception expires soon, or its periodic review has fallen due.
	TypeExceptionExpiring  = "exception-expiring"
	TypeExceptionReviewDue = "exception-review-due"
	// A retest was asked for (retest-requested) and a run answered it
	// (retested: passed or failed).
	TypeRetestRequested = "retest-requested"
	TypeRetested        = "retested"
)

var topicTypes = map[string][]string{
	TopicScanRequests:  {TypeScanRequest},
	TopicScanResults:   {TypeRunReceived, TypeRunStarted, TypeFindings, TypeRunFinished},
	TopicFindingEvents: {TypeOpened, TypeReopened, TypeResolved, TypeSLABreached, TypeExceptionExpired, TypeExceptionExpiring, TypeExceptionReviewDue, TypeReviewed, TypeRunHeld, TypeRunReleased, TypeRunDiscarded, TypeRetestRequested, TypeRetested},
}

// KnownType reports whether typ is a message type defined for topic. A
// consumer that meets an unknown type may skip it (a newer producer) or
// treat it as poison; the choice is the consumer's.
func KnownType(topic, typ string) bool {
	for _, t := range topicTypes[topic] {
		if t == typ {
			return true
		}
	}
	return false
}

// Envelope wraps every message value: the version and type say how to read
// Payload, ID lets consumers drop a replayed message, At is when the
// producer created it.
type Envelope struct {
	V       int             `json:"v"`
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	At      time.Time       `json:"at"`
	Payload json.RawMessage `json:"payload"`
}

// NewID returns a fresh message id: a UUIDv7, so ids sort by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source does; a random
		// v4 id keeps the message publishable.
		return uuid.NewString()
	}
	return id.String()
}

// Encode wraps payload in an envelope with a fresh id and the current time.
func Encode(typ string, payload any) ([]byte, error) {
	return EncodeID(NewID(), typ, time.Now(), payload)
}

// EncodeID is Encode with a caller-chosen id and time, for producers that
// must publish the same message identically more than once (the outbox
// relay stores the id with the row).
func EncodeID(id, typ string, at time.Time, payload any) ([]byte, error) {
	if typ == "" {
		return nil, errors.New("bus: encode: empty message type")
	}
	if id == "" {
		return nil, errors.New("bus: encode: empty message id")
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("bus: encode %s payload: %w", typ, err)
	}
	b, err := json.Marshal(Envelope{V: EnvelopeVersion, Type: typ, ID: id, At: at.UTC(), Payload: p})
	if err != nil {
		return nil, fmt.Errorf("bus: encode %s envelope: %w", typ, err)
	}
	return b, nil
}

// EncodeRawID is EncodeID for a payload that is already valid, compact
// JSON (a batch assembled from encoded findings): it is placed in the
// envelope as it is, where EncodeID would scan and re-encode it twice.
func EncodeRawID(id, typ string, at time.Time, payload []byte) ([]byte, error) {
	if typ == "" {
		return nil, errors.New("bus: encode: empty message type")
	}
	if id == "" {
		return nil, errors.New("bus: encode: empty message id")
	}
	if len(payload) == 0 {
		return nil, fmt.Errorf("bus: encode %s: empty payload", typ)
	}
	head, err := json.Marshal(struct {
		V    int       `json:"v"`
		Type string    `json:"type"`
		ID   string    `json:"id"`
		At   time.Time `json:"at"`
	}{EnvelopeVersion, typ, id, at.UTC()})
	if err != nil {
		return nil, fmt.Errorf("bus: encode %s envelope: %w", typ, err)
	}
	b := make([]byte, 0, len(head)+len(payload)+12)
	b = append(b, head[:len(head)-1]...)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}'), nil
}

// PeekType returns a message's type without decoding its payload, for
// routing decisions made for every message. Envelopes this package writes
// carry the type near the start; anything else is decoded in full.
func PeekType(b []byte) (string, error) {
	head := b[:min(len(b), 96)]
	if i := bytes.Index(head, []byte(`"type":"`)); i >= 0 {
		rest := head[i+len(`"type":"`):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
			return string(rest[:j]), nil
		}
	}
	e, err := Decode(b)
	return e.Type, err
}

// Decode parses an envelope. Malformed JSON, a missing field or an unknown
// version is a Poison error: retrying cannot make such a message readable.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, Poison(fmt.Errorf("bus: decode envelope: %w", err))
	}
	switch {
	case e.V != EnvelopeVersion:
		return Envelope{}, Poison(fmt.Errorf("bus: decode envelope: unsupported version %d (this build reads %d)", e.V, EnvelopeVersion))
	case e.Type == "":
		return Envelope{}, Poison(errors.New("bus: decode envelope: missing type"))
	case e.ID == "":
		return Envelope{}, Poison(errors.New("bus: decode envelope: missing id"))
	case len(e.Payload) == 0:
		return Envelope{}, Poison(errors.New("bus: decode envelope: missing payload"))
	}
	return e, nil
}

// Unmarshal decodes the payload into v. Unknown fields are ignored so that
// a producer may add optional fields without a version bump; a payload of
// the wrong shape is a Poison error.
func (e Envelope) Unmarshal(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return Poison(fmt.Errorf("bus: decode %s payload: %w", e.Type, err))
	}
	return nil
}
