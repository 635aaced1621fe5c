package bus

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// No goroutine is ignored: the producers, consumers, transports and
	// brokers the tests start are all closed before they return.
	goleak.VerifyTestMain(m)
}

// testLogger writes warnings and errors to the test's output, so a failing
// test shows what the clients complained about.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	cfg := Config{Brokers: []string{"127.0.0.1:9092"}}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Partitions != 6 || cfg.ReplicationFactor != 1 || cfg.Compression != "zstd" ||
		cfg.MaxMessageBytes != 900_000 || cfg.MaxWait != 500*time.Millisecond || cfg.ClientID != "starpipe" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}

	bad := Config{
		Brokers:         []string{"no-port"},
		Compression:     "brotli",
		MaxMessageBytes: 2_000_000,
		MaxWait:         100 * time.Millisecond,
	}.WithDefaults()
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config validated")
	}
	for _, want := range []string{"no-port", "brotli", "max_message_bytes", "max_wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "at least one broker") {
		t.Errorf("empty brokers: got %v", err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	type payload struct {
		RunID string `json:"run_id"`
		Count int    `json:"count"`
	}
	b, err := Encode(TypeRunFinished, payload{RunID: "r1", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	env, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if env.V != EnvelopeVersion || env.Type != TypeRunFinished || env.ID == "" || env.At.IsZero() {
		t.Fatalf("unexpected envelope: %+v", env)
	}
	var p payload
	if err := env.Unmarshal(&p); err != nil {
		t.Fatal(err)
	}
	if p != (payload{RunID: "r1", Count: 3}) {
		t.Fatalf("payload = %+v", p)
	}

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b1, _ := EncodeID("id-1", TypeOpened, at, p)
	b2, _ := EncodeID("id-1", TypeOpened, at, p)
	if string(b1) != string(b2) {
		t.Fatal("EncodeID is not deterministic")
	}
	if !KnownType(TopicFindingEvents, TypeOpened) || KnownType(TopicScanRequests, TypeOpened) {
		t.Fatal("KnownType disagrees with the topic table")
	}
}

func TestDecodeRejectsAsPoison(t *testing.T) {
	for name, in := range map[string]string{
		"garbage":         "not json",
		"unknown version": `{"v":2,"type":"findings","id":"x","at":"2026-01-01T00:00:00Z","payload":{}}`,
		"no version":      `{"type":"findings","id":"x","payload":{}}`,
		"no type":         `{"v":1,"id":"x","payload":{}}`,
		"no id":           `{"v":1,"type":"findings","payload":{}}`,
		"no payload":      `{"v":1,"type":"findings","id":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(in))
			if err == nil {
				t.Fatal("decoded")
			}
			if !IsPoison(err) {
				t.Fatalf("not poison: %v", err)
			}
		})
	}
	env, err := Decode([]byte(`{"v":1,"type":"findings","id":"x","payload":"a string"}`))
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ N int }
	if err := env.Unmarshal(&v); !IsPoison(err) {
		t.Fatalf("payload of the wrong shape: got %v, want poison", err)
	}
}

func TestPoisonWrapping(t *testing.T) {
	if Poison(nil) != nil {
		t.Fatal("Poison(nil) != nil")
	}
	base := errors.New("bad payload")
	err := Poison(base)
	if !IsPoison(err) || !errors.Is(err, base) {
		t.Fatalf("Poison lost its identity: %v", err)
	}
	if IsPoison(base) || IsPoison(nil) {
		t.Fatal("plain errors reported as poison")
	}
	wrapped := json.Unmarshal([]byte("x"), new(int))
	if IsPoison(wrapped) {
		t.Fatal("json error reported as poison")
	}
}

func TestMetricsRegister(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	m.addProduced(TopicScanResults, 2, 10)
	m.incDLQ(TopicScanResults, "g")
	if got := testutil.ToFloat64(m.produced.WithLabelValues(TopicScanResults)); got != 2 {
		t.Fatalf("produced = %v", got)
	}
	n, err := testutil.GatherAndCount(reg, "starpipe_bus_messages_produced_total", "starpipe_bus_dlq_messages_total")
	if err != nil || n != 2 {
		t.Fatalf("gathered %d series, err %v", n, err)
	}
	var nilMetrics *Metrics
	nilMetrics.addProduced("t", 1, 1) // must not panic
}

// TestEncodeRawAndPeek checks that a pre-encoded payload round-trips
// through an envelope unchanged and that PeekType reads the type without
// decoding, falling back to a full decode for envelopes of other shapes.
func TestEncodeRawAndPeek(t *testing.T) {
	payload := []byte(`{"run_id":"r","seq":1,"findings":[{"a":1}]}`)
	b, err := EncodeRawID("r/1", TypeFindings, time.Unix(0, 0), payload)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Decode(b)
	if err != nil || env.Type != TypeFindings || env.ID != "r/1" || string(env.Payload) != string(payload) {
		t.Fatalf("decode = %+v, %v", env, err)
	}
	if typ, err := PeekType(b); err != nil || typ != TypeFindings {
		t.Fatalf("PeekType = %q, %v", typ, err)
	}
	reordered := []byte(`{"payload":{"x":1},"id":"i","at":"2026-01-01T00:00:00Z","v":1,"type":"run-finished"}`)
	if typ, err := PeekType(reordered); err != nil || typ != TypeRunFinished {
		t.Fatalf("PeekType(reordered) = %q, %v", typ, err)
	}
	if _, err := PeekType([]byte(`garbage`)); !IsPoison(err) {
		t.Fatalf("PeekType(garbage) = %v, want poison", err)
	}
}
