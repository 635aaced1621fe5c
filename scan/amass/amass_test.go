package amass_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/starpipe/starpipe/scan/amass"
	"github.com/starpipe/starpipe/scan/internal/dnstest"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
)

// The enumeration runs as the worker runs it: in the real
// starpipe-scanner, a child process with its HOME and TMPDIR inside the
// test's temporary directory. This test binary does not link amass.

// zone is the test domain's authoritative data: name -> A record.
var zone = map[string]string{
	"example.test.":      "127.0.0.10",
	"www.example.test.":  "127.0.0.11",
	"api.example.test.":  "127.0.0.12",
	"mail.example.test.": "127.0.0.13",
}

func startDNS(t *testing.T, ip string, h dns.Handler) string { return dnstest.Serve(t, ip, h) }

// TestRunBruteForce is the one enumeration of this package's tests (each
// costs amass's ~10 s idle tail).
func TestRunBruteForce(t *testing.T) {
	z := &dnstest.Zone{Apex: "example.test.", A: zone, MX: map[string]string{"example.test.": "mail.example.test."}}
	// Not 127.0.0.1: amass keys resolvers by IP, and another test package
	// may run a DNS server there at the same time.
	resolver := startDNS(t, "127.0.0.3", z)
	state := t.TempDir()
	home := t.TempDir()

	var buf bytes.Buffer
	start := time.Now()
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: home}
	err := r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindAmass, Network: loopback, Amass: &amass.Config{
		Domains:   []string{"Example.Test."},
		Resolvers: []string{resolver},
		Wordlist:  []string{"www", "api", "mail", "dev", "nothere"},
		StateDir:  state,
		Timeout:   2 * time.Minute,
	}}, &buf)
	if err != nil {
		t.Fatalf("amass enumeration: %v", err)
	}
	t.Logf("enumeration took %v; output:\n%s", time.Since(start).Round(time.Millisecond), buf.String())

	got := map[string][]string{}
	var names []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var r amass.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, sc.Text())
		}
		if r.Domain != "example.test" || r.Tag != "dns" || !slices.Equal(r.Sources, []string{"Brute Forcing"}) {
			t.Errorf("unexpected record fields: %+v", r)
		}
		for _, a := range r.Addresses {
			got[r.Name] = append(got[r.Name], a.IP)
		}
		names = append(names, r.Name)
	}
	want := map[string][]string{}
	for n, a := range zone {
		want[strings.TrimSuffix(n, ".")] = []string{a}
	}
	for n, a := range want {
		if !slices.Equal(got[n], a) {
			t.Errorf("%s: addresses %v, want %v", n, got[n], a)
		}
	}
	for _, n := range names {
		if _, ok := want[n]; !ok {
			t.Errorf("unexpected name %q", n)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("names not sorted: %v", names)
	}

	// Only the test zone was asked about: no detection or probe names
	// outside it reached the resolver.
	for _, q := range z.Asked() {
		if !dns.IsSubDomain("example.test.", q) {
			t.Errorf("resolver asked about %q", q)
		}
	}
	// The run's graph database is gone, and so is the scanner's run
	// directory.
	for _, dir := range []string{state, home} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s not cleaned: %v", dir, entries)
		}
	}
}

func TestCheckRefusesBadConfig(t *testing.T) {
	ok := amass.Config{Domains: []string{"example.test"}, Resolvers: []string{"127.0.0.3:53"}, Wordlist: []string{"www"}}
	cases := map[string]struct {
		mod  func(*amass.Config)
		want error
	}{
		"no domains":   {func(c *amass.Config) { c.Domains = nil }, amass.ErrNoDomains},
		"no resolvers": {func(c *amass.Config) { c.Resolvers = nil }, amass.ErrNoResolvers},
		"passive":      {func(c *amass.Config) { c.Passive = true }, amass.ErrPassive},
		"nothing":      {func(c *amass.Config) { c.Wordlist = nil }, amass.ErrNothingToProbe},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			if _, err := cfg.Check(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	cfg := ok
	cfg.Resolvers = []string{"dns.example.test:53"}
	if _, err := cfg.Check(); err == nil {
		t.Fatal("a resolver given by name was accepted")
	}
	cfg = ok
	cfg.Domains = []string{"Example.Test.", "example.test", " "}
	cfg.Resolvers = []string{"127.0.0.3"}
	got, err := cfg.Check()
	if err != nil || !slices.Equal(got.Domains, []string{"example.test"}) || !slices.Equal(got.Resolvers, []string{"127.0.0.3:53"}) {
		t.Fatalf("Check = %+v, %v; want one lower-case domain and the resolver with port 53", got, err)
	}
}

// TestScannerReportsBadConfig checks that the scanner refuses a bad
// configuration with the check's message, as a failed scan.
func TestScannerReportsBadConfig(t *testing.T) {
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: t.TempDir()}
	err := r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindAmass, Network: loopback, Amass: &amass.Config{Domains: []string{"example.test"}}}, &bytes.Buffer{})
	if !errors.Is(err, scanexec.ErrFailed) || !strings.Contains(err.Error(), amass.ErrNoResolvers.Error()) {
		t.Fatalf("err = %v, want a failed scan naming %q", err, amass.ErrNoResolvers)
	}
}

// loopback is the network policy of the tests' scans: their targets and
// resolvers are on loopback, which the default policy refuses.
var loopback = &scanexec.Network{Allow: []string{"127.0.0.0/8", "::1/128"}}
