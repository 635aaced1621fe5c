package api

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// TestWireShapes pins the bytes of every wire type built from store values:
// the JSON the API answered before api had its own types (when store's
// structs carried the tags) is what it answers now. "nil-lists" are store
// values with nil slices, which the store never returns; the API answers
// them with [] too, as openapi.yaml promises.
func TestWireShapes(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	add := func(name string, m map[string]any) {
		for k, v := range m {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, k, err)
			}
			got[name+"/"+k] = string(b)
		}
	}
	add("run", convertAll(sampleRuns(), RunOf))
	add("finding", convertAll(sampleFindingRows(), FindingOf))
	add("detail", convertAll(sampleFindingDetails(), FindingDetailOf))
	add("ledger", convertAll(sampleLedgerEntries(), LedgerEntryOf))
	add("credential", convertAll(sampleCredentials(), CredentialViewOf))
	add("token", convertAll(sampleTokens(), TokenOf))

	tests := []struct{ name, want string }{
		{"run/full", `{"id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","schedule_id":"web","kind":"external","scope":"example.com","tool":"nuclei","format":"nuclei-jsonl","file_name":"out.jsonl","status":"failed","error":"boom","artifact_sha256":"abc123","counts":{"batches_expected":3,"batches_stored":2,"findings_seen":7,"observed":{"critical":1,"high":3,"info":1,"low":0,"medium":2}},"stats":{"sanitized":{"nul":1}},"created_at":"2030-01-02T03:04:05.6Z","started_at":"2030-01-02T03:04:06.6Z","finished_at":"2030-01-03T00:00:00+01:00","created_by":"ci"}`},
		{"run/sparse", `{"id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","kind":"code","scope":"repo","tool":"semgrep","format":"sarif","status":"received","counts":{"batches_expected":null,"batches_stored":0,"findings_seen":0},"created_at":"2030-01-02T03:04:05.6Z"}`},
		{"finding/full", `{"id":42,"scope":"example.com","fingerprint":"fp1","kind":"external","tool":"nuclei","rule":"CVE-2021-1","rule_name":"Some rule","title":"=cmd|' /C calc'!A0","severity":"high","severity_source":"cvss","cvss":{"version":"3.1","vector":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","base":9.8,"temporal":9.1,"environmental":8.75},"status":"resolved","suppressed":true,"location":{"kind":"file","uri":"a/b.go","start_line":3,"start_column":4,"end_line":5,"end_column":6,"logical":"pkg.F"},"cwe":[79,89],"cve":["CVE-2021-1"],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-03T00:00:00+01:00","sla_due":"2030-01-03T00:00:00+01:00","resolved_at":"2030-01-03T00:00:00+01:00","resolved_by_run":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","controls":[{"version":"4.0.13","id":"TVM-07"},{"version":"4.1","id":"I\u0026S-03"}],"review":"untriaged","owners":[]}`},
		{"finding/nil-lists", `{"id":2,"scope":"","fingerprint":"","kind":"","tool":"","rule":"","title":"","severity":"","cvss":null,"status":"","suppressed":false,"location":{},"cwe":[],"cve":[],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-02T03:04:05.6Z","sla_due":null,"resolved_at":null,"resolved_by_run":null,"controls":[],"review":"untriaged","owners":[]}`},
		{"finding/sparse", `{"id":1,"scope":"s","fingerprint":"f","kind":"code","tool":"t","rule":"r","title":"x","severity":"info","cvss":null,"status":"open","suppressed":false,"location":{},"cwe":[],"cve":[],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-02T03:04:05.6Z","sla_due":null,"resolved_at":null,"resolved_by_run":null,"controls":[],"review":"untriaged","owners":[]}`},
		{"detail/full", `{"id":42,"scope":"example.com","fingerprint":"fp1","kind":"external","tool":"nuclei","rule":"CVE-2021-1","rule_name":"Some rule","title":"=cmd|' /C calc'!A0","severity":"high","severity_source":"cvss","cvss":{"version":"3.1","vector":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","base":9.8,"temporal":9.1,"environmental":8.75},"status":"resolved","suppressed":true,"location":{"kind":"file","uri":"a/b.go","start_line":3,"start_column":4,"end_line":5,"end_column":6,"logical":"pkg.F"},"cwe":[79,89],"cve":["CVE-2021-1"],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-03T00:00:00+01:00","sla_due":"2030-01-03T00:00:00+01:00","resolved_at":"2030-01-03T00:00:00+01:00","resolved_by_run":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","review":"untriaged","owners":[],"tool_version":"3.2.1","message":"msg","description":"desc","tags":["a","b"],"references":["https://x"],"evidence":["ev"],"suppression_justification":"accepted risk","last_run_id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","updated_at":"2030-01-03T00:00:00+01:00","observations_total":2,"observations":[{"run_id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","seen_at":"2030-01-03T00:00:00+01:00","rules_hash":"deadbeef","controls":[{"version":"4.1","id":"TVM-07","rule":"r1","reason":"because"}]},{"run_id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","seen_at":"2030-01-02T03:04:05.6Z"}],"controls":[{"version":"4.1","id":"TVM-07","rule":"r1","reason":"because"}],"retests":[],"evidence_files":[]}`},
		{"detail/nil-lists", `{"id":2,"scope":"","fingerprint":"","kind":"","tool":"","rule":"","title":"","severity":"","cvss":null,"status":"","suppressed":false,"location":{},"cwe":[],"cve":[],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-02T03:04:05.6Z","sla_due":null,"resolved_at":null,"resolved_by_run":null,"review":"untriaged","owners":[],"tags":[],"references":[],"evidence":[],"last_run_id":null,"updated_at":"2030-01-02T03:04:05.6Z","observations_total":0,"observations":[],"controls":[],"retests":[],"evidence_files":[]}`},
		{"detail/sparse", `{"id":1,"scope":"s","fingerprint":"f","kind":"code","tool":"t","rule":"r","title":"x","severity":"info","cvss":null,"status":"open","suppressed":false,"location":{},"cwe":[],"cve":[],"first_seen":"2030-01-02T03:04:05.6Z","last_seen":"2030-01-02T03:04:05.6Z","sla_due":null,"resolved_at":null,"resolved_by_run":null,"review":"untriaged","owners":[],"tags":[],"references":[],"evidence":[],"last_run_id":null,"updated_at":"2030-01-02T03:04:05.6Z","observations_total":0,"observations":[],"controls":[],"retests":[],"evidence_files":[]}`},
		{"ledger/full", `{"id":9,"schedule":"web","due":"2030-01-02T03:04:05.6Z","status":"failed","catch_up":true,"run_id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","runs":[{"id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","scope":"example.com","tool":"amass","status":"succeeded"},{"id":"0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10","scope":"https://a.example.com","tool":"nuclei","status":"failed","error":"timeout"}],"claimed_at":"2030-01-02T03:04:05.6Z","started_at":"2030-01-03T00:00:00+01:00","finished_at":"2030-01-03T00:00:00+01:00","error":"one run failed"}`},
		{"ledger/nil-lists", `{"id":2,"schedule":"web","due":"2030-01-02T03:04:05.6Z","status":"pending","catch_up":false,"runs":[],"claimed_at":"2030-01-02T03:04:05.6Z"}`},
		{"ledger/sparse", `{"id":1,"schedule":"web","due":"2030-01-02T03:04:05.6Z","status":"missed","catch_up":false,"runs":[],"claimed_at":"2030-01-02T03:04:05.6Z"}`},
		{"credential/full", `{"id":"c1","name":"app","kind":"basic","username":"u","header_name":"X-Key","key_id":"k1","targets":["https://app.example.com/"],"allow_http":true,"created_at":"2030-01-02T03:04:05.6Z","updated_at":"2030-01-03T00:00:00+01:00","created_by":"alice","rotated_at":"2030-01-03T00:00:00+01:00"}`},
		{"credential/sparse", `{"id":"c2","name":"tok","kind":"bearer","key_id":"k1","targets":[],"allow_http":false,"created_at":"2030-01-02T03:04:05.6Z","updated_at":"2030-01-02T03:04:05.6Z","created_by":"bob"}`},
		{"token/full", `{"name":"ci","role":"ingest","scopes":[],"kinds":[],"created_at":"2030-01-02T03:04:05.6Z","last_used_at":"2030-01-03T00:00:00+01:00","revoked_at":"2030-01-03T00:00:00+01:00"}`},
		{"token/sparse", `{"name":"admin","role":"admin","scopes":[],"kinds":[],"created_at":"2030-01-02T03:04:05.6Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, ok := got[tt.name]
			if !ok {
				t.Fatalf("no sample %s", tt.name)
			}
			if g != tt.want {
				t.Errorf("JSON changed:\n got  %s\n want %s", g, tt.want)
			}
		})
	}
	if len(got) != len(tests) {
		t.Errorf("%d samples, %d pinned: pin every sample", len(got), len(tests))
	}
}

func convertAll[S, W any](m map[string]S, conv func(S) W) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = conv(v)
	}
	return out
}

// TestWireTypesMatchOpenAPI checks each wire type against its schema in
// openapi.yaml: every field it sends is documented, with a JSON type the
// schema allows, and every required field is sent. Samples have every
// field set, and the sparse ones show what omitempty leaves out.
func TestWireTypesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	doc := openAPIDoc(t)
	now := sampleT0
	sched := store.Schedule{Name: "web", Kind: "external", Enabled: true, Cadence: "0 3 * * *", Timezone: "UTC",
		Spec:      json.RawMessage(`{"name":"web","kind":"external","targets":{"urls":["https://app.example"]},"cadence":"0 3 * * *"}`),
		CreatedAt: now, UpdatedAt: now, UpdatedBy: "op", ActiveSince: now, LastFiredDue: now, LastStatus: "succeeded", LastDue: now}
	view, err := ScheduleViewOf(sched, now)
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		schema string
		value  any
	}
	var samples []sample
	for _, k := range []string{"full", "sparse"} {
		samples = append(samples,
			sample{"Run", RunOf(sampleRuns()[k])},
			sample{"Finding", FindingOf(sampleFindingRows()[k])},
			sample{"FindingDetail", FindingDetailOf(sampleFindingDetails()[k])},
			sample{"LedgerEntry", LedgerEntryOf(sampleLedgerEntries()[k])},
			sample{"CredentialView", CredentialViewOf(sampleCredentials()[k])},
		)
	}
	samples = append(samples,
		sample{"ScheduleView", view},
		sample{"ControlCount", ControlCount{Version: "4.1", ID: "TVM-07", Domain: "TVM", DomainName: "Threat",
			Title: "t", Open: map[string]int{"info": 0, "low": 0, "medium": 0, "high": 1, "critical": 0}, Total: 1, Linked: 2}},
		sample{"CredentialWritten", CredentialWritten{ID: "c1", Name: "app", Kind: "bearer", KeyID: "k1"}},
	)
	// The enumerations are the typed constants, in the same order.
	var runStatuses []any
	for _, st := range finding.RunStatuses() {
		runStatuses = append(runStatuses, string(st))
	}
	for _, name := range []string{"RunStatus"} {
		if got := asSlice(doc.schema(name)["enum"]); !slices.Equal(got, runStatuses) {
			t.Errorf("openapi.yaml %s enum %v, want %v", name, got, runStatuses)
		}
	}
	var ledgerStatuses []any
	for _, st := range finding.LedgerStatuses() {
		ledgerStatuses = append(ledgerStatuses, string(st))
	}
	if got := asSlice(doc.schema("LedgerStatus")["enum"]); !slices.Equal(got, ledgerStatuses) {
		t.Errorf("openapi.yaml LedgerStatus enum %v, want %v", got, ledgerStatuses)
	}
	ledgerRun, _ := doc.schema("LedgerRun")["properties"].(map[string]any)
	if st, _ := ledgerRun["status"].(map[string]any); !slices.Equal(asSlice(st["enum"]), runStatuses) {
		t.Errorf("openapi.yaml LedgerRun.status enum %v, want %v", st["enum"], runStatuses)
	}
	for _, s := range samples {
		b, err := json.Marshal(s.value)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		checkSchema(t, doc, s.schema, doc.schema(s.schema), v)
	}
}

// TestAnswersMatchOpenAPI checks what the read routes answer over a seeded
// database against openapi.yaml.
func TestAnswersMatchOpenAPI(t *testing.T) {
	t.Parallel()
	doc := openAPIDoc(t)
	e := newReadEnv(t)
	get := func(target string) any {
		t.Helper()
		rec := e.do(RoleAdmin, http.MethodGet, target)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	items := func(v any) []any { return v.(map[string]any)["items"].([]any) }
	runs := items(get("/v1/runs"))
	if len(runs) == 0 {
		t.Fatal("no runs")
	}
	for _, r := range runs {
		checkSchema(t, doc, "Run", doc.schema("Run"), r)
	}
	checkSchema(t, doc, "Run", doc.schema("Run"), get("/v1/runs/"+e.runs[0]))
	fs := items(get("/v1/findings"))
	if len(fs) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range fs {
		checkSchema(t, doc, "Finding", doc.schema("Finding"), f)
		id := strconv.FormatFloat(f.(map[string]any)["id"].(float64), 'f', 0, 64)
		checkSchema(t, doc, "FindingDetail", doc.schema("FindingDetail"), get("/v1/findings/"+id))
	}
	for _, c := range items(get("/v1/controls?all=true")) {
		checkSchema(t, doc, "ControlCount", doc.schema("ControlCount"), c)
	}
}

type openAPI struct {
	Components struct {
		Schemas map[string]map[string]any `yaml:"schemas"`
	} `yaml:"components"`
}

func openAPIDoc(t *testing.T) *openAPI {
	t.Helper()
	var doc openAPI
	if err := yaml.NewDecoder(bytes.NewReader(openAPISpec)).Decode(&doc); err != nil {
		t.Fatalf("parsing openapi.yaml: %v", err)
	}
	return &doc
}

func (d *openAPI) schema(name string) map[string]any { return d.Components.Schemas[name] }

// resolve follows $ref and merges allOf, which is all of JSON Schema that
// openapi.yaml uses for its objects.
func (d *openAPI) resolve(s map[string]any) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		return d.resolve(d.schema(strings.TrimPrefix(ref, "#/components/schemas/")))
	}
	all, ok := s["allOf"].([]any)
	if !ok {
		return s
	}
	out := map[string]any{}
	props := map[string]any{}
	var required []any
	maps.Copy(out, s)
	delete(out, "allOf")
	for _, p := range all {
		r := d.resolve(p.(map[string]any))
		for k, v := range r {
			switch k {
			case "properties":
				maps.Copy(props, v.(map[string]any))
			case "required":
				required = append(required, v.([]any)...)
			default:
				out[k] = v
			}
		}
	}
	if len(props) > 0 {
		out["properties"] = props
	}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func checkSchema(t *testing.T, d *openAPI, path string, s map[string]any, v any) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: no schema", path)
		return
	}
	s = d.resolve(s)
	if v == nil {
		if s["nullable"] != true {
			t.Errorf("%s: null, but the schema is not nullable", path)
		}
		return
	}
	typ, _ := s["type"].(string)
	switch x := v.(type) {
	case map[string]any:
		if typ != "" && typ != "object" {
			t.Errorf("%s: object, schema says %s", path, typ)
			return
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asSlice(s["required"]) {
			if _, ok := x[r.(string)]; !ok {
				t.Errorf("%s: required %q missing", path, r)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p, ok := props[k].(map[string]any)
			if !ok {
				if s["additionalProperties"] != true && props != nil {
					t.Errorf("%s: field %q is not documented", path, k)
				}
				continue
			}
			checkSchema(t, d, path+"."+k, p, x[k])
		}
	case []any:
		if typ != "array" {
			t.Errorf("%s: array, schema says %q", path, typ)
			return
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range x {
			checkSchema(t, d, path+"["+strconv.Itoa(i)+"]", items, e)
		}
	case string:
		if typ != "string" {
			t.Errorf("%s: string, schema says %q", path, typ)
		}
		if enum := asSlice(s["enum"]); enum != nil && !slices.Contains(enum, any(x)) {
			t.Errorf("%s: %q is not in %v", path, x, enum)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339, x); err != nil {
				t.Errorf("%s: %q is not a date-time", path, x)
			}
		}
	case float64:
		if typ != "number" && typ != "integer" {
			t.Errorf("%s: number, schema says %q", path, typ)
		}
	case bool:
		if typ != "boolean" {
			t.Errorf("%s: boolean, schema says %q", path, typ)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
