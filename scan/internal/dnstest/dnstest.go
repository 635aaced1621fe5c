// Package dnstest serves DNS on loopback for the scanner tests, so that
// amass and nuclei resolve test names without touching any real resolver.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Serve answers UDP DNS at ip and a free port with h until the test ends,
// and returns the address. Use 127.0.0.2, 127.0.0.3, ... rather than
// 127.0.0.1: amass keys its resolvers by IP only, so two servers on one IP
// (in one test binary or in parallel packages) would collapse into one.
func Serve(t testing.TB, ip string, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Zone answers authoritatively for one test domain: A records from A, MX
// records from MX, NXDOMAIN (with the SOA) for other names under Apex, and
// it records every question so a test can assert what was asked.
type Zone struct {
	Apex string            // e.g. "example.test."
	A    map[string]string // fully qualified name -> IPv4 address
	MX   map[string]string // fully qualified name -> exchange

	mu        sync.Mutex
	questions []string
}

// ServeDNS implements dns.Handler.
func (z *Zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
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

	addr, known := z.A[name]
	soa, _ := dns.NewRR(z.Apex + " 60 IN SOA ns." + z.Apex + " admin." + z.Apex + " 1 60 60 60 60")
	switch {
	case !known:
		m.Rcode = dns.RcodeNameError
		if dns.IsSubDomain(z.Apex, name) {
			m.Ns = append(m.Ns, soa)
		}
	case q.Qtype == dns.TypeA:
		rr, _ := dns.NewRR(name + " 60 IN A " + addr)
		m.Answer = append(m.Answer, rr)
	case q.Qtype == dns.TypeMX && z.MX[name] != "":
		rr, _ := dns.NewRR(name + " 60 IN MX 10 " + z.MX[name])
		m.Answer = append(m.Answer, rr)
	default:
		// The name exists but has no data of this type.
		m.Ns = append(m.Ns, soa)
	}
	_ = w.WriteMsg(m)
}

// Asked returns every question name received so far.
func (z *Zone) Asked() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.questions...)
}
