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
// This package holds what describes a scan (Config, Stats, the checks and
// the redaction of credentials) and imports nothing of nuclei: the daemon
// and its tests use it freely. The engine that links the nuclei library is
// scan/nuclei/engine, and only cmd/starpipe-scanner imports it. nuclei's
// packages write files under $HOME, $XDG_CONFIG_HOME and $TMPDIR while they
// initialise, before main runs, so the process that links them must be
// started with those variables pointing at a scan home of its own: the
// worker starts the scanner as a child process through scan/scanexec.
package nuclei

import (
	"errors"
	"strings"
	"time"
)

// Defaults applied by the engine for zero Config fields.
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
	// StateDir holds the scan's temporary directory (removed when the scan
	// ends); os.TempDir() of the scanner process when empty. nuclei's
	// configuration files live under the scanner process's HOME.
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
	// Timeout bounds the whole scan (none when zero); when it expires the
	// engine returns the results seen so far and context.DeadlineExceeded.
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
	// Templates is the number of templates and workflows loaded.
	Templates int
}

// Errors returned by Check (and so before a scan starts).
var (
	ErrNoTargets   = errors.New("no targets")
	ErrNoTemplates = errors.New("no template directories")
	errBadHeader   = errors.New(`header is not "Name: value"`)
)

// Check returns cfg with its targets trimmed and deduplicated, or what is
// wrong with it: no target, no template directory, a header that is not
// "Name: value". It touches neither the disk nor the network.
func (cfg Config) Check() (Config, error) {
	cfg.Targets = dedupe(cfg.Targets)
	if len(cfg.Targets) == 0 {
		return cfg, ErrNoTargets
	}
	if len(cfg.TemplateDirs) == 0 {
		return cfg, ErrNoTemplates
	}
	if _, err := NewRedactor(cfg.Headers); err != nil {
		return cfg, err
	}
	return cfg, nil
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
