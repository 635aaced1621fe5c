package sanitize

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want string
		ch   change
	}{
		{"clean", "hello", 10, "hello", change{}},
		{"empty", "", 10, "", change{}},
		{"exactly at the limit", "0123456789", 10, "0123456789", change{}},
		{"nul", "a\x00b", 10, "a\uFFFDb", change{nul: true}},
		{"only nul", "\x00\x00", 0, "\uFFFD\uFFFD", change{nul: true}},
		{"invalid utf-8", "a\xffb\xc3", 10, "a\uFFFDb\uFFFD", change{invalid: true}},
		{"surrogate half", "\xed\xa0\x80", 20, "\uFFFD\uFFFD\uFFFD", change{invalid: true}},
		{"valid replacement char is kept", "a\uFFFD", 10, "a\uFFFD", change{}},
		{"no limit", strings.Repeat("x", 5000), 0, strings.Repeat("x", 5000), change{}},
		{"truncated with marker", strings.Repeat("x", 100), 40, strings.Repeat("x", 16) + "…[truncated 84 bytes]", change{truncated: true}},
		{"truncated at a rune boundary", strings.Repeat("é", 50), 30, "ééé…[truncated 94 bytes]", change{truncated: true}},
		{"limit below the marker: hard cut", "ééééé", 5, "éé", change{truncated: true}},
		{"nul made longer than the limit", strings.Repeat("\x00", 10), 12, "\uFFFD\uFFFD\uFFFD\uFFFD", change{nul: true, truncated: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ch := clean(tc.in, tc.max)
			if got != tc.want || ch != tc.ch {
				t.Fatalf("clean(%q, %d) = %q %+v, want %q %+v", tc.in, tc.max, got, ch, tc.want, tc.ch)
			}
		})
	}
}

// TestMarkerSaysWhatWasLeftOut checks the marker's number against the
// original: kept raw bytes plus the number are the whole value.
func TestMarkerSaysWhatWasLeftOut(t *testing.T) {
	in := strings.Repeat("a", 1<<20)
	got := Text(in, 256)
	if len(got) > 256 || !strings.HasSuffix(got, "…[truncated 1048348 bytes]") {
		t.Fatalf("got %d bytes ending %q", len(got), got[max(0, len(got)-40):])
	}
	kept := strings.TrimSuffix(got, "…[truncated 1048348 bytes]")
	if len(kept)+1048348 != len(in) {
		t.Fatalf("kept %d + dropped 1048348 != %d", len(kept), len(in))
	}
}

func TestFinding(t *testing.T) {
	s := New(Limits{})
	score := 9.8
	f := finding.Finding{
		Fingerprint:       strings.Repeat("ab", 32),
		FingerprintSource: "tool:x\x00",
		Scope:             "repo",
		Kind:              finding.KindCode,
		Tool:              strings.Repeat("T", 3000),
		RuleID:            "R\x001",
		Title:             "title \xff",
		Message:           "msg \x00 with nul",
		Location:          finding.Location{Kind: finding.LocationFile, URI: "src/\x00.go", Logical: "pkg.F\x00"},
		CWE:               make([]int, 100),
		CVE:               []string{"CVE-2024-0001\x00"},
		Tags:              []string{"a\x00", "b"},
		References:        make([]string, 70),
		Evidence:          []string{strings.Repeat("e", 900), strings.Repeat("e", 900)},
		Signals:           finding.Signals{Vector: "CVSS:3.1/\x00", Score: &score, Label: "high\x00"},
	}
	s.Finding(&f)
	if f.Fingerprint != strings.Repeat("ab", 32) {
		t.Errorf("a well-formed fingerprint changed: %q", f.Fingerprint)
	}
	if f.Message != "msg \uFFFD with nul" || f.RuleID != "R\uFFFD1" || f.Title != "title \uFFFD" || f.Tags[0] != "a\uFFFD" {
		t.Errorf("nul or invalid utf-8 not replaced: %+v", f)
	}
	if len(f.Tool) > 256 || !strings.HasPrefix(f.Tool, "TTT") || !strings.HasSuffix(f.Tool, " bytes]") {
		t.Errorf("tool not truncated with a marker: %d bytes %q", len(f.Tool), f.Tool[len(f.Tool)-30:])
	}
	if len(f.CWE) != 64 || len(f.References) != 64 {
		t.Errorf("lists not cut: %d cwe, %d references", len(f.CWE), len(f.References))
	}
	if *f.Signals.Score != 9.8 || f.Kind != finding.KindCode {
		t.Errorf("non-string fields changed: %+v", f)
	}
	want := Counts{NUL: 9, InvalidUTF8: 1, Truncated: 3}
	if got := s.Counts(); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	// Twice is once.
	before := f
	before.Tags = slices.Clone(f.Tags)
	s2 := New(Limits{})
	s2.Finding(&f)
	if !reflect.DeepEqual(before, f) || !s2.Counts().IsZero() {
		t.Errorf("second pass changed the finding or counted %+v", s2.Counts())
	}
}

