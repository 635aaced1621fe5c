package daemon

import (
	"context"
	"log/slog"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/vault"
)

// Option configures New.
type Option func(*options)

type options struct {
	log     *slog.Logger
	version string
	keyring *vault.Keyring

	// setups run once the store is open, before any part is built.
	setups []func(ctx context.Context, d *Daemon) error
	extras []extra

	busTune    func(*bus.Config)
	runTune    func(group string, ro *bus.RunOptions)
	schedTune  func(*scheduler.Options)
	relayOpts  []relay.Option
	ingestWrap func(bus.Handler) bus.Handler
	ingestTune func(*pipeline.Consumer)
	workerWrap func(bus.Handler) bus.Handler
}

// extra is a background part an option adds (the dev demo target).
type extra struct {
	name string
	run  func(ctx context.Context, d *Daemon) error
}

// WithLogger sets the logger every part logs to (each with its component).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithVersion labels the starpipe_up metric.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithKeyring gives the daemon the vault keyring that seals credentials.
// Without one, credentials are disabled: the API refuses them and scans
// that name one fail with a clear error.
func WithKeyring(kr *vault.Keyring) Option { return func(o *options) { o.keyring = kr } }

// WithBusConfig adjusts the Kafka client configuration built from the
// config file (tests shorten session timeouts).
func WithBusConfig(fn func(*bus.Config)) Option { return func(o *options) { o.busTune = fn } }

// WithRunOptions adjusts a consumer group's run options (GroupIngest or
// GroupWorkers) after the daemon set its own; DLQ and DrainTimeout are the
// daemon's and are better left alone.
func WithRunOptions(fn func(group string, ro *bus.RunOptions)) Option {
	return func(o *options) { o.runTune = fn }
}

// WithSchedulerOptions adjusts the scheduler's options (tests set a fake
// clock and the poll interval).
func WithSchedulerOptions(fn func(*scheduler.Options)) Option {
	return func(o *options) { o.schedTune = fn }
}

// WithRelayOptions passes options to the outbox relay.
func WithRelayOptions(opts ...relay.Option) Option {
	return func(o *options) { o.relayOpts = append(o.relayOpts, opts...) }
}

// WithIngestConsumer lets a test reach the ingest consumer once it is
// built (for example to give it a parser that fails in ways no file does).
func WithIngestConsumer(fn func(*pipeline.Consumer)) Option {
	return func(o *options) { o.ingestTune = fn }
}

// WithIngestHandler wraps the ingest consumer's handler: reliability tests
// observe deliveries or inject a crash between the database commit and
// the offset commit.
func WithIngestHandler(wrap func(bus.Handler) bus.Handler) Option {
	return func(o *options) { o.ingestWrap = wrap }
}

// WithWorkerHandler wraps the scan worker's handler (tests hand it a
// request again, as a redelivery would).
func WithWorkerHandler(wrap func(bus.Handler) bus.Handler) Option {
	return func(o *options) { o.workerWrap = wrap }
}
