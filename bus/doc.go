// Package bus carries starpipe's messages over Kafka with
// github.com/segmentio/kafka-go: the topic names and their provisioning, a
// versioned JSON envelope codec, a synchronous keyed producer, a
// consumer-group consumer with manual commits and a dead-letter queue, a
// readiness probe, Prometheus counters, and an embedded single-node Kafka
// protocol broker (franz-go's kfake) for one-machine installs and tests.
//
// Delivery is at-least-once. A consumer commits an offset only after the
// handler's effect is durable, so handlers must be idempotent: the envelope
// carries a message id for that purpose.
//
// Every Producer, EnsureTopics call and Ping uses its own kafka.Transport:
// kafka-go's DefaultTransport caches topic metadata for 6 s and keeps
// goroutines alive after Close, which both bite in tests and at shutdown.
//
// Config.TLS and Config.SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) apply to
// every connection: producer, consumer group, admin and ping. A broker that
// refuses the credentials surfaces as ErrAuthentication, also from
// Consumer.Fetch, which kafka-go's group reader would otherwise retry
// silently.
//
// Supported brokers: Apache Kafka 2.x and 3.x, 4.0.1 and later (4.0.0
// rejected the old consumer-group request versions kafka-go v0.4.51 speaks,
// see KAFKA-19444), and the embedded kfake broker.
package bus
