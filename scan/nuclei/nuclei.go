// Package nuclei runs one nuclei scan through the nuclei SDK and writes its
// results as nuclei's own JSON lines (what `nuclei -jsonl` prints: one
// output.ResultEvent per line), which is what ingest/nuclei parses.
//
// The runner is built for a daemon that must never reach beyond its
// targets: it creates one engine per scan, disables template updates and
// the SDK's version check (see isolate), keeps interactsh off unless
// the configuration asks for it, and removes every configured header value
// (scan credentials) from what it writes.
//
// Importing this package imports scan/nucleienv, which moves nuclei's
// configuration, cache and temporary files into a starpipe state directory
// before nuclei's own package initialisation runs; see that package for how
// a process chooses the directory.
package nuclei

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	nucleilib "github.com/projectdiscovery/nuclei/v3/lib"
	"github.com/projectdiscovery/nuclei/v3/pkg/catalog/config"
	"github.com/projectdiscovery/nuclei/v3/pkg/output"

	"github.com/starpipe/starpipe/scan/nucleienv"
)

// Defaults applied by Run for zero Config fields.
const (
	DefaultConcurrency    = 10
	DefaultRequestTimeout = 10 * time.Second
)

// Redacted replaces every secret value in the output.
const Redacted = "[REDACTED]"

// Config describes one scan.
type Config struct {
	// Targets are URLs or host:port pairs; every one is scanned with every
	// selected template.
	Targets []string
	// TemplateDirs are local template files or directories. Nothing is
	// downloaded: the default nuclei-templates tree is never used.
	TemplateDirs []string
	// Tags, ExcludeTags and Severities filter the loaded templates.
	Tags, ExcludeTags, Severities []string
	// Headers are sent with every HTTP request, as "Name: value". They
	// usually carry credentials: their values are never logged and are
	// replaced by Redacted wherever they would appear in the output.
	Headers []string
	// StateDir holds the scan's temporary directory (removed when Run
	// returns). nuclei's configuration files live in the process-wide
	// directory chosen by scan/nucleienv; when StateDir is empty the
	// temporary directory goes there too.
	StateDir string
	// Resolvers are the DNS servers (ip:port) the scan may ask, for
	// hostname targets and DNS templates. When empty, the name servers of
	// /etc/resolv.conf are used; nuclei's built-in public resolvers never
	// are.
	Resolvers []string
	// Concurrency bounds templates per host and hosts per template
	// (DefaultConcurrency when zero).
	Concurrency int
	// RateLimit is the most requests per second over all hosts (no limit
	// when zero).
	RateLimit int
	// Timeout bounds the whole scan (none when zero); when it expires Run
	// returns the results seen so far and context.DeadlineExceeded.
	Timeout time.Duration
	// RequestTimeout bounds each request (DefaultRequestTimeout when zero;
	// nuclei counts in whole seconds).
	RequestTimeout time.Duration
	// AllowInteractsh lets templates with out-of-band checks use nuclei's
	// public interactsh servers. Off by default: it sends traffic to
	// servers on the internet.
	AllowInteractsh bool
	// KeepRequestResponse keeps the request, response and curl command of
	// each result (with secrets redacted). Off by default: they can carry
	// credentials or data that redaction by value cannot recognise, such
	// as a session cookie the target handed out.
	KeepRequestResponse bool
}

// Stats summarises a scan.
type Stats struct {
	// Results is the number of lines written.
	Results int
	// Targets is the number of distinct targets scanned.
	Targets int
}

// Errors returned by Run before a scan starts.
var (
	ErrNoTargets   = errors.New("no targets")
	ErrNoTemplates = errors.New("no template directories")
	errBadHeader   = errors.New(`header is not "Name: value"`)
)

// Run scans cfg.Targets with the templates in cfg.TemplateDirs and writes
// one JSON line per result to out. Lines are written as results arrive, so
// out holds everything found so far even when Run returns an error. Run is
// safe to call from several goroutines; each call has its own engine.
func Run(ctx context.Context, cfg Config, out io.Writer) (Stats, error) {
	var st Stats
	if err := nucleienv.Err(); err != nil {
		return st, fmt.Errorf("preparing nuclei state directory %s: %w", nucleienv.Dir(), err)
	}
	targets := dedupe(cfg.Targets)
	if len(targets) == 0 {
		return st, ErrNoTargets
	}
	if len(cfg.TemplateDirs) == 0 {
		return st, ErrNoTemplates
	}
	red, err := newRedactor(cfg.Headers)
	if err != nil {
		return st, err
	}
	if err := prepareConfigDir(); err != nil {
		return st, err
	}
	if err := isolate(); err != nil {
		return st, err
	}
	if len(cfg.Resolvers) == 0 {
		if cfg.Resolvers, err = systemResolvers("/etc/resolv.conf"); err != nil {
			return st, err
		}
	}

	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	// A failed write stops the scan: there is no point in scanning for
	// results that cannot be kept.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	opts, err := engineOptions(ctx, cfg)
	if err != nil {
		return st, err
	}
	engine, err := nucleilib.NewNucleiEngineCtx(ctx, opts...)
	if err != nil {
		return st, fmt.Errorf("creating nuclei engine: %w", err)
	}
	defer engine.Close()

	if err := engine.LoadAllTemplates(); err != nil {
		return st, fmt.Errorf("loading nuclei templates: %w", err)
	}
	if len(engine.GetTemplates()) == 0 && len(engine.GetWorkflows()) == 0 {
		return st, fmt.Errorf("loading nuclei templates from %s: %w", strings.Join(cfg.TemplateDirs, ", "), nucleilib.ErrNoTemplatesAvailable)
	}
	engine.LoadTargets(targets, false)
	st.Targets = len(targets)

	var (
		mu       sync.Mutex
		writeErr error
	)
	callback := func(ev *output.ResultEvent) {
		line, err := encodeEvent(ev, red, cfg.KeepRequestResponse)
		mu.Lock()
		defer mu.Unlock()
		if writeErr != nil {
			return
		}
		if err == nil {
			_, err = out.Write(line)
		}
		if err != nil {
			writeErr = fmt.Errorf("writing nuclei result: %w", err)
			cancel(writeErr)
			return
		}
		st.Results++
	}
	execErr := engine.ExecuteCallbackWithCtx(ctx, callback)

	mu.Lock()
	defer mu.Unlock()
	switch {
	case writeErr != nil:
		return st, writeErr
	case execErr != nil:
		if cause := context.Cause(ctx); cause != nil {
			execErr = cause
		}
		return st, fmt.Errorf("running nuclei scan: %w", execErr)
	}
	return st, nil
}

