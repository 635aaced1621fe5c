// Package engine runs one nuclei scan through the nuclei SDK and writes its
// results as nuclei's own JSON lines (what `nuclei -jsonl` prints: one
// output.ResultEvent per line), which is what ingest/nuclei parses.
//
// The runner is built for a daemon that must never reach beyond its
// targets: it creates one engine per scan, disables template updates and
// the SDK's version check (see isolate), keeps interactsh off unless
// the configuration asks for it, and removes every configured header value
// (scan credentials) from what it writes.
//
// Only cmd/starpipe-scanner may import this package. Linking it runs
// nuclei's package initialisation, which writes under $HOME,
// $XDG_CONFIG_HOME and $TMPDIR before main: the scanner is started by
// scan/scanexec with those pointing at a scan home of its own, and no other
// binary (the daemon, a test binary) must pay for that or be exposed to it.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/scan/nuclei"
)

// Run scans cfg.Targets with the templates in cfg.TemplateDirs and writes
// one JSON line per result to out. Lines are written as results arrive, so
// out holds everything found so far even when Run returns an error. Run is
// safe to call from several goroutines; each call has its own engine.
//
// Every connection the scan makes must be allowed by np (see
// enforceNetwork); a scan with headers (a credential) follows no
// redirect (see noRedirects).
func Run(ctx context.Context, cfg nuclei.Config, np *netpolicy.Policy, out io.Writer) (nuclei.Stats, error) {
	var st nuclei.Stats
	cfg, err := cfg.Check()
	if err != nil {
		return st, err
	}
	targets := cfg.Targets
	red, err := nuclei.NewRedactor(cfg.Headers)
	if err != nil {
		return st, err
	}
	if err := prepareConfigDir(); err != nil {
		return st, err
	}
	if err := isolate(); err != nil {
		return st, err
	}
	if err := checkResolvers(np, cfg.Resolvers); err != nil {
		return st, err
	}
	if err := checkLiteralTargets(np, targets); err != nil {
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
	opts = append(opts, enforceNetwork(np))
	if len(cfg.Headers) > 0 {
		opts = append(opts, noRedirects())
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
	st.Templates = len(engine.GetTemplates()) + len(engine.GetWorkflows())

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
func engineOptions(ctx context.Context, cfg nuclei.Config) ([]nucleilib.NucleiSDKOptions, error) {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = os.TempDir()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating nuclei state directory: %w", err)
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = nuclei.DefaultConcurrency
	}
	reqTimeout := cfg.RequestTimeout
	if reqTimeout <= 0 {
		reqTimeout = nuclei.DefaultRequestTimeout
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

// encodeEvent turns ev into one redacted JSON line.
func encodeEvent(ev *output.ResultEvent, red *nuclei.Redactor, keepRequestResponse bool) ([]byte, error) {
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
	if red.Empty() {
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
	raw, err = json.Marshal(red.Walk(v))
	if err != nil {
		return nil, fmt.Errorf("encoding nuclei result: %w", err)
	}
	return append(raw, '\n'), nil
}
