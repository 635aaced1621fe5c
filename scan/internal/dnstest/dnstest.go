// Package dnstest serves DNS on loopback for the scanner tests, so that
// amass and nuclei resolve test names without touching any real resolver.
package dnstest

import (
	"net"
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
