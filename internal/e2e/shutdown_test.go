package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIngestReplicaSIGTERMMidIngest splits the roles over two processes:
// one with api and relay takes a 100k-finding upload, one with only ingest
// stores it. The ingest replica binds no port; SIGTERM part-way through
// the run makes it exit 0 (the daemon exits non-zero when a part outlives
// shutdown_timeout), and a restart with the same configuration completes
// the run with exact counts.
func TestIngestReplicaSIGTERMMidIngest(t *testing.T) {
	const n, batch = 100_000, 500
	const timeout = 20 * time.Second
	t.Parallel()
	r := newRig(t)
	front := r.newReplica("api-relay", replicaOptions{roles: []string{"api", "relay"}, batchSize: batch, shutdownTimeout: timeout})
	ingest := r.newReplica("ingest", replicaOptions{roles: []string{"ingest"}, batchSize: batch, shutdownTimeout: timeout})
	r.serve(front)
	r.waitReady(front)
	assertListens(t, front)
	r.serve(ingest)
	token := r.token(front, "ci", "ingest")

	const scope = "git.example.com/acme/sigterm"
	began := time.Now()
	id, _, err := upload(t.Context(), []string{"http://" + front.listen}, token, scope, genSARIF("synthscan", n))
	if err != nil {
		t.Fatal(err)
	}
	stored := func() int { return r.count(`SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, id) }
	t.Logf("%v: uploaded", time.Since(began).Round(time.Millisecond))
	r.waitFor("the ingest replica to store part of the run", func() bool { return stored() >= 5 })
	t.Logf("%v: part-way stored", time.Since(began).Round(time.Millisecond))

	// Checked while the replica is demonstrably up and consuming.
	assertNoListener(t, ingest)

	code, took := r.terminate(ingest.p, timeout+time.Minute)
	at := stored()
	t.Logf("SIGTERM: exit %d after %v with %d of %d batches stored", code, took.Round(time.Millisecond), at, n/batch)
	if code != 0 {
		t.Fatalf("ingest replica exited %d after SIGTERM, want 0", code)
	}
	if at >= n/batch {
		t.Fatal("the run was stored completely before SIGTERM took effect: the test proves nothing")
	}

	r.serve(ingest)
	restarted := time.Now()
	r.waitFor("the restarted replica to store more", func() bool { return stored() > at })
	t.Logf("restarted replica stored its first batch after %v", time.Since(restarted).Round(time.Millisecond))
	var status string
	r.waitFor("the run to finish after the restart", func() bool {
		var err error
		if status, err = runStatus(t.Context(), "http://"+front.listen, token, id); err != nil {
			t.Fatal(err)
		}
		return status != "received" && status != "queued" && status != "processing"
	})
	t.Logf("restarted replica finished the run in %v", time.Since(restarted).Round(time.Millisecond))
	if status != "succeeded" {
		t.Fatalf("run %s ended %s after the restart", id, status)
	}
	got := map[string]int{
		"findings":         r.count(`SELECT count(*) FROM findings WHERE scope = $1`, scope),
		"observations":     r.count(`SELECT count(*) FROM observations WHERE run_id = $1::uuid`, id),
		"batches":          r.count(`SELECT count(*) FROM run_batches WHERE run_id = $1::uuid`, id),
		"batches_stored":   r.count(`SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, id),
		"batches_expected": r.count(`SELECT coalesce(batches_expected, -1) FROM scan_runs WHERE id = $1::uuid`, id),
		"opened":           r.count(`SELECT count(*) FROM activity_log WHERE run_id = $1::uuid AND action = 'finding.opened'`, id),
	}
	want := map[string]int{"findings": n, "observations": n, "batches": n / batch, "batches_stored": n / batch, "batches_expected": n / batch, "opened": n}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the restart: %v, want %v", got, want)
	}
	assertNoListener(t, ingest)

	for _, rep := range []*replica{ingest, front} {
		if code, took := r.terminate(rep.p, timeout+time.Minute); code != 0 {
			t.Errorf("%s exited %d after SIGTERM (in %v), want 0", rep.name, code, took.Round(time.Millisecond))
		}
	}
}

// assertNoListener checks that rep's process binds no port: its listen
// address is free and refuses /healthz, and (on Linux, where /proc tells)
// the process owns no listening TCP socket on any address.
func assertNoListener(t *testing.T, rep *replica) {
	t.Helper()
	l, err := net.Listen("tcp", rep.listen)
	if err != nil {
		t.Fatalf("%s: its listen address %s is taken: %v", rep.name, rep.listen, err)
	}
	l.Close()
	res, err := http.Get("http://" + rep.listen + "/healthz")
	if err == nil {
		res.Body.Close()
		t.Fatalf("%s: GET /healthz on %s answered %s, want connection refused", rep.name, rep.listen, res.Status)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%s: GET /healthz on %s: %v, want connection refused", rep.name, rep.listen, err)
	}
	if runtime.GOOS != "linux" {
		return
	}
	ports, err := listeningPorts(rep.p.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("%s: reading its sockets from /proc: %v", rep.name, err)
	}
	if len(ports) > 0 {
		t.Fatalf("%s listens on TCP port(s) %v, want none", rep.name, ports)
	}
}

// assertListens checks that listeningPorts sees rep's HTTP listener: the
// control that keeps assertNoListener from passing on a blind check.
func assertListens(t *testing.T, rep *replica) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	ports, err := listeningPorts(rep.p.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("%s: reading its sockets from /proc: %v", rep.name, err)
	}
	_, port, _ := net.SplitHostPort(rep.listen)
	if fmt.Sprint(ports) != "["+port+"]" {
		t.Fatalf("%s listens on TCP port(s) %v, want only %s", rep.name, ports, port)
	}
}

// listeningPorts returns the TCP ports pid listens on, from the socket
// inodes of its file descriptors and the kernel's TCP tables.
func listeningPorts(pid int) ([]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				ports = append(ports, int(p))
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return ports, nil
}
