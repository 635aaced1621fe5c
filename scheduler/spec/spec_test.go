package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zone names must resolve without the host's zoneinfo

	"github.com/starpipe/starpipe/finding"
)

func TestLoadGood(t *testing.T) {
	ss, err := LoadFile(filepath.Join("testdata", "good.yaml"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 4 {
		t.Fatalf("got %d schedules, want 4", len(ss))
	}
	ext, auth, code, month := ss[0], ss[1], ss[2], ss[3]
	if ext.Name != "perimeter-discovery" || ext.Kind != finding.KindExternal || len(ext.Targets.Domains) != 2 ||
		!ext.Amass.Passive || ext.Amass.Recursive || ext.Nuclei.Severities[2] != "critical" {
		t.Fatalf("external schedule decoded as %+v", ext)
	}
	if auth.Credential != "portal-scanner" || auth.Start != "2025-01-07" || auth.Environment != "CR:H/IR:H/MAV:N" {
		t.Fatalf("authenticated schedule decoded as %+v", auth)
	}
	if time.Duration(code.Code.Timeout) != 30*time.Minute || code.Code.MaxOutputBytes != 64<<20 ||
		code.Code.Analyzer != "gosec" || code.IsEnabled() {
		t.Fatalf("code schedule decoded as %+v", code)
	}
	if month.Timezone != "UTC" || !month.IsEnabled() {
		t.Fatalf("defaults not applied: %+v", month)
	}

	// Cadences come out in the schedule's zone, anchored at its start.
	c, err := auth.CadenceOf()
	if err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	got := c.Next(time.Date(2025, 1, 1, 0, 0, 0, 0, ny))
	if want := time.Date(2025, 1, 7, 22, 0, 0, 0, ny); !got.Equal(want) {
		t.Fatalf("biweekly Next = %v, want %v", got, want)
	}
	if got2 := c.Next(got); !got2.Equal(time.Date(2025, 1, 21, 22, 0, 0, 0, ny)) {
		t.Fatalf("biweekly second Next = %v", got2)
	}
	mc, err := month.CadenceOf()
	if err != nil {
		t.Fatal(err)
	}
	if got := mc.Next(time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2025, 2, 28, 23, 0, 0, 0, time.UTC)) {
		t.Fatalf("monthly Next = %v", got)
	}
}

func TestLoadBad(t *testing.T) {
	_, err := LoadFile(filepath.Join("testdata", "bad.yaml"), testOptions)
	if err == nil {
		t.Fatal("bad.yaml loaded without error")
	}
	want := []struct {
		index       int
		name, field string
		reason      string // substring
		line        int
	}{
		{0, "Nightly_Web", "name", `"Nightly_Web" must be lower-case letters, digits and '-'`, 3},
		{1, "no-kind", "kind", "required (external, authenticated or code)", 8},
		{2, "nightly-web", "cadence", `unknown day "Fun" (use Mon..Sun)`, 15},
		{3, "ext-nothing", "targets", "an external scan needs domains or urls", 17},
		{4, "auth-no-cred", "credential", "required for authenticated scans", 21},
		{5, "ext-with-cred", "credential", "only authenticated scans use a credential", 30},
		{6, "bad-url", "targets.urls[1]", `scheme "ftp" not supported (use http or https)`, 38},
		{7, "url-userinfo", "targets.urls[0]", "user info in URLs is not allowed", 44},
		{8, "code-no-command", "code.analyzer", "a code scan names the analyser to run", 47},
		{9, "code-dash-repo", "targets.repositories[0]", "starts with '-'", 56},
		{10, "code-ext-repo", "targets.repositories[0]", "transport::address", 63},
		{11, "bad-control", "controls[1]", `"tvm-7" is not a CCM control id like TVM-07`, 71},
		{12, "bad-severity", "nuclei.severities[1]", `unknown severity "severe"`, 77},
		{13, "bad-zone", "timezone", `unknown time zone "Europe/Berln"`, 84},
		{14, "biweekly-no-start", "start", "required for a biweekly cadence", 86},
		{15, "bad-env", "environment", `"XX" is not a CVSS 3.1 environmental metric`, 95},
		{17, "nightly-web", "name", `duplicate name "nightly-web" (also schedules[16])`, 102},
		{18, "amass-on-code", "amass", "amass settings apply only to external scans with targets.domains", 111},
		{19, "domain-as-url", "targets.domains[0]", "want a bare domain like example.com, not a URL", 117},
		{20, "feb-30", "cadence", "never fires", 123},
	}
	var fes []*FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *FieldError", e)
		}
		fes = append(fes, fe)
	}
	if len(fes) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(fes), len(want), err)
	}
	for i, w := range want {
		fe := fes[i]
		if fe.Index != w.index || fe.Schedule != w.name || fe.Field != w.field || !strings.Contains(fe.Reason, w.reason) || fe.Line != w.line {
			t.Errorf("error %d = %+v\n want index %d name %q field %q reason ~%q line %d", i, fe, w.index, w.name, w.field, w.reason, w.line)
		}
		if fe.File != filepath.Join("testdata", "bad.yaml") {
			t.Errorf("error %d file = %q", i, fe.File)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatal("error message repeats the password from a URL")
	}
	wantMsg := `testdata/bad.yaml:15: schedules[2] (nightly-web).cadence: unknown day "Fun" (use Mon..Sun)`
	if got := fes[2].Error(); got != filepath.FromSlash(wantMsg) {
		t.Fatalf("message = %q\nwant      %q", got, wantMsg)
	}
}

