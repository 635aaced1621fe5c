package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starpipe/starpipe/store/storetest"
)

// binEnv names a starpipe binary to test instead of building one.
const binEnv = "STARPIPE_BIN"

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	builtBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	storetest.Main(m)
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// binary is the starpipe executable under test: $STARPIPE_BIN, or one
// built from this module once per test process. Either failing fails the
// test, in CI and out of it: these tests are the only check of the real
// process, so there is nothing to skip to.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(binEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("%s=%s: %v", binEnv, p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("%s=%s: %v (run `make build`)", binEnv, p, err)
		}
		return abs
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "starpipe-e2e-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "starpipe")
		// The package directory is inside the module, so the import path
		// resolves against this checkout.
		cmd := exec.Command("go", "build", "-o", builtBin, "github.com/starpipe/starpipe/cmd/starpipe")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building starpipe (set %s to use a built one): %v", binEnv, buildErr)
	}
	return builtBin
}

// rig is what the processes of one test share: the binary, a database,
// a broker process, and a home and temporary directory for the children.
type rig struct {
	t      *testing.T
	bin    string
	db     *storetest.DB // raw SQL on the test database, to check outcomes
	dbURL  string
	broker string // host:port of the broker process
	home   string
	tmp    string
	// masterKey is the vault key every replica gets, as an operator would
	// give it to all replicas of one deployment.
	masterKey string

	mu    sync.Mutex
	procs []*process // processes that must stay alive unless stopped on purpose
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st, dbURL := storetest.New(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	r := &rig{
		t: t, bin: binary(t), db: storetest.SQL(t, st), dbURL: dbURL,
		home: t.TempDir(), tmp: t.TempDir(), masterKey: base64.StdEncoding.EncodeToString(key),
	}
	r.startBroker()
	return r
}

// env is the children's environment: the test's, without any STARPIPE_
// variable (they would override the configuration files) and with HOME
// and TMPDIR inside the test's temporary directories.
func (r *rig) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "STARPIPE_") || strings.HasPrefix(name, "XDG_") || name == "HOME" || name == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+r.home, "TMPDIR="+r.tmp)
	return append(env, extra...)
}

// startBroker runs `starpipe broker` on a free loopback port and waits for
// the line that says it listens.
func (r *rig) startBroker() {
	t := r.t
	t.Helper()
	p := r.start("broker", r.env(), "broker", "--data", filepath.Join(t.TempDir(), "kafka"),
		"--listen", "127.0.0.1:0", "--partitions", "4", "--log-level", "warn", "--log-format", "text")
	line := p.out.waitLine(t, p, "brokers: ")
	r.broker = strings.TrimSpace(strings.TrimPrefix(line, "brokers: "))
	if !strings.HasPrefix(r.broker, "127.0.0.1:") || strings.Contains(r.broker, ",") {
		t.Fatalf("broker printed %q, want one loopback address", line)
	}
	r.mustStayUp(p)
}

// replica is the configuration of one `starpipe serve` process.
type replica struct {
	name   string
	cfg    string // configuration file
	listen string
	p      *process // the current process; replaced by restart
}

// replicaOptions vary the configuration file between tests.
type replicaOptions struct {
	roles           []string
	batchSize       int
	shutdownTimeout time.Duration
}

// newReplica writes a configuration file for one replica on the rig's
// database and broker, with its own state directory and listen port.
func (r *rig) newReplica(name string, o replicaOptions) *replica {
	t := r.t
	t.Helper()
	dir := t.TempDir()
	listen := freeAddr(t)
	roles, _ := json.Marshal(o.roles) // a JSON list is a YAML flow sequence
	cfg := fmt.Sprintf(`state_dir: %q
listen: %q
shutdown_timeout: %s
shutdown_delay: 0s
log: {level: warn, format: text}
database: {url: %q, max_conns: 6}
kafka: {brokers: [%q], partitions: 4, session_timeout: 6s}
ingest: {batch_size: %d}
scheduler: {enabled: true}
roles: %s
`, filepath.Join(dir, "state"), listen, o.shutdownTimeout, r.dbURL, r.broker, o.batchSize, roles)
	// The worker role looks for the scanner at start and warns without
	// one; these tests run no scans, so any built scanner will do.
	if p := os.Getenv("STARPIPE_SCANNER_BIN"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			cfg += fmt.Sprintf("scan: {scanner_path: %q}\n", abs)
		}
	}
	file := filepath.Join(dir, "starpipe.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &replica{name: name, cfg: file, listen: listen}
}

// serve starts the replica's process (again, after a kill or a stop).
func (r *rig) serve(rep *replica) {
	r.t.Helper()
	rep.p = r.start(rep.name, r.env("STARPIPE_MASTER_KEY="+r.masterKey), "serve", "-c", rep.cfg)
	r.mustStayUp(rep.p)
}

