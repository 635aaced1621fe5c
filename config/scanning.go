package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/starpipe/starpipe/internal/netpolicy"
)

// AnalyzerConfig is one code analyser an admin allows code schedules to
// run: its argv (run without a shell in the checked-out repository) and
// its bounds. Schedules name it; they never carry a command of their own.
type AnalyzerConfig struct {
	// Command is the argv; it must write SARIF to standard output (or to
	// OutputFile). A relative program path is taken relative to the
	// checkout, so prefer names on PATH or absolute paths.
	Command []string `yaml:"command"`
	// Timeout bounds one run (the scanner's default when zero). A
	// schedule's code.timeout may lower it, never raise it.
	Timeout time.Duration `yaml:"timeout"`
	// MaxOutputBytes bounds the SARIF output (the scanner's default when
	// zero). A schedule's code.max_output_bytes may lower it.
	MaxOutputBytes int64 `yaml:"max_output_bytes"`
	// OutputFile, when set, is where (relative to the checkout) the
	// analyser writes its SARIF instead of standard output.
	OutputFile string `yaml:"output_file"`
	// Env sets variables for the analyser on top of its minimal
	// environment (PATH, HOME, TMPDIR). Values are written here by the
	// admin; nothing is passed through from the daemon's environment,
	// which holds its secrets.
	Env map[string]string `yaml:"env"`
}

// EnvList returns Env as sorted KEY=value entries.
func (a AnalyzerConfig) EnvList() []string {
	out := make([]string, 0, len(a.Env))
	for k, v := range a.Env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// ScanConfig configures how the worker runs scanners and bounds where
// scans may go.
type ScanConfig struct {
	// ScannerPath is the starpipe-scanner binary the worker starts for
	// every scan: a path, or a name looked up in PATH. Empty: the one next
	// to the starpipe executable, then the one in PATH.
	ScannerPath string `yaml:"scanner_path"`
	// CodeWorkDir is where code scans check repositories out. Empty: the
	// scanner's own temporary directory, or, when the daemon is root,
	// /var/tmp (the analyser then runs as starpipe-scan, which must be
	// able to traverse every directory above it).
	CodeWorkDir string `yaml:"code_work_dir"`
	// AllowNetworks lists CIDRs (or single addresses) scans may reach
	// beyond the public internet: loopback, private, link-local, CGNAT
	// and the other non-public ranges are refused unless listed here.
	AllowNetworks []string `yaml:"allow_networks"`
	// AllowPublic lets scans reach public addresses (the default). Set it
	// to false to limit scans to AllowNetworks.
	AllowPublic bool `yaml:"allow_public"`
	// MaxDuration bounds a whole scan (every step of one due time:
	// discovery, each target, each repository). A schedule's timeout may
	// lower it, never raise it. A scan that reaches it fails with a
	// "time limit" error.
	MaxDuration time.Duration `yaml:"max_duration"`
	// Concurrency is how many scans the worker runs at once, so that one
	// slow target (a tarpit) does not hold every other schedule up.
	Concurrency int `yaml:"concurrency"`
}

// Defaults of the scan section.
const (
	DefaultScanMaxDuration = 2 * time.Hour
	DefaultScanConcurrency = 2
	// maxScanConcurrency bounds scan.concurrency: each scan is a scanner
	// process of a few hundred MB.
	maxScanConcurrency = 64
)

// AmassConfig is the admin side of subdomain discovery.
type AmassConfig struct {
	// WordlistDir holds the word lists schedules may name (by file name,
	// amass.wordlist_name). Empty: schedules can only give inline word
	// lists.
	WordlistDir string `yaml:"wordlist_dir"`
}

// NetworkPolicy builds the scan network policy from scan.allow_networks
// and scan.allow_public.
func (s ScanConfig) NetworkPolicy() (*netpolicy.Policy, error) {
	allow, err := netpolicy.ParsePrefixes(s.AllowNetworks)
	if err != nil {
		return nil, fmt.Errorf("scan.allow_networks%w", err)
	}
	return netpolicy.New(netpolicy.Options{Allow: allow, DenyPublic: !s.AllowPublic}), nil
}

// AnalyzerNames returns the configured analyser names, sorted.
func (c *Config) AnalyzerNames() []string {
	out := make([]string, 0, len(c.Analyzers))
	for n := range c.Analyzers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

var (
	analyzerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedEnv are the variables the scanner sets itself; an analyser
// overriding them could escape its scratch directories.
var reservedEnv = map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true}

func (c *Config) validateScanning() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for _, name := range c.AnalyzerNames() {
		a := c.Analyzers[name]
		key := "analyzers." + name
		if !analyzerNameRE.MatchString(name) {
			bad(key, "name must be lower-case letters, digits, '.', '_' or '-' (at most 63)")
		}
		switch {
		case len(a.Command) == 0:
			bad(key+".command", "required (the analyser's argv, e.g. [gosec, -fmt, sarif, ./...])")
		case strings.TrimSpace(a.Command[0]) == "":
			bad(key+".command[0]", "empty program name")
		}
		for i, arg := range a.Command {
			if strings.ContainsRune(arg, 0) {
				bad(fmt.Sprintf("%s.command[%d]", key, i), "contains a NUL byte")
			}
		}
		if a.Timeout < 0 {
			bad(key+".timeout", "negative")
		}
		if a.MaxOutputBytes < 0 {
			bad(key+".max_output_bytes", "negative")
		}
		if a.OutputFile != "" && (filepath.IsAbs(a.OutputFile) || slices.Contains(strings.Split(filepath.ToSlash(a.OutputFile), "/"), "..")) {
			bad(key+".output_file", "must be a path inside the checkout")
		}
		for k, v := range a.Env {
			switch {
			case !envNameRE.MatchString(k):
				bad(key+".env", "%q is not a variable name", k)
			case reservedEnv[k]:
				bad(key+".env", "%s is set by the scanner and cannot be overridden", k)
			case strings.ContainsRune(v, 0):
				bad(key+".env."+k, "contains a NUL byte")
			}
		}
	}
	if _, err := c.Scan.NetworkPolicy(); err != nil {
		bad("scan.allow_networks", "%v", strings.TrimPrefix(err.Error(), "scan.allow_networks"))
	}
	if c.Scan.MaxDuration <= 0 {
		bad("scan.max_duration", "must be positive (default %s)", DefaultScanMaxDuration)
	}
	if c.Scan.Concurrency < 1 || c.Scan.Concurrency > maxScanConcurrency {
		bad("scan.concurrency", "must be between 1 and %d (default %d)", maxScanConcurrency, DefaultScanConcurrency)
	}
	if !c.Scan.AllowPublic && len(c.Scan.AllowNetworks) == 0 {
		bad("scan.allow_public", "false with an empty scan.allow_networks leaves scans nowhere to go")
	}
	if d := c.Amass.WordlistDir; d != "" {
		if st, err := os.Stat(d); err != nil {
			bad("amass.wordlist_dir", "%v", err)
		} else if !st.IsDir() {
			bad("amass.wordlist_dir", "%s is not a directory", d)
		}
	}
	return errs
}