// engineOptions translates cfg into SDK options. It creates the scan's
// temporary directory, which engine.Close removes.
func engineOptions(ctx context.Context, cfg Config) ([]nucleilib.NucleiSDKOptions, error) {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = nucleienv.Dir()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating nuclei state directory: %w", err)
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	reqTimeout := cfg.RequestTimeout
	if reqTimeout <= 0 {
		reqTimeout = DefaultRequestTimeout
	}
	secs := int((reqTimeout + time.Second - 1) / time.Second)

	// Interactsh stays off unless asked for. CacheSize must not be zero
	// even then: the SDK sizes a cache with it and panics on zero.
	ish := nucleilib.InteractshOpts{NoInteractsh: true, CacheSize: 1000}
	if cfg.AllowInteractsh {
		ish = nucleilib.InteractshOpts{
			CacheSize:           5000,
			Eviction:            60 * time.Second,
			CooldownPeriod:      5 * time.Second,
			PollDuration:        5 * time.Second,
			DisableHttpFallback: true,
		}
	}

	opts := []nucleilib.NucleiSDKOptions{
		nucleilib.WithTemplatesOrWorkflows(nucleilib.TemplateSources{Templates: cfg.TemplateDirs}),
		nucleilib.WithTemplateFilters(nucleilib.TemplateFilters{
			Tags:        cfg.Tags,
			ExcludeTags: cfg.ExcludeTags,
			Severity:    strings.Join(cfg.Severities, ","),
		}),
		// Without these two the engine tries to install or update the
		// public template tree, which fails offline and is never wanted.
		nucleilib.DisableUpdateCheck(),
		nucleilib.WithTemplateUpdateCallback(true, nil),
		nucleilib.WithInteractshOptions(ish),
		nucleilib.WithNetworkConfig(nucleilib.NetworkConfig{
			// Exactly these resolvers: SystemResolvers would add Go's
			// resolver as a fallback, and isolate keeps fastdialer from
			// adding resolv.conf's.
			InternalResolversList: cfg.Resolvers,
			Timeout:               secs,
			Retries:               1,
			MaxHostError:          30,
		}),
		// Local file access stays off; local network access must be
		// allowed, or targets on private and loopback addresses are
		// refused.
		nucleilib.WithSandboxOptions(false, false),
		nucleilib.WithConcurrency(nucleilib.Concurrency{
			TemplateConcurrency:           conc,
			HostConcurrency:               conc,
			HeadlessHostConcurrency:       1,
			HeadlessTemplateConcurrency:   1,
			JavascriptTemplateConcurrency: 1,
			TemplatePayloadConcurrency:    conc,
			ProbeConcurrency:              conc,
		}),
		nucleilib.WithTemporaryDirectory(stateDir),
		nucleilib.WithVerbosity(nucleilib.VerbosityOptions{Silent: true}),
	}
	if cfg.RateLimit > 0 {
		opts = append(opts, nucleilib.WithGlobalRateLimitCtx(ctx, cfg.RateLimit, time.Second))
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, nucleilib.WithHeaders(cfg.Headers))
	}
	return opts, nil
}

// prepareConfigDir writes the ignore file every engine reads from nuclei's
// configuration directory: without it each engine logs an error, and an
// empty list means no template is excluded behind the configuration's back.
// (The engine writes its reporting-config.yaml itself.)
func prepareConfigDir() error {
	dir := config.DefaultConfig.GetConfigDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating nuclei config directory: %w", err)
	}
	p := filepath.Join(dir, config.NucleiIgnoreFileName)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.WriteFile(p, []byte("tags: []\nfiles: []\n"), 0o600); err != nil {
		return fmt.Errorf("writing nuclei ignore file: %w", err)
	}
	return nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// encodeEvent turns ev into one redacted JSON line.
func encodeEvent(ev *output.ResultEvent, red *redactor, keepRequestResponse bool) ([]byte, error) {
	e := *ev
	// The whole template, base64-encoded, on every line: large and of no
	// use to the parser.
	e.TemplateEncoded = ""
	if !keepRequestResponse {
		e.Request, e.Response, e.CURLCommand = "", "", ""
	}
	raw, err := json.Marshal(&e)
	if err != nil {
		return nil, fmt.Errorf("encoding nuclei result: %w", err)
	}
	if red.empty() {
		return append(raw, '\n'), nil
	}
	// Redact every string, keys included, wherever the secret sits. Going
	// through the decoded form (rather than the bytes) means JSON escaping
	// cannot hide a secret from the replacement.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("re-reading nuclei result: %w", err)
	}
	raw, err = json.Marshal(red.walk(v))
	if err != nil {
		return nil, fmt.Errorf("encoding nuclei result: %w", err)
	}
	return append(raw, '\n'), nil
}
