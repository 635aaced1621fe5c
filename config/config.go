// Package config holds the daemon's typed configuration: defaults, a strict
// YAML loader (unknown keys are errors), environment overrides and
// validation. Every key is documented in configs/starpipe.example.yaml.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole daemon configuration.
type Config struct {
	StateDir        string        `yaml:"state_dir"`
	Listen          string        `yaml:"listen"`
	HTTP            HTTPConfig    `yaml:"http"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ShutdownDelay is how long /readyz answers 503 while everything still
	// serves, before intake stops: the time a load balancer needs to see
	// the 503 and stop sending. It is part of ShutdownTimeout.
	ShutdownDelay time.Duration   `yaml:"shutdown_delay"`
	Log           LogConfig       `yaml:"log"`
	Database      DatabaseConfig  `yaml:"database"`
	Kafka         KafkaConfig     `yaml:"kafka"`
	Mapping       MappingConfig   `yaml:"mapping"`
	Ingest        IngestConfig    `yaml:"ingest"`
	Reconcile     ReconcileConfig `yaml:"reconcile"`
	Scoring       ScoringConfig   `yaml:"scoring"`
	Vault         VaultConfig     `yaml:"vault"`
	Scheduler     SchedulerConfig `yaml:"scheduler"`
	Relay         RelayConfig     `yaml:"relay"`
	SLA           SLAConfig       `yaml:"sla"`
	Review        ReviewConfig    `yaml:"review"`
	Roles         []string        `yaml:"roles"`

	// Analyzers are the code analysers code schedules may name, by name.
	// They are admin configuration: the API only chooses among them.
	Analyzers map[string]AnalyzerConfig `yaml:"analyzers"`
	Scan      ScanConfig                `yaml:"scan"`
	Amass     AmassConfig               `yaml:"amass"`
}

// LogConfig sets up log/slog.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, text, or auto (text on a terminal)
}

// DatabaseConfig points at PostgreSQL.
type DatabaseConfig struct {
	URL      string `yaml:"url"`
	MaxConns int32  `yaml:"max_conns"`
}

// KafkaConfig points at the brokers.
type KafkaConfig struct {
	Brokers           []string `yaml:"brokers"`
	Partitions        int      `yaml:"partitions"`
	ReplicationFactor int      `yaml:"replication_factor"`
	ClientID          string   `yaml:"client_id"`
	Compression       string   `yaml:"compression"`
	// SessionTimeout is how long a consumer that stopped heartbeating
	// (a crashed replica) keeps its partitions before the group moves
	// them: the failover time after a SIGKILL.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// TLS and SASL secure the broker connections (security.go).
	TLS  KafkaTLSConfig  `yaml:"tls"`
	SASL KafkaSASLConfig `yaml:"sasl"`
}

// MappingConfig selects the CCM rules.
type MappingConfig struct {
	File       string `yaml:"file"`        // empty: the rules shipped in the binary
	CCMVersion string `yaml:"ccm_version"` // 4.0.13 or 4.1
}

// IngestConfig bounds what a single uploaded file may be.
type IngestConfig struct {
	// MaxBytes bounds one upload (default 16 GiB). Artifacts are stored
	// as 4 MiB chunks, so PostgreSQL's 1 GB value limit no longer applies
	// and memory does not grow with the size; the default bounds the
	// database space and parse time one upload can take.
	MaxBytes   int64 `yaml:"max_bytes"`
	MaxDepth   int   `yaml:"max_depth"`
	MaxString  int   `yaml:"max_string"`
	MaxResults int   `yaml:"max_results"`
	BatchSize  int   `yaml:"batch_size"` // findings per Kafka message
	// Concurrency is how many findings batches one consumer stores at once.
	Concurrency int `yaml:"concurrency"`
}

// ReconcileConfig says when a run is held instead of resolving findings:
// when it would resolve at least HoldMin findings and at least
// HoldFraction of the open findings of its scope, kind and tools. A held
// run resolves nothing until an operator or admin releases or discards it
// (POST /v1/runs/{id}/release, /discard).
type ReconcileConfig struct {
	HoldFraction float64 `yaml:"hold_fraction"`
	HoldMin      int     `yaml:"hold_min"`
}

// ScoringConfig carries environmental CVSS context per scope.
type ScoringConfig struct {
	// Environments maps a scope (exact) to a CVSS environmental fragment such
	// as "CR:H/IR:H/AR:L/MAV:A".
	Environments map[string]string `yaml:"environments"`
}

// VaultConfig locates the master key for credentials.
type VaultConfig struct {
	KeyFile string `yaml:"key_file"` // STARPIPE_MASTER_KEY wins when set
}

// SchedulerConfig controls scheduled scans.
type SchedulerConfig struct {
	Enabled       bool   `yaml:"enabled"`
	SchedulesFile string `yaml:"schedules_file"` // applied at start when set
}

// RelayConfig tunes the outbox relay.
type RelayConfig struct {
	// MaxAttempts is how many times the broker may refuse an outbox row,
	// for a reason not known to be final, before the row is dead-lettered
	// (its run fails). A row refused for good (over the message size
	// limit) is dead-lettered at once; a broker that is unreachable
	// dead-letters nothing.
	MaxAttempts int `yaml:"max_attempts"`
}

// Roles a process can run; `serve` runs all of them by default.
const (
	RoleAPI       = "api"       // the HTTP API: the only role that binds listen
	RoleIngest    = "ingest"    // the starpipe.scan.results consumer
	RoleRelay     = "relay"     // delivers the outbox to Kafka
	RoleScheduler = "scheduler" // fires schedules (only the elected leader does)
	RoleWorker    = "worker"    // runs scans from starpipe.scan.requests
)

// AllRoles lists every role in the order the daemon builds them.
func AllRoles() []string {
	return []string{RoleAPI, RoleIngest, RoleRelay, RoleScheduler, RoleWorker}
}

// Default returns the configuration used when a key is absent.
func Default() Config {
	return Config{
		StateDir:        ".starpipe",
		Listen:          "127.0.0.1:8080",
		HTTP:            DefaultHTTP(),
		ShutdownTimeout: 10 * time.Second,
		ShutdownDelay:   3 * time.Second,
		Log:             LogConfig{Level: "info", Format: "auto"},
		Database:        DatabaseConfig{MaxConns: 10},
		Kafka:           KafkaConfig{Partitions: 6, ReplicationFactor: 1, ClientID: "starpipe", Compression: "zstd", SessionTimeout: 10 * time.Second},
		Mapping:         MappingConfig{CCMVersion: "4.0.13"},
		Ingest: IngestConfig{
			MaxBytes:    16 << 30, // see IngestConfig.MaxBytes
			MaxDepth:    128,
			MaxString:   16 << 20,
			MaxResults:  10_000_000,
			BatchSize:   500,
			Concurrency: 4,
		},
		Reconcile: ReconcileConfig{HoldFraction: 0.5, HoldMin: 5},
		Scheduler: SchedulerConfig{Enabled: true},
		Relay:     RelayConfig{MaxAttempts: 5},
		SLA:       DefaultSLA(),
		Review:    DefaultReview(),
		Scan:      ScanConfig{AllowPublic: true, MaxDuration: DefaultScanMaxDuration, Concurrency: DefaultScanConcurrency},
		Roles:     AllRoles(),
	}
}

// Load reads a YAML file over the defaults (path may be empty), then applies
// environment overrides, then validates.
func Load(path string) (Config, error) {
	return LoadOver(Default(), path)
}

// LoadOver is Load with other defaults: `starpipe dev` starts from
// defaults of its own (no load balancer, so no shutdown delay) and a file
// or the environment still overrides them.
func LoadOver(defaults Config, path string) (Config, error) {
	cfg := defaults
	cfg.Roles = slices.Clone(defaults.Roles)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := Decode(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// Decode strictly decodes YAML into cfg: unknown keys are errors with a line.
func Decode(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file decodes as "nothing set", not an error.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// ApplyEnv applies STARPIPE_* overrides. lookup is os.LookupEnv in
// production and a map in tests.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	str := func(key string, dst *string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	str("STARPIPE_STATE_DIR", &c.StateDir)
	str("STARPIPE_LISTEN", &c.Listen)
	str("STARPIPE_LOG_LEVEL", &c.Log.Level)
	str("STARPIPE_LOG_FORMAT", &c.Log.Format)
	str("STARPIPE_DATABASE_URL", &c.Database.URL)
	str("STARPIPE_MAPPING_FILE", &c.Mapping.File)
	str("STARPIPE_CCM_VERSION", &c.Mapping.CCMVersion)
	str("STARPIPE_VAULT_KEY_FILE", &c.Vault.KeyFile)
	str("STARPIPE_SCHEDULES_FILE", &c.Scheduler.SchedulesFile)
	str("STARPIPE_SCANNER_PATH", &c.Scan.ScannerPath)
	if v, ok := lookup("STARPIPE_KAFKA_BROKERS"); ok && v != "" {
		c.Kafka.Brokers = splitList(v)
	}
	c.applySecurityEnv(lookup)
	if v, ok := lookup("STARPIPE_ROLES"); ok && v != "" {
		c.Roles = splitList(v)
	}
	if v, ok := lookup("STARPIPE_KAFKA_PARTITIONS"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("STARPIPE_KAFKA_PARTITIONS: %w", err)
		}
		c.Kafka.Partitions = n
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks every section and names the key at fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	// The delay is spent inside the timeout; what is left drains work.
	if c.ShutdownDelay < 0 || (c.ShutdownTimeout > 0 && c.ShutdownDelay >= c.ShutdownTimeout) {
		bad("shutdown_delay", "must be at least 0 and less than shutdown_timeout (%v)", c.ShutdownTimeout)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		bad("log.format", "%q is not one of auto, json, text", c.Log.Format)
	}
	if c.Database.MaxConns < 1 {
		bad("database.max_conns", "must be at least 1")
	}
	if c.Kafka.Partitions < 1 {
		bad("kafka.partitions", "must be at least 1")
	}
	if c.Kafka.ReplicationFactor < 1 {
		bad("kafka.replication_factor", "must be at least 1")
	}
	// Brokers refuse a session timeout outside group.min/max.session.timeout.ms
	// (6 s to 30 min by default).
	if c.Kafka.SessionTimeout < 6*time.Second || c.Kafka.SessionTimeout > 30*time.Minute {
		bad("kafka.session_timeout", "must be between 6s and 30m (the broker's group.min/max.session.timeout.ms)")
	}
	switch c.Kafka.Compression {
	case "none", "gzip", "snappy", "lz4", "zstd":
	default:
		bad("kafka.compression", "%q is not one of none, gzip, snappy, lz4, zstd", c.Kafka.Compression)
	}
	errs = append(errs, c.validateSecurity()...)
	switch c.Mapping.CCMVersion {
	case "4.0.13", "4.1":
	default:
		bad("mapping.ccm_version", "%q is not one of 4.0.13, 4.1", c.Mapping.CCMVersion)
	}
	if c.Ingest.BatchSize < 1 || c.Ingest.BatchSize > 5000 {
		bad("ingest.batch_size", "must be between 1 and 5000 (batches must stay under the broker's message limit)")
	}
	if c.Ingest.Concurrency < 1 || c.Ingest.Concurrency > 64 {
		bad("ingest.concurrency", "must be between 1 and 64")
	}
	// No "never hold" setting: a very large hold_min is one.
	if !(c.Reconcile.HoldFraction > 0 && c.Reconcile.HoldFraction <= 1) {
		bad("reconcile.hold_fraction", "must be more than 0 and at most 1 (a share of the scope's open findings)")
	}
	if c.Reconcile.HoldMin < 1 {
		bad("reconcile.hold_min", "must be at least 1")
	}
	errs = append(errs, c.validateScanning()...)
	if c.Relay.MaxAttempts < 1 || c.Relay.MaxAttempts > 1000 {
		bad("relay.max_attempts", "must be between 1 and 1000")
	}
	errs = append(errs, c.SLA.validate()...)
	errs = append(errs, c.Review.validate()...)
	if len(c.Roles) == 0 {
		bad("roles", "at least one role is needed")
	}
	for _, r := range c.Roles {
		if !slices.Contains(AllRoles(), r) {
			bad("roles", "unknown role %q (%s)", r, strings.Join(AllRoles(), ", "))
		}
	}
	return errors.Join(errs...)
}

// HasRole reports whether this process runs the role.
func (c *Config) HasRole(role string) bool {
	return slices.Contains(c.Roles, role)
}
