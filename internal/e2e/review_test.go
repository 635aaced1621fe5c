package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOwnerReviewAgainstDaemon is issue 12's acceptance against a real
// `starpipe serve`: an admin creates an AIS owner and a token acting as
// her (POST /v1/users, POST /v1/tokens with "user"); a code scan (AIS
// findings) and an external scan (a TVM-only finding) are uploaded; the
// owner, with `starpipe findings review`, marks an AIS finding false
// positive and is refused the TVM-only one (403); a rescan leaves the
// false positive alone; GET /v1/activity/export verifies with `starpipe
// activity verify`, and one changed byte makes it fail naming that row.
func TestOwnerReviewAgainstDaemon(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rep := r.newReplica("serve", replicaOptions{roles: allRoles, batchSize: 100, shutdownTimeout: 20 * time.Second})
	r.serve(rep)
	r.waitReady(rep)
	base := "http://" + rep.listen
	admin := r.token(rep, "e2e-admin", "admin")
	c := &apiCaller{t: t, base: base}

	// An admin creates the owner and a token that acts as her.
	c.must(admin, http.MethodPost, "/v1/users", map[string]any{
		"name": "ann", "email": "ann@example.com", "role": "owner", "domains": []string{"AIS"},
	}, http.StatusCreated, nil)
	var tok struct{ Token, Role, User string }
	c.must(admin, http.MethodPost, "/v1/tokens", map[string]any{"name": "ann-cli", "user": "ann"}, http.StatusCreated, &tok)
	if tok.Role != "owner" || tok.User != "ann" {
		t.Fatalf("user token = role %q user %q, want owner acting as ann", tok.Role, tok.User)
	}
	ann := tok.Token

	// A code scan: every finding is evidence for AIS controls. An
	// external scan of a file-located result without CWE: TVM only.
	const codeScope, extScope = "git.example.com/acme/shop", "https://shop.example.com"
	code := genSARIF("semgrep", 3)
	c.waitRun(admin, c.upload(admin, codeScope, "code", code), r)
	c.waitRun(admin, c.upload(admin, extScope, "external", []byte(tvmOnlySARIF)), r)

	var codeList, extList findingsPage
	c.must(admin, http.MethodGet, "/v1/findings?"+url.Values{"scope": {codeScope}}.Encode(), nil, http.StatusOK, &codeList)
	c.must(admin, http.MethodGet, "/v1/findings?"+url.Values{"scope": {extScope}}.Encode(), nil, http.StatusOK, &extList)
	if len(codeList.Items) != 3 || len(extList.Items) != 1 {
		t.Fatalf("findings: %d code, %d external; want 3 and 1", len(codeList.Items), len(extList.Items))
	}
	aisF, tvmF := codeList.Items[0], extList.Items[0]
	if !aisF.hasDomain("AIS") || !aisF.ownedBy("ann") {
		t.Fatalf("code finding %d: controls %v, owners %v; want an AIS control owned by ann", aisF.ID, aisF.Controls, aisF.Owners)
	}
	if tvmF.hasDomain("AIS") || !tvmF.hasDomain("TVM") || tvmF.ownedBy("ann") {
		t.Fatalf("external finding %d: controls %v, owners %v; want TVM only, not ann's", tvmF.ID, tvmF.Controls, tvmF.Owners)
	}

	// The owner decides through the CLI.
	cli := func(args ...string) (string, string, error) {
		cmd := exec.CommandContext(t.Context(), r.bin, append(args, "--server", base)...)
		cmd.Env = r.env("STARPIPE_TOKEN=" + ann)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	aisID, tvmID := strconv.FormatInt(aisF.ID, 10), strconv.FormatInt(tvmF.ID, 10)
	if out, stderr, err := cli("findings", "review", aisID, "--state", "false_positive", "--justification", "code_not_reachable",
		"--comment", "test route only"); err != nil || !strings.Contains(out, "false_positive recorded") {
		t.Fatalf("owner review of AIS finding %s: %v: %s %s", aisID, err, out, stderr)
	}
	if out, stderr, err := cli("findings", "review", tvmID, "--state", "false_positive", "--justification", "code_not_reachable"); err == nil ||
		!strings.Contains(stderr, "403") {
		t.Fatalf("owner review of TVM-only finding %s: err %v, %s %s; want a failure with 403", tvmID, err, out, stderr)
	}
	// The API says the same without the CLI in between.
	c.must(ann, http.MethodPost, "/v1/findings/"+tvmID+"/review", map[string]string{"state": "confirmed"}, http.StatusForbidden, nil)
	if out, stderr, err := cli("findings", "list", "--owner", "me", "--review", "untriaged", "--json"); err != nil ||
		strings.Count(out, "\n") != 2 || strings.Contains(out, `"id":`+aisID+",") {
		t.Fatalf("owner queue after the decision: %v: %q %s; want the 2 other AIS findings", err, out, stderr)
	}

	// A rescan that sees the finding again leaves the decision alone.
	c.waitRun(admin, c.upload(admin, codeScope, "code", code), r)
	var after apiFinding
	c.must(admin, http.MethodGet, "/v1/findings/"+aisID, nil, http.StatusOK, &after)
	if after.Review != "false_positive" {
		t.Fatalf("after the rescan finding %s is %q, want false_positive", aisID, after.Review)
	}
	if n := r.count(`SELECT count(*) FROM activity_log WHERE action = 'finding.reviewed' AND subject_id = $1 AND actor = 'ann'`, aisID); n != 1 {
		t.Fatalf("%d review rows by ann for finding %s, want 1", n, aisID)
	}

	// The export verifies; one changed byte in ann's row breaks it there.
	export := c.get(admin, "/v1/activity/export")
	dir := t.TempDir()
	good := filepath.Join(dir, "activity.jsonl")
	if err := os.WriteFile(good, export, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(file string) (string, int) {
		cmd := exec.CommandContext(t.Context(), r.bin, "activity", "verify", file)
		cmd.Env = r.env()
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("activity verify: %v", err)
		}
		return string(out), 0
	}
	if out, code := verify(good); code != 0 || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("activity verify of the export: exit %d: %s", code, out)
	}
	seq, off := reviewRow(t, export, aisID)
	bad := bytes.Clone(export)
	bad[off] = 'b' // "actor":"ann" becomes "bnn"
	badFile := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := verify(badFile); code != 1 || !strings.Contains(out, fmt.Sprintf("row seq %d ", seq)) {
		t.Fatalf("activity verify of the tampered export: exit %d: %s; want exit 1 naming row seq %d", code, out, seq)
	}
}

