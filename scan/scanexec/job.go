// Package scanexec runs scanners (nuclei, amass, a code analyser) in a
// child process, the starpipe-scanner program, and never in the caller's.
//
// Why a child: nuclei's packages write files under $HOME, $XDG_CONFIG_HOME
// and $TMPDIR while they initialise, before main runs, and both nuclei and
// amass can panic or leak in ways that would take every role of the daemon
// down with them. The program that links them (cmd/starpipe-scanner) is
// started per scan with an explicit, minimal environment: PATH, a HOME and
// a TMPDIR of its own inside a fresh directory under the scan home, and
// nothing of the daemon's (no STARPIPE_* settings, no database URL, no
// master key). The job, credentials included, goes on its standard input
// as one JSON document; the scanner's output comes back on its standard
// output, bounded in size; its standard error is kept as a tail of lines
// for error messages. The child leads a process group of its own, which is
// killed whole on timeout or cancellation.
//
// This package imports nothing heavy: the daemon links it, and so do the
// tests that drive the real scanners through the child.
package scanexec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/scan/amass"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/nuclei"
)

// ProtocolVersion is the version of the job and output protocol between
// the worker and starpipe-scanner. It changes whenever Job or the meaning
// of the exit codes changes; a worker refuses a scanner that reports
// another version, so a daemon upgraded without its scanner (or the
// reverse) fails its scans clearly instead of misreading them.
//
// Version 2: the job carries the network policy (Job.Network), which the
// scanner enforces at connect time; a version-1 scanner would ignore it.
const ProtocolVersion = 2

// BinaryName is the scanner program's file name.
const BinaryName = "starpipe-scanner"

// Kind selects the scanner a Job runs.
type Kind string

// Job kinds.
const (
	KindNuclei Kind = "nuclei"
	KindAmass  Kind = "amass"
	KindCode   Kind = "code"
	// KindCrashTest makes the scanner crash in the way CrashTest says. The
	// scanner accepts it only when TestHooksVar is set in its environment,
	// which the worker never does: it exists so that tests can check how
	// a real scanner process that panics, is killed or floods its output
	// is handled.
	KindCrashTest Kind = "crash-test"
)

// TestHooksVar, set to "1" in the scanner's environment (Runner.Env),
// enables KindCrashTest.
const TestHooksVar = "STARPIPE_SCANNER_TEST_HOOKS"

// Crash-test modes.
const (
	CrashPanic = "panic" // an unrecovered panic in a goroutine
	CrashKill  = "kill"  // the scanner sends itself SIGKILL
	CrashHang  = "hang"  // blocks for ever, ignoring SIGTERM, with a helper process in its group
	CrashFlood = "flood" // writes to standard output without end
)

// Job is what the scanner is asked to do: exactly one of the sections,
// the one its Kind names. Secrets (nuclei headers, the clone token) travel
// in it, on the scanner's standard input, never in its arguments or
// environment.
type Job struct {
	Protocol int            `json:"protocol"`
	Kind     Kind           `json:"kind"`
	Nuclei   *nuclei.Config `json:"nuclei,omitempty"`
	Amass    *amass.Config  `json:"amass,omitempty"`
	// Code runs a code analyser in a checkout. The command comes from the
	// schedule today; admin-defined analyzers will fill this section from
	// the daemon's configuration instead, without changing the protocol.
	Code      *code.Config `json:"code,omitempty"`
	CrashTest *CrashTest   `json:"crash_test,omitempty"`
	// Network is where the scan may connect (scan.allow_networks and
	// scan.allow_public). The scanner checks every address it connects
	// to against it, whatever the kind: nil means the default policy,
	// public addresses only.
	Network *Network `json:"network,omitempty"`
}

// Network is a netpolicy.Policy in the job's JSON form.
type Network struct {
	// Allow lists the CIDRs scans may reach beyond the public internet.
	Allow []string `json:"allow,omitempty"`
	// DenyPublic limits scans to Allow.
	DenyPublic bool `json:"deny_public,omitempty"`
}

// NetworkOf returns p in the job's form (nil p: the default policy).
func NetworkOf(p *netpolicy.Policy) *Network {
	o := p.Options()
	n := &Network{DenyPublic: o.DenyPublic}
	for _, a := range o.Allow {
		n.Allow = append(n.Allow, a.String())
	}
	return n
}

// Policy rebuilds the policy; a nil n gives the default policy.
func (n *Network) Policy() (*netpolicy.Policy, error) {
	if n == nil {
		return netpolicy.New(netpolicy.Options{}), nil
	}
	allow, err := netpolicy.ParsePrefixes(n.Allow)
	if err != nil {
		return nil, fmt.Errorf("%w: network.allow%v", ErrInvalidJob, err)
	}
	return netpolicy.New(netpolicy.Options{Allow: allow, DenyPublic: n.DenyPublic}), nil
}

// CrashTest describes a KindCrashTest job.
type CrashTest struct {
	Mode string `json:"mode"`
}

// ErrInvalidJob marks a Job that names no scanner or the wrong section.
var ErrInvalidJob = errors.New("invalid scanner job")

// Validate checks that the job's section matches its kind. It does not
// check the section itself: the scanner does, with the engine's own
// checks.
func (j Job) Validate() error {
	set := 0
	for _, present := range []bool{j.Nuclei != nil, j.Amass != nil, j.Code != nil, j.CrashTest != nil} {
		if present {
			set++
		}
	}
	var ok bool
	switch j.Kind {
	case KindNuclei:
		ok = j.Nuclei != nil
	case KindAmass:
		ok = j.Amass != nil
	case KindCode:
		ok = j.Code != nil
	case KindCrashTest:
		ok = j.CrashTest != nil
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidJob, j.Kind)
	}
	if !ok || set != 1 {
		return fmt.Errorf("%w: kind %s needs its own section and no other", ErrInvalidJob, j.Kind)
	}
	if _, err := j.Network.Policy(); err != nil {
		return err
	}
	return nil
}

// redactor returns a function that removes the job's secrets from text
// (the scanner's diagnostics, which end up in the ledger and the logs).
func (j Job) redactor() func(string) string {
	var secrets []string
	var headers *nuclei.Redactor
	if j.Nuclei != nil && len(j.Nuclei.Headers) > 0 {
		// Malformed headers are refused by the scanner; their values are
		// still scrubbed below, whole.
		if r, err := nuclei.NewRedactor(j.Nuclei.Headers); err == nil {
			headers = r
		} else {
			secrets = append(secrets, j.Nuclei.Headers...)
		}
	}
	if j.Code != nil && j.Code.Token != "" {
		secrets = append(secrets, j.Code.Token)
	}
	return func(s string) string {
		if headers != nil {
			s = headers.Redact(s)
		}
		for _, sec := range secrets {
			if sec != "" {
				s = strings.ReplaceAll(s, sec, nuclei.Redacted)
			}
		}
		return s
	}
}