func TestLoadBadKeys(t *testing.T) {
	_, err := LoadFile(filepath.Join("testdata", "bad-keys.yaml"), testOptions)
	if err == nil {
		t.Fatal("bad-keys.yaml loaded without error")
	}
	want := []struct {
		index       int
		name, field string
		reason      string
		line        int
	}{
		{0, "typo", "targets.url", `unknown field "url"`, 6},
		{1, "wrong-type", "code.timeout", "invalid duration \"30\" (use a number with a unit, e.g. 10m)", 13},
		{1, "wrong-type", "enabled", "cannot unmarshal !!str `maybe` into bool", 15},
	}
	errs := err.(interface{ Unwrap() []error }).Unwrap()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		var fe *FieldError
		if !errors.As(errs[i], &fe) {
			t.Fatalf("error %v is not a *FieldError", errs[i])
		}
		if fe.Index != w.index || fe.Schedule != w.name || fe.Field != w.field || !strings.Contains(fe.Reason, w.reason) || fe.Line != w.line {
			t.Errorf("error %d = %+v\n want index %d name %q field %q reason ~%q line %d", i, fe, w.index, w.name, w.field, w.reason, w.line)
		}
	}
}

func TestDecodeFileShape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"top-level typo", "schedule:\n  - name: x\n", `line 1: schedule: unknown field "schedule"`},
		{"syntax", "schedules: [\n", "did not find expected node content"},
		{"two documents", "schedules: []\n---\nschedules: []\n", "more than one YAML document"},
		{"duplicate key", "schedules:\n  - name: a\n    name: b\n", `mapping key "name" already defined`},
		{"not a list", "schedules: {name: a}\n", "cannot unmarshal !!map into []spec.Schedule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tt.in), "", testOptions)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode error = %v, want %q", err, tt.want)
			}
		})
	}
	ss, err := Decode(strings.NewReader("# nothing yet\n"), "empty.yaml", testOptions)
	if err != nil || len(ss) != 0 {
		t.Fatalf("empty file: %v, %v", ss, err)
	}
}

// valid returns a schedule of the kind that passes validation, for the
// single-field table below.
func valid(kind finding.ScanKind) Schedule {
	s := Schedule{Name: "s", Kind: kind, Cadence: "daily@01:00"}
	switch kind {
	case finding.KindExternal:
		s.Targets.Domains = []string{"example.com"}
	case finding.KindAuthenticated:
		s.Targets.URLs = []string{"https://example.com"}
		s.Credential = "c"
	case finding.KindCode:
		s.Targets.Repositories = []string{"https://git.example.com/r.git"}
		s.Code.Analyzer = "semgrep"
	}
	return s
}