// tvmOnlySARIF is an external scan's result located in a file, with no
// CWE and no tags: only the TVM rules match it.
const tvmOnlySARIF = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"inventory","version":"1.0",
"rules":[{"id":"OUTDATED-1","shortDescription":{"text":"Outdated component in the inventory"}}]}},
"results":[{"ruleId":"OUTDATED-1","level":"warning","message":{"text":"An outdated component."},
"locations":[{"physicalLocation":{"artifactLocation":{"uri":"inventory/components.txt"},"region":{"startLine":3}}}]}]}]}`

// reviewRow finds ann's finding.reviewed row for finding id in an export
// and returns its seq and the offset of the 'a' of its actor "ann".
func reviewRow(t *testing.T, export []byte, id string) (int64, int) {
	t.Helper()
	off := 0
	for line := range bytes.Lines(export) {
		var e struct {
			Seq      int64  `json:"seq"`
			Actor    string `json:"actor"`
			Action   string `json:"action"`
			EntityID string `json:"entity_id"`
		}
		if json.Unmarshal(line, &e) == nil && e.Action == "finding.reviewed" && e.EntityID == id && e.Actor == "ann" {
			i := bytes.Index(line, []byte(`"actor":"ann"`))
			if i < 0 {
				t.Fatalf("review row has no literal actor field: %s", line)
			}
			return e.Seq, off + i + len(`"actor":"`)
		}
		off += len(line)
	}
	t.Fatalf("export has no finding.reviewed row by ann for finding %s:\n%s", id, export)
	return 0, 0
}

type apiFinding struct {
	ID       int64
	Review   string
	Owners   []string
	Controls []struct{ Version, ID string }
}

func (f apiFinding) hasDomain(d string) bool {
	for _, c := range f.Controls {
		if strings.HasPrefix(c.ID, d+"-") {
			return true
		}
	}
	return false
}

func (f apiFinding) ownedBy(u string) bool {
	for _, o := range f.Owners {
		if o == u {
			return true
		}
	}
	return false
}

type findingsPage struct{ Items []apiFinding }

// apiCaller sends JSON requests to one daemon and fails the test on a
// transport error.
type apiCaller struct {
	t    *testing.T
	base string
}

func (c *apiCaller) do(token, method, path string, body io.Reader, ctype string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return res.StatusCode, b
}

// must sends in as JSON, wants status want and decodes the answer into
// out when out is not nil.
func (c *apiCaller) must(token, method, path string, in any, want int, out any) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	code, b := c.do(token, method, path, body, "application/json")
	if code != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func (c *apiCaller) get(token, path string) []byte {
	c.t.Helper()
	code, b := c.do(token, http.MethodGet, path, nil, "")
	if code != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s", path, code, b)
	}
	return b
}

// upload posts a SARIF file as a run of scope and kind and returns its id.
func (c *apiCaller) upload(token, scope, kind string, sarif []byte) string {
	c.t.Helper()
	q := url.Values{"scope": {scope}, "kind": {kind}, "filename": {"scan.sarif"}}
	code, b := c.do(token, http.MethodPost, "/v1/runs?"+q.Encode(), bytes.NewReader(sarif), "application/sarif+json")
	var v struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal(b, &v) != nil || v.ID == "" {
		c.t.Fatalf("upload %s %s = %d %s", kind, scope, code, b)
	}
	return v.ID
}

// waitRun polls the run until it finished and wants it succeeded.
func (c *apiCaller) waitRun(token, id string, r *rig) {
	c.t.Helper()
	var status string
	r.waitFor("run "+id+" to finish", func() bool {
		var err error
		status, err = runStatus(context.WithoutCancel(c.t.Context()), c.base, token, id)
		if err != nil {
			c.t.Fatal(err)
		}
		return status != "received" && status != "queued" && status != "processing"
	})
	if status != "succeeded" {
		c.t.Fatalf("run %s ended %s", id, status)
	}
}