func TestMalformedFingerprintIsRehashed(t *testing.T) {
	s := New(Limits{})
	long := strings.Repeat("f", 4000)
	a := finding.Finding{Fingerprint: long}
	b := finding.Finding{Fingerprint: long + "x"}
	c := finding.Finding{Fingerprint: "fp\x00"}
	s.Finding(&a)
	s.Finding(&b)
	s.Finding(&c)
	if len(a.Fingerprint) != 64 || a.Fingerprint == b.Fingerprint || !Valid(c.Fingerprint) {
		t.Fatalf("fingerprints %q %q %q", a.Fingerprint, b.Fingerprint, c.Fingerprint)
	}
	again := finding.Finding{Fingerprint: long}
	New(Limits{}).Finding(&again)
	if again.Fingerprint != a.Fingerprint {
		t.Fatal("the same malformed fingerprint hashed differently")
	}
	if got := s.Counts().Rehashed; got != 3 {
		t.Fatalf("rehashed %d, want 3", got)
	}
}

func TestTools(t *testing.T) {
	s := New(Limits{})
	long := strings.Repeat("z", 1<<20)
	got := s.Tools([]string{"b\x00", long, "a", "a"})
	f := finding.Finding{Tool: long}
	s.Finding(&f)
	if len(got) != 3 || got[0] != "a" || got[1] != "b\uFFFD" || got[2] != f.Tool {
		t.Fatalf("tools %q (finding's tool %q)", got, f.Tool)
	}
}