// waitReady polls the replica's /readyz until it answers 200.
func (r *rig) waitReady(rep *replica) {
	r.t.Helper()
	r.waitFor(rep.name+" to be ready", func() bool {
		res, err := http.Get("http://" + rep.listen + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// token creates an API token with `starpipe tokens create` against the
// database of rep's configuration.
func (r *rig) token(rep *replica, name, role string) string {
	t := r.t
	t.Helper()
	cmd := exec.CommandContext(t.Context(), r.bin, "tokens", "create", "-c", rep.cfg, "--name", name, "--role", role)
	cmd.Env = r.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starpipe tokens create: %v: %s", err, stderr.Bytes())
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("starpipe tokens create printed %q, want one token", out)
	}
	return tok
}

// process is a running child with its output going to the test log.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *childLog
	done chan struct{} // closed once the process was waited for
	err  error         // Wait's result, once done is closed
}

func (r *rig) start(name string, env []string, args ...string) *process {
	t := r.t
	t.Helper()
	p := &process{name: name, out: &childLog{w: t.Output(), prefix: name + ": "}, done: make(chan struct{})}
	p.cmd = exec.Command(r.bin, args...)
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	// Children never outlive the test, whatever made it end.
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// mustStayUp makes waitFor fail as soon as p exits, instead of waiting
// for a condition that a dead process will never bring about.
func (r *rig) mustStayUp(p *process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// mayStop takes p off the list mustStayUp keeps, before the test stops it.
func (r *rig) mayStop(p *process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, q := range r.procs {
		if q == p {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			return
		}
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (r *rig) kill(p *process) {
	r.t.Helper()
	r.mayStop(p)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	<-p.done
}

// terminate sends SIGTERM and returns the exit status and how long the
// process took to exit. The daemon itself enforces shutdown_timeout (it
// exits non-zero when a part did not stop in time); hangAfter only keeps a
// hung process from hanging the test.
func (r *rig) terminate(p *process, hangAfter time.Duration) (int, time.Duration) {
	t := r.t
	t.Helper()
	r.mayStop(p)
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(hangAfter):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s still running %v after SIGTERM; killed", p.name, hangAfter)
	}
	took := time.Since(began)
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, took
	case errors.As(p.err, &ee):
		return ee.ExitCode(), took
	default:
		t.Fatalf("waiting for %s: %v", p.name, p.err)
		return -1, took
	}
}

// waitFor polls cond until it holds. It fails the test at once when a
// process that must stay up exited, and after a deadline meant to catch
// a hang, not a slow machine.
func (r *rig) waitFor(what string, cond func() bool) {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		r.mu.Lock()
		for _, p := range r.procs {
			if p.exited() {
				r.mu.Unlock()
				t.Fatalf("waiting for %s: %s exited: %v", what, p.name, p.err)
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// count runs a query that returns one integer.
func (r *rig) count(sql string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.db.QueryRow(r.t.Context(), sql, args...).Scan(&n); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// upload posts a SARIF file to POST /v1/runs of the first replica in
// bases and returns the run id. A replica that is down or answers 5xx is
// what a load balancer would route around: the upload moves on to the
// next one. A transport error after the server committed the run leaves a
// run the client never heard of; the checks count runs from the database,
// so such a run must finish like any other.
func upload(ctx context.Context, bases []string, token, scope string, body []byte) (id string, tries int, err error) {
	for tries = 1; tries <= 30; tries++ {
		base := bases[(tries-1)%len(bases)]
		var retry bool
		id, retry, err = postRun(ctx, base, token, scope, body)
		if err == nil || !retry {
			return id, tries, err
		}
		select {
		case <-ctx.Done():
			return "", tries, ctx.Err()
		case <-time.After(100 * time.Millisecond): // a retry's pause, not a synchronisation
		}
	}
	return "", tries, err
}

func postRun(ctx context.Context, base, token, scope string, body []byte) (id string, retry bool, err error) {
	u := base + "/v1/runs?" + url.Values{"scope": {scope}, "filename": {"soak.sarif"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/sarif+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", ctx.Err() == nil, fmt.Errorf("POST %s: %w", u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusAccepted {
		return "", res.StatusCode >= 500, fmt.Errorf("POST %s: %s: %s", u, res.Status, b)
	}
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		return "", false, fmt.Errorf("POST %s: answer %s has no run id (%v)", u, b, err)
	}
	return v.ID, false, nil
}

// runStatus is GET /v1/runs/{id}'s status field.
func runStatus(ctx context.Context, base, token, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/runs/"+id, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/runs/%s: %s: %s", id, res.Status, b)
	}
	var v struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("GET /v1/runs/%s: %w", id, err)
	}
	return v.Status, nil
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// childLog copies a child's output to the test log line by line, with the
// child's name in front, and lets the test wait for a line.
type childLog struct {
	w      io.Writer
	prefix string

	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced when a line arrives
}

func (c *childLog) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, b...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := string(c.partial[:i])
		c.partial = c.partial[i+1:]
		c.lines = append(c.lines, line)
		fmt.Fprintf(c.w, "%s%s\n", c.prefix, line)
	}
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	return len(b), nil
}

// waitLine returns the first line of p's output that starts with prefix.
func (c *childLog) waitLine(t *testing.T, p *process, prefix string) string {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			if strings.HasPrefix(l, prefix) {
				c.mu.Unlock()
				return l
			}
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			t.Fatalf("%s exited before printing %q: %v", p.name, prefix, p.err)
		case <-deadline:
			t.Fatalf("%s printed no line starting %q", p.name, prefix)
		}
	}
}

// genSARIF is a SARIF log from tool with n distinct results.
func genSARIF(tool string, n int) []byte {
	var b bytes.Buffer
	b.Grow(n*420 + 4096)
	const rules = 20
	fmt.Fprintf(&b, `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":%q,"version":"1.0","rules":[`, tool)
	sev := []string{"9.8", "7.5", "5.3", "3.1", "8.1"}
	for r := range rules {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"SYN%03d","shortDescription":{"text":"Synthetic rule %d"},"properties":{"security-severity":%q,"tags":["security","external/cwe/cwe-79"]}}`, r, r, sev[r%len(sev)])
	}
	b.WriteString(`]}},"results":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"ruleId":"SYN%03d","level":"warning","message":{"text":"Synthetic finding %d."},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"src/pkg%d/file%d.go"},"region":{"startLine":%d}}}],"partialFingerprints":{"primaryLocationLineHash":"%016x:1"}}`,
			i%rules, i, i%97, i, i%5000+1, uint64(i)*0x9e3779b97f4a7c15)
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}
