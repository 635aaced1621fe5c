package bus

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestEmbeddedFixedListenTwoClients runs the broker the way `starpipe
// broker --listen` does and has two independent clients (each its own
// producer and consumer group) exchange messages through it.
func TestEmbeddedFixedListenTwoClients(t *testing.T) {
	ctx := testCtx(t)
	port := freePort(t)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	e, err := StartEmbedded(ctx, EmbeddedConfig{
		Listen: listen, Advertise: "localhost", DataDir: filepath.Join(t.TempDir(), "kafka"),
		GroupMinSessionTimeout: 500 * time.Millisecond,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	want := "localhost:" + strconv.Itoa(port)
	if got := e.Addrs(); len(got) != 1 || got[0] != want {
		t.Fatalf("Addrs = %v, want [%s] (advertised host, bound port)", got, want)
	}

	// Each client knows only the advertised address, as another process
	// would.
	a, b := testConfig([]string{want}), testConfig([]string{want})
	a.ClientID, b.ClientID = "client-a", "client-b"
	pa, pb := newTestProducer(t, a), newTestProducer(t, b)
	if err := pa.Publish(ctx, TopicScanRequests, keyed("from-a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := pb.Publish(ctx, TopicFindingEvents, keyed("from-b", 2)); err != nil {
		t.Fatal(err)
	}
	cb := newTestConsumer(t, b, "group-b", TopicScanRequests)
	ca := newTestConsumer(t, a, "group-a", TopicFindingEvents)
	if m := fetchN(t, ctx, cb, 1)[0]; string(m.Value) != "from-a/1" {
		t.Fatalf("b read %q", m.Value)
	}
	if m := fetchN(t, ctx, ca, 1)[0]; string(m.Value) != "from-b/2" {
		t.Fatalf("a read %q", m.Value)
	}
}

func TestEmbeddedListenErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  EmbeddedConfig
		want string
	}{
		{EmbeddedConfig{Listen: "0.0.0.0:0"}, "advertise"},
		{EmbeddedConfig{Listen: ":0"}, "advertise"},
		{EmbeddedConfig{Listen: "no-port"}, "listen address"},
		{EmbeddedConfig{Listen: "127.0.0.1:0", Users: map[string]string{"u": ""}}, "needs a name and a password"},
	} {
		t.Run(fmt.Sprint(tc.cfg.Listen, tc.cfg.Users), func(t *testing.T) {
			e, err := StartEmbedded(t.Context(), tc.cfg, testLogger(t))
			if err == nil {
				e.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// The port is taken: the error says so rather than picking another.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if e, err := StartEmbedded(t.Context(), EmbeddedConfig{Listen: ln.Addr().String()}, testLogger(t)); err == nil {
		e.Close()
		t.Fatal("started on a port in use")
	}
}

// TestEmbeddedSecured: with users and TLS, clients with the credentials
// and the CA get through, others do not.
func TestEmbeddedSecured(t *testing.T) {
	ctx := testCtx(t)
	srvTLS, cliTLS := testCA(t)
	e, err := StartEmbedded(ctx, EmbeddedConfig{
		Listen: "127.0.0.1:0", TLS: srvTLS, Users: map[string]string{"ingest": "pw-1"},
		GroupMinSessionTimeout: 500 * time.Millisecond,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		cfg := testConfig(e.Addrs())
		cfg.TLS, cfg.SASL = cliTLS, SASL{Mechanism: mech, Username: "ingest", Password: "pw-1"}
		if err := Ping(ctx, cfg); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
	}
	cfg := testConfig(e.Addrs())
	cfg.TLS, cfg.SASL = cliTLS, SASL{Mechanism: SASLScramSHA512, Username: "ingest", Password: "nope"}
	p := newTestProducer(t, cfg)
	if err := p.Publish(ctx, TopicScanResults, keyed("k", 1)); err == nil || !strings.Contains(err.Error(), "kafka.sasl") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestEmbeddedDataDirPrivate(t *testing.T) {
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "kafka")
	// Left world-readable by an earlier version.
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old", "segment"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := StartEmbedded(ctx, EmbeddedConfig{DataDir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p := NewProducer(testConfig(e.Addrs()), testLogger(t))
	if err := p.Publish(ctx, TopicScanResults, keyed("k", 1)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	e.Close()

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, "old", "segment"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("existing file mode %v, want 0600", fi.Mode().Perm())
	}
	// And the broker wrote its state where only the owner can reach it.
	n := 0
	filepath.WalkDir(dir, func(string, fs.DirEntry, error) error { n++; return nil })
	if n < 3 {
		t.Fatalf("broker wrote nothing to %s", dir)
	}
}