func TestValidate(t *testing.T) {
	ext, auth, code := finding.KindExternal, finding.KindAuthenticated, finding.KindCode
	tests := []struct {
		name   string
		kind   finding.ScanKind
		mod    func(*Schedule)
		field  string // "" means valid
		reason string
	}{
		{"external ok", ext, func(*Schedule) {}, "", ""},
		{"authenticated ok", auth, func(*Schedule) {}, "", ""},
		{"code ok", code, func(*Schedule) {}, "", ""},
		{"host:port ok", ext, func(s *Schedule) { s.Targets.URLs = []string{"10.0.0.1:8443", "[::1]:443"} }, "", ""},
		{"scp-like repo ok", code, func(s *Schedule) {
			s.Targets.Repositories = []string{"git@github.com:o/r.git", "/srv/repo", "file:///srv/r"}
		}, "", ""},
		{"cron ok", ext, func(s *Schedule) { s.Cadence = "@hourly" }, "", ""},
		{"A&A control ok", ext, func(s *Schedule) { s.Controls = []string{"A&A-02", "TVM-10"} }, "", ""},
		{"no name", ext, func(s *Schedule) { s.Name = "" }, "name", "required"},
		{"leading dash", ext, func(s *Schedule) { s.Name = "-x" }, "name", "not starting with '-'"},
		{"long name", ext, func(s *Schedule) { s.Name = strings.Repeat("a", 64) }, "name", "longer than 63"},
		{"bad kind", ext, func(s *Schedule) { s.Kind = "dast" }, "kind", `unknown kind "dast"`},
		{"external with repos", ext, func(s *Schedule) { s.Targets.Repositories = []string{"./x"} }, "targets.repositories", "only code scans"},
		{"authenticated no urls", auth, func(s *Schedule) { s.Targets.URLs = nil }, "targets.urls", "needs urls"},
		{"authenticated with domains", auth, func(s *Schedule) { s.Targets.Domains = []string{"example.com"} }, "targets.domains", "only in external"},
		{"code with urls", code, func(s *Schedule) { s.Targets.URLs = []string{"https://x.example"} }, "targets.urls", "repositories only"},
		{"code no repos", code, func(s *Schedule) { s.Targets.Repositories = nil }, "targets.repositories", "needs repositories"},
		{"code command refused", code, func(s *Schedule) { s.Code.Command = []string{"sh", "-c", "id"} }, "code.command", "cannot carry a command"},
		{"code command without analyzer", code, func(s *Schedule) { s.Code.Analyzer = ""; s.Code.Command = []string{"gosec"} }, "code.command", "cannot carry a command"},
		{"code no analyzer", code, func(s *Schedule) { s.Code.Analyzer = "" }, "code.analyzer", "names the analyser to run (configured: gosec, semgrep)"},
		{"code unknown analyzer", code, func(s *Schedule) { s.Code.Analyzer = "sh" }, "code.analyzer", `no analyser named "sh" is configured`},
		{"metadata url", ext, func(s *Schedule) { s.Targets.URLs = []string{"http://169.254.169.254/latest/meta-data/"} }, "targets.urls[0]", "169.254.169.254 is link-local"},
		{"metadata v6 host:port", ext, func(s *Schedule) { s.Targets.URLs = []string{"[fd00:ec2::254]:80"} }, "targets.urls[0]", "unique local"},
		{"loopback url", ext, func(s *Schedule) { s.Targets.URLs = []string{"http://127.0.0.1:8080"} }, "targets.urls[0]", "127.0.0.1 is loopback"},
		{"private url", auth, func(s *Schedule) { s.Targets.URLs = []string{"https://192.168.1.10/"} }, "targets.urls[0]", "private (RFC 1918)"},
		{"private repository", code, func(s *Schedule) { s.Targets.Repositories = []string{"https://172.16.0.3/r.git"} }, "targets.repositories[0]", "private"},
		{"private resolver", ext, func(s *Schedule) { s.Amass.Resolvers = []string{"192.168.0.53"} }, "amass.resolvers[0]", "private"},
		{"metadata resolver", ext, func(s *Schedule) { s.Amass.Resolvers = []string{"169.254.169.254:53"} }, "amass.resolvers[0]", "link-local"},
		{"domain is an address", ext, func(s *Schedule) { s.Targets.Domains = []string{"169.254.169.254"} }, "targets.domains[0]", "is an IP address"},
		{"wordlist file refused", ext, func(s *Schedule) { s.Amass.WordlistFile = "/etc/shadow" }, "amass.wordlist_file", "cannot read files from the host"},
		{"wordlist name without dir", ext, func(s *Schedule) { s.Amass.WordlistName = "top.txt" }, "amass.wordlist_name", "no amass.wordlist_dir is configured"},
		{"code negative timeout", code, func(s *Schedule) { s.Code.Timeout = -1 }, "code.timeout", "negative"},
		{"code settings on external", ext, func(s *Schedule) { s.Code.Analyzer = "gosec" }, "code", "only to code scans"},
		{"nuclei on code", code, func(s *Schedule) { s.Nuclei.Tags = []string{"cve"} }, "nuclei", "external and authenticated"},
		{"amass without domains", ext, func(s *Schedule) { s.Targets = Targets{URLs: []string{"https://x.example"}}; s.Amass.Recursive = true }, "amass", "with targets.domains"},
		{"allowed private url", ext, func(s *Schedule) { s.Targets.URLs = []string{"http://10.1.2.3/", "[::1]:8443"} }, "", ""},
		{"public resolver ok", ext, func(s *Schedule) { s.Amass.Resolvers = []string{"9.9.9.9", "[2620:fe::fe]:53"} }, "", ""},
		{"amass bad resolver", ext, func(s *Schedule) { s.Amass.Resolvers = []string{"dns.google"} }, "amass.resolvers[0]", "not an IP address"},
		{"tag with comma", ext, func(s *Schedule) { s.Nuclei.Tags = []string{"cve,rce"} }, "nuclei.tags[0]", "own item"},
		{"duplicate domain", ext, func(s *Schedule) { s.Targets.Domains = []string{"a.example", "a.example"} }, "targets.domains[1]", "duplicate"},
		{"wildcard domain", ext, func(s *Schedule) { s.Targets.Domains = []string{"*.example.com"} }, "targets.domains[0]", "without a wildcard"},
		{"single-label domain", ext, func(s *Schedule) { s.Targets.Domains = []string{"localhost"} }, "targets.domains[0]", "not a domain name"},
		{"url without host", ext, func(s *Schedule) { s.Targets.URLs = []string{"https:///path"} }, "targets.urls[0]", "has no host"},
		{"url bare host", ext, func(s *Schedule) { s.Targets.URLs = []string{"example.com"} }, "targets.urls[0]", "neither an http(s) URL nor host:port"},
		{"url bad port", ext, func(s *Schedule) { s.Targets.URLs = []string{"example.com:99999"} }, "targets.urls[0]", "port"},
		{"url CRLF", ext, func(s *Schedule) { s.Targets.URLs = []string{"https://x.example/\r\nHost: y"} }, "targets.urls[0]", "control character"},
		{"repo scheme", code, func(s *Schedule) { s.Targets.Repositories = []string{"ftp://x/r"} }, "targets.repositories[0]", `scheme "ftp" not supported`},
		{"repo password", code, func(s *Schedule) { s.Targets.Repositories = []string{"https://u:p@x.example/r"} }, "targets.repositories[0]", "passwords in repository URLs"},
		{"credential on code", code, func(s *Schedule) { s.Credential = "c" }, "credential", "only authenticated"},
		{"no cadence", ext, func(s *Schedule) { s.Cadence = " " }, "cadence", "required"},
		{"bad cadence", ext, func(s *Schedule) { s.Cadence = "monthly@32 10:00" }, "cadence", `day of month "32" out of range`},
		{"local zone", ext, func(s *Schedule) { s.Timezone = "Local" }, "timezone", "depends on the host"},
		{"bad start", ext, func(s *Schedule) { s.Cadence = "biweekly@Mon 10:00"; s.Start = "2025-13-01" }, "start", "invalid date"},
		{"start on weekly", ext, func(s *Schedule) { s.Cadence = "weekly@Mon 10:00"; s.Start = "2025-01-01" }, "start", "only biweekly"},
		{"duplicate control", ext, func(s *Schedule) { s.Controls = []string{"TVM-07", "TVM-07"} }, "controls[1]", "duplicate control"},
		{"env bad value", ext, func(s *Schedule) { s.Environment = "CR:Q" }, "environment", "CR:Q: value must be one of L, M, H, X"},
		{"env not a pair", ext, func(s *Schedule) { s.Environment = "CRH" }, "environment", "not METRIC:VALUE"},
		{"env twice", ext, func(s *Schedule) { s.Environment = "CR:H/CR:L" }, "environment", "CR given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid(tt.kind)
			tt.mod(&s)
			err := s.Validate(testOptions)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want *FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Reason, tt.reason) || fe.Index != -1 {
				t.Fatalf("Validate = %+v, want field %q reason ~%q", fe, tt.field, tt.reason)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	ss, err := LoadFile(filepath.Join("testdata", "good.yaml"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ss[2])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"max_output_bytes":67108864`, `"timeout":"30m0s"`, `"enabled":false`, `"repositories":[`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("JSON %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), `"nuclei"`) || strings.Contains(string(b), `"amass"`) {
		t.Fatalf("empty settings not omitted: %s", b)
	}
	back, err := DecodeJSON(strings.NewReader(string(b)), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(back.Code.Timeout) != 30*time.Minute || back.IsEnabled() {
		t.Fatalf("round trip = %+v", back)
	}

	for _, tt := range []struct{ in, want string }{
		{`{"name":"x","kind":"external","targets":{"domains":["example.com"]},"cadence":"daily@01:00","cadense":"x"}`, `unknown field "cadense"`},
		{`{"name":"x","kind":"code","targets":{"repositories":["./r"]},"code":{"command":["x"],"timeout":30},"cadence":"daily@01:00"}`, "cannot unmarshal number"},
		{`{"name":"x","kind":"external","targets":{"domains":["example.com"]},"cadence":"weekly@Fun 10:00"}`, `schedule "x": cadence: unknown day "Fun"`},
		{`{"name":"x"} {}`, "unexpected data"},
	} {
		if _, err := DecodeJSON(strings.NewReader(tt.in), testOptions); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeJSON(%s) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadFileMissing(t *testing.T) {
	if _, err := LoadFile(filepath.Join(t.TempDir(), "none.yaml"), testOptions); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadFile of a missing file: %v", err)
	}
}
