package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// DataDir keeps topics, records and committed offsets across restarts.
	// Empty keeps everything in memory (tests).
	DataDir string
	// Port to listen on at 127.0.0.1; 0 picks a free port. Listen, when
	// set, wins.
	Port int
	// Listen is the host:port to bind (e.g. "0.0.0.0:9092" for a broker
	// other machines use); port 0 picks a free one.
	Listen string
	// Advertise is the host, or host:port, that clients are told to
	// connect to in metadata responses. Required when Listen binds every
	// interface; defaults to the bound address otherwise.
	Advertise string
	// TLS, when set, makes the listener speak TLS only.
	TLS *tls.Config
	// Users, when not empty, turns on SASL: each user name maps to its
	// password and may authenticate with PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512. Every user may do everything: the broker has no ACLs.
	Users map[string]string
	// Partitions for the starpipe topics when they are first created.
	// Default 6.
	Partitions int
	// Retention is how long records are kept (log.retention.ms). Default
	// 7 days. RetentionInterval is how often it is enforced; default 5 min.
	Retention         time.Duration
	RetentionInterval time.Duration
	// SyncWrites fsyncs every produced batch; slower, but a crash loses
	// nothing acknowledged.
	SyncWrites bool
	// GroupMinSessionTimeout lowers kfake's 6 s minimum session timeout,
	// for tests with short consumer session timeouts. 0 keeps the default.
	GroupMinSessionTimeout time.Duration
}

func (c EmbeddedConfig) withDefaults() EmbeddedConfig {
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = 5 * time.Minute
	}
	return c
}

// Embedded is a single-node Kafka-protocol broker running in this process
// (franz-go's kfake). kfake describes itself as a test broker and its disk
// format is young: this is for one-machine installs (`starpipe dev`) and
// tests; production points Config.Brokers at a real Kafka cluster.
type Embedded struct {
	cluster *kfake.Cluster
	log     *slog.Logger
	addrs   []string

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// StartEmbedded starts the broker, creates the starpipe topics that do not
// exist yet, and starts enforcing retention. ctx only bounds start-up; the
// broker runs until Close.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig, logger *slog.Logger) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = discardLogger()
	}
	log := logger.With("component", "bus.embedded")

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("starpipe"),
		kfake.WithLogger(kfakeLogger{log}),
		kfake.DefaultNumPartitions(cfg.Partitions),
		// Broker-wide retention applies to every topic, including ones
		// persisted by an earlier run with a different setting.
		kfake.BrokerConfigs(map[string]string{
			"log.retention.ms": strconv.FormatInt(cfg.Retention.Milliseconds(), 10),
		}),
	}
	switch {
	case cfg.Listen != "":
		fn, err := listenFn(cfg.Listen, cfg.Advertise)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kfake.ListenFn(fn))
	case cfg.Port != 0:
		opts = append(opts, kfake.Ports(cfg.Port))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for user, pass := range cfg.Users {
			if user == "" || pass == "" {
				return nil, errors.New("bus: embedded broker: every SASL user needs a name and a password")
			}
			for _, m := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
				opts = append(opts, kfake.Superuser(m, user, pass))
			}
		}
	}
	if cfg.DataDir != "" {
		if err := privateDir(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("bus: embedded broker data directory: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.GroupMinSessionTimeout > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(cfg.GroupMinSessionTimeout))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: starting embedded broker: %w", err)
	}
	// CreateTopic rather than SeedTopics: seeds apply only to an empty data
	// directory, while this also adds a topic a newer build introduced.
	for _, t := range Topics() {
		err := cluster.CreateTopic(t, int32(cfg.Partitions), nil)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			cluster.Close()
			return nil, fmt.Errorf("bus: creating embedded topic %s: %w", t, err)
		}
	}
	e := &Embedded{
		cluster: cluster,
		log:     log,
		addrs:   cluster.ListenAddrs(),
		stop:    make(chan struct{}),
	}
	e.wg.Go(func() { e.retain(cfg.RetentionInterval) })
	log.Info("embedded broker started", "addrs", e.addrs, "data_dir", cfg.DataDir, "retention", cfg.Retention,
		"tls", cfg.TLS != nil, "sasl_users", len(cfg.Users))
	return e, nil
}

// listenFn binds listen and, when advertise is set or listen is a wildcard,
// reports advertise as the listener's address: kfake advertises whatever
// its listener's Addr says, and 0.0.0.0 is no address a client can use.
func listenFn(listen, advertise string) (func(network, address string) (net.Listener, error), error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded broker listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && advertise == "" {
		return nil, fmt.Errorf("bus: embedded broker listens on every interface (%s): name the address clients should use (advertise)", listen)
	}
	advHost, advPort := advertise, ""
	if h, p, err := net.SplitHostPort(advertise); err == nil {
		advHost, advPort = h, p
	}
	return func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, listen)
		if err != nil {
			return nil, err
		}
		if advHost == "" {
			return ln, nil
		}
		port := advPort
		if port == "" {
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
		return advertisedListener{Listener: ln, addr: advertisedAddr(net.JoinHostPort(advHost, port))}, nil
	}, nil
}

type advertisedListener struct {
	net.Listener
	addr advertisedAddr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

type advertisedAddr string

func (advertisedAddr) Network() string  { return "tcp" }
func (a advertisedAddr) String() string { return string(a) }

// privateDir creates dir as 0700, or tightens it to 0700 with every file
// in it 0600: kfake writes its segments world-readable (0644 in 0755
// directories), and they hold every finding. A directory only its owner
// can enter keeps what kfake writes later private too.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil // never follow or chmod through a link
		case d.IsDir():
			return os.Chmod(path, 0o700)
		default:
			return os.Chmod(path, 0o600)
		}
	})
}

// retain enforces retention on a timer: kfake does not do it on its own
// unless a topic carries an explicit retention config.
func (e *Embedded) retain(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.cluster.ApplyRetention()
		}
	}
}

// Addrs returns the broker addresses, for Config.Brokers.
func (e *Embedded) Addrs() []string { return append([]string(nil), e.addrs...) }

// Close stops the broker, flushing its state to DataDir. Clients should be
// closed first. Close is idempotent.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.wg.Wait()
		e.cluster.Close()
		e.log.Info("embedded broker stopped")
	})
}

// kfakeLogger forwards kfake's warnings and errors to slog; its info and
// debug levels log every request.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Error("kfake error", "detail", fmt.Sprintf(msg, args...))
	case kfake.LogLevelWarn:
		l.log.Warn("kfake warning", "detail", fmt.Sprintf(msg, args...))
	}
}
