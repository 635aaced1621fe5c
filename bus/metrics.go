package bus

import "github.com/prometheus/client_golang/prometheus"

// Metrics holds the bus counters. It implements prometheus.Collector, so
// the daemon registers it once (reg.MustRegister(m)) and passes it to the
// clients through Config.Metrics. A nil *Metrics records nothing, which
// keeps tests and one-off commands free of registry wiring.
type Metrics struct {
	produced      *prometheus.CounterVec
	producedBytes *prometheus.CounterVec
	produceErrors *prometheus.CounterVec
	consumed      *prometheus.CounterVec
	handlerErrors *prometheus.CounterVec
	dlq           *prometheus.CounterVec
	commitErrors  *prometheus.CounterVec
}

// NewMetrics returns unregistered counters named starpipe_bus_*.
func NewMetrics() *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "starpipe",
			Subsystem: "bus",
			Name:      name,
			Help:      help,
		}, labels)
	}
	return &Metrics{
		produced:      counter("messages_produced_total", "Messages acknowledged by the brokers.", "topic"),
		producedBytes: counter("produced_bytes_total", "Key, value and header bytes acknowledged by the brokers, before compression.", "topic"),
		produceErrors: counter("produce_errors_total", "Publish calls that failed, including messages rejected as too large.", "topic"),
		consumed:      counter("messages_consumed_total", "Messages fetched by consumers.", "topic", "group"),
		handlerErrors: counter("handler_errors_total", "Handler failures by class: retriable (retried in place) or poison (sent to the DLQ).", "topic", "group", "class"),
		dlq:           counter("dlq_messages_total", "Messages moved to the dead-letter topic, by original topic.", "topic", "group"),
		commitErrors:  counter("commit_errors_total", "Offset commits that failed; the messages will be redelivered.", "topic", "group"),
	}
}

func (m *Metrics) collectors() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{m.produced, m.producedBytes, m.produceErrors, m.consumed, m.handlerErrors, m.dlq, m.commitErrors}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) addProduced(topic string, n, bytes int) {
	if m == nil {
		return
	}
	m.produced.WithLabelValues(topic).Add(float64(n))
	m.producedBytes.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) incProduceError(topic string) {
	if m == nil {
		return
	}
	m.produceErrors.WithLabelValues(topic).Inc()
}

func (m *Metrics) incConsumed(topic, group string) {
	if m == nil {
		return
	}
	m.consumed.WithLabelValues(topic, group).Inc()
}

func (m *Metrics) incHandlerError(topic, group, class string) {
	if m == nil {
		return
	}
	m.handlerErrors.WithLabelValues(topic, group, class).Inc()
}

func (m *Metrics) incDLQ(topic, group string) {
	if m == nil {
		return
	}
	m.dlq.WithLabelValues(topic, group).Inc()
}

func (m *Metrics) incCommitError(topic, group string) {
	if m == nil {
		return
	}
	m.commitErrors.WithLabelValues(topic, group).Inc()
}
