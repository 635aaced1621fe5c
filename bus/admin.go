package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// adminTimeout bounds one admin or metadata request when the caller's
// context has no deadline.
const adminTimeout = 10 * time.Second

// newTransport returns a private transport. Sharing kafka.DefaultTransport
// would share its metadata cache (stale for 6 s after a topic is created)
// and leave its goroutines running after our clients close.
func newTransport(cfg Config) (*kafka.Transport, error) {
	mech, err := cfg.SASL.mechanism()
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return &kafka.Transport{
		ClientID:    cfg.ClientID,
		DialTimeout: 5 * time.Second,
		TLS:         cfg.TLS,
		SASL:        mech,
	}, nil
}

// EnsureTopics creates every starpipe topic that does not exist yet, with
// cfg.Partitions and cfg.ReplicationFactor. Existing topics are left
// untouched, so it is safe to call on every start.
//
// Call it before creating Producers: a producer that looked up a missing
// topic caches the miss for a few seconds.
func EnsureTopics(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	tr, err := newTransport(cfg)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: adminTimeout}

	req := &kafka.CreateTopicsRequest{}
	for _, t := range Topics() {
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:             t,
			NumPartitions:     cfg.Partitions,
			ReplicationFactor: cfg.ReplicationFactor,
		})
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("bus: creating topics: %w", explainAuth(ctx, cfg, err))
	}
	var errs []error
	for _, t := range Topics() {
		err := resp.Errors[t]
		if err == nil || errors.Is(err, kafka.TopicAlreadyExists) {
			continue
		}
		errs = append(errs, fmt.Errorf("topic %s: %w", t, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bus: creating topics: %w", errors.Join(errs...))
	}
	return nil
}

// Ping asks the brokers for cluster metadata and reports whether one
// answered and knows a controller. It is meant for /readyz; without a
// deadline on ctx it gives up after 5 s.
func Ping(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	if len(cfg.Brokers) == 0 {
		return errors.New("bus: ping: no brokers configured")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	tr, err := newTransport(cfg)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	// An empty topic list would ask for every topic; asking for one we own
	// keeps the response small on a busy cluster.
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{TopicScanResults}})
	if err != nil {
		return fmt.Errorf("bus: ping %v: %w", cfg.Brokers, explainAuth(ctx, cfg, err))
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("bus: ping %v: metadata lists no brokers", cfg.Brokers)
	}
	return nil
}