func TestSink(t *testing.T) {
	s := New(Limits{})
	var gotF *finding.Finding
	var gotA *finding.Asset
	sink := s.Sink(parse.Sink{
		Finding: func(f *finding.Finding) error { gotF = f; return nil },
		Asset:   func(a *finding.Asset) error { gotA = a; return nil },
	})
	if err := sink.Finding(&finding.Finding{Message: "\x00"}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Asset(&finding.Asset{Value: "host\x00.example", Sources: []string{"\xff"}}); err != nil {
		t.Fatal(err)
	}
	if gotF.Message != "\uFFFD" || gotA.Value != "host\uFFFD.example" || gotA.Sources[0] != "\uFFFD" {
		t.Fatalf("sink passed %+v %+v", gotF, gotA)
	}
	if s.Sink(parse.Sink{}).Finding != nil {
		t.Fatal("a nil callback became non-nil")
	}
}

// TestWorstCaseFitsAMessage fills every field to its limit with bytes that
// JSON escapes six-fold: one finding must still fit a findings batch, whose
// budget is 512 KB (bus keeps messages under 900 KB).
func TestWorstCaseFitsAMessage(t *testing.T) {
	const batchBudget = 512 << 10
	ctl := func(n int) string { return strings.Repeat("\x01", n) }
	huge := ctl(1 << 20)
	list := make([]string, 1000)
	for i := range list {
		list[i] = huge
	}
	f := finding.Finding{
		Fingerprint: huge, FingerprintSource: huge, Scope: huge, Tool: huge, ToolVersion: huge,
		RuleID: huge, RuleName: huge, Title: huge, Message: huge, Description: huge,
		Location: finding.Location{Kind: finding.LocationKind(huge), URI: huge, Logical: huge},
		CWE:      make([]int, 1000), CVE: append([]string(nil), list...), Tags: append([]string(nil), list...),
		References: append([]string(nil), list...), Evidence: append([]string(nil), list...),
		Signals:       finding.Signals{Vector: huge, Label: huge, Level: huge},
		Justification: huge,
	}
	New(Limits{}).Finding(&f)
	raw, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > batchBudget {
		t.Fatalf("worst-case finding encodes to %d bytes, over the %d-byte batch budget", len(raw), batchBudget)
	}
	t.Logf("worst case: %d bytes", len(raw))
}

// FuzzText: whatever the input and the limit, the output is valid UTF-8,
// has no NUL, is within the limit, and sanitising it again changes nothing.
func FuzzText(f *testing.F) {
	for _, seed := range []string{"", "plain", "a\x00b", "\xff\xfe", strings.Repeat("é", 40), "\xed\xa0\x80", strings.Repeat("\x00", 64)} {
		for _, max := range []uint16{0, 1, 3, 16, 30, 256} {
			f.Add(seed, max)
		}
	}
	f.Fuzz(func(t *testing.T, in string, max16 uint16) {
		max := int(max16)
		out := Text(in, max)
		if !utf8.ValidString(out) || strings.IndexByte(out, 0) >= 0 {
			t.Fatalf("Text(%q, %d) = %q: not storable", in, max, out)
		}
		if max > 0 && len(out) > max {
			t.Fatalf("Text(%q, %d) = %q: %d bytes", in, max, out, len(out))
		}
		if again := Text(out, max); again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		if Valid(in) && (max == 0 || len(in) <= max) && out != in {
			t.Fatalf("a storable value within the limit changed: %q to %q", in, out)
		}
	})
}

// FuzzFinding: every string of a sanitised finding is storable and within
// DefaultLimits, and a second pass changes nothing.
func FuzzFinding(f *testing.F) {
	f.Add("fp", "tool", "msg\x00", "tag\xff", 3)
	f.Add(strings.Repeat("f", 200), strings.Repeat("t", 3000), strings.Repeat("m", 9000), strings.Repeat("\x00", 2000), 80)
	f.Fuzz(func(t *testing.T, fp, tool, msg, item string, items int) {
		items = min(max(items, 0), 200)
		list := make([]string, items)
		for i := range list {
			list[i] = item
		}
		fd := finding.Finding{Fingerprint: fp, Scope: item, Tool: tool, RuleID: item, Title: msg, Message: msg,
			Location: finding.Location{URI: item}, Tags: list, Evidence: append([]string(nil), list...)}
		New(Limits{}).Finding(&fd)
		lim := DefaultLimits()
		check := func(name, v string, n int) {
			if !Valid(v) || len(v) > n {
				t.Fatalf("%s: %d bytes (limit %d), storable %v", name, len(v), n, Valid(v))
			}
		}
		check("fingerprint", fd.Fingerprint, lim.Fingerprint)
		check("scope", fd.Scope, lim.Scope)
		check("tool", fd.Tool, lim.Identifier)
		check("rule", fd.RuleID, lim.Name)
		check("title", fd.Title, lim.Name)
		check("message", fd.Message, lim.Text)
		check("uri", fd.Location.URI, lim.URI)
		for _, l := range [][]string{fd.Tags, fd.Evidence} {
			if len(l) > lim.ListItems {
				t.Fatalf("%d items", len(l))
			}
			total := 0
			for _, v := range l {
				check("item", v, lim.Name)
				total += len(v)
			}
			if total > lim.ListBytes {
				t.Fatalf("list of %d bytes", total)
			}
		}
		again := fd
		again.Tags = slices.Clone(fd.Tags)
		again.Evidence = slices.Clone(fd.Evidence)
		s := New(Limits{})
		s.Finding(&again)
		if !reflect.DeepEqual(again, fd) || !s.Counts().IsZero() {
			t.Fatalf("second pass changed the finding (counts %+v)", s.Counts())
		}
	})
}
