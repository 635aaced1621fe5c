package amass

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/starpipe/starpipe/scan/internal/dnstest"
)

// zone is the test domain's authoritative data: name -> A record.
var zone = map[string]string{
	"example.test.":      "127.0.0.10",
	"www.example.test.":  "127.0.0.11",
	"api.example.test.":  "127.0.0.12",
	"mail.example.test.": "127.0.0.13",
}

// zoneServer answers for example.test from zone and records every
// question; any other name is NXDOMAIN.
type zoneServer struct {
	mu        sync.Mutex
	questions []string
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.questions = append(z.questions, name)
	z.mu.Unlock()

	addr, known := zone[name]
	soa, _ := dns.NewRR("example.test. 60 IN SOA ns.example.test. admin.example.test. 1 60 60 60 60")
	switch {
	case !known:
		m.Rcode = dns.RcodeNameError
		if dns.IsSubDomain("example.test.", name) {
			m.Ns = append(m.Ns, soa)
		}
	case q.Qtype == dns.TypeA:
		rr, _ := dns.NewRR(name + " 60 IN A " + addr)
		m.Answer = append(m.Answer, rr)
	case q.Qtype == dns.TypeMX && name == "example.test.":
		rr, _ := dns.NewRR("example.test. 60 IN MX 10 mail.example.test.")
		m.Answer = append(m.Answer, rr)
	default:
		// The name exists but has no data of this type.
		m.Ns = append(m.Ns, soa)
	}
	_ = w.WriteMsg(m)
}

func (z *zoneServer) asked() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.questions...)
}

func startDNS(t *testing.T, ip string, h dns.Handler) string { return dnstest.Serve(t, ip, h) }

// TestRunBruteForce is the one enumeration of this package's tests (each
// costs amass's ~10 s idle tail).
func TestRunBruteForce(t *testing.T) {
	z := &zoneServer{}
	// Not 127.0.0.1: amass keys resolvers by IP, and another test package
	// may run a DNS server there at the same time.
	resolver := startDNS(t, "127.0.0.3", z)
	state := t.TempDir()

	var buf bytes.Buffer
	start := time.Now()
	st, err := Run(context.Background(), Config{
		Domains:   []string{"Example.Test."},
		Resolvers: []string{resolver},
		Wordlist:  []string{"www", "api", "mail", "dev", "nothere"},
		StateDir:  state,
		Timeout:   2 * time.Minute,
	}, &buf)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("enumeration took %v; output:\n%s", time.Since(start).Round(time.Millisecond), buf.String())

	got := map[string][]string{}
	var names []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var r Record
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
	if st.Names != len(names) || st.Addresses != len(want) {
		t.Errorf("stats %+v for %d names", st, len(names))
	}

	// Only the test zone was asked about: no detection or probe names
	// outside it reached the resolver.
	for _, q := range z.asked() {
		if !dns.IsSubDomain("example.test.", q) {
			t.Errorf("resolver asked about %q", q)
		}
	}
	// The run's graph database is gone.
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("state dir not cleaned: %v", entries)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	ok := Config{Domains: []string{"example.test"}, Resolvers: []string{"127.0.0.3:53"}, Wordlist: []string{"www"}}
	cases := map[string]struct {
		mod  func(*Config)
		want error
	}{
		"no domains":   {func(c *Config) { c.Domains = nil }, ErrNoDomains},
		"no resolvers": {func(c *Config) { c.Resolvers = nil }, ErrNoResolvers},
		"passive":      {func(c *Config) { c.Passive = true }, ErrPassive},
		"nothing":      {func(c *Config) { c.Wordlist = nil }, ErrNothingToProbe},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			_, err := Run(context.Background(), cfg, &bytes.Buffer{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	cfg := ok
	cfg.Resolvers = []string{"dns.example.test:53"}
	if _, err := Run(context.Background(), cfg, &bytes.Buffer{}); err == nil {
		t.Fatal("a resolver given by name was accepted")
	}
}
