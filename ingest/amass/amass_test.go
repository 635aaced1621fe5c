package amass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/internal/corpus"
)

var update = flag.Bool("update", false, "rewrite golden files")

func corpusPath(t testing.TB, name string) string {
	t.Helper()
	return corpus.Path(t, "amass", "amass", name)
}

type collected struct {
	assets []*finding.Asset
	st     parse.Stats
	err    error
}

func (c collected) count(typ finding.AssetType) int {
	n := 0
	for _, a := range c.assets {
		if a.Type == typ {
			n++
		}
	}
	return n
}

func sink(c *collected) parse.Sink {
	return parse.Sink{Asset: func(a *finding.Asset) error { c.assets = append(c.assets, a); return nil }}
}

func parseFile(t testing.TB, name string, opt parse.Options) collected {
	t.Helper()
	var c collected
	c.st, c.err = ParseFile(context.Background(), corpusPath(t, name), opt, sink(&c))
	return c
}

func parseBytes(t testing.TB, data []byte, opt parse.Options) collected {
	t.Helper()
	var c collected
	c.st, c.err = Parse(context.Background(), bytes.NewReader(data), opt, sink(&c))
	return c
}

// The FQDN counts follow the corpus MANIFEST rules.
func TestCorpusCounts(t *testing.T) {
	for name, want := range map[string]int{
		"amass-v3-empty.jsonl":                 0,
		"amass-v3-example-com.jsonl":           1,
		"amass-v3-securecodebox-io.jsonl":      44,
		"amass-v4-empty-tables.sqlite":         0,
		"amass-v4-example-com.sqlite":          5,
		"amass-v4-passive-owasp-org.sqlite":    68,
		"amass-v4-text-beyondmachines-net.txt": 21,
	} {
		c := parseFile(t, name, parse.Options{})
		if c.err != nil {
			t.Errorf("%s: %v", name, c.err)
			continue
		}
		if got := c.count(finding.AssetFQDN); got != want {
			t.Errorf("%s: %d FQDN assets, want %d", name, got, want)
		}
		if c.st.Assets != len(c.assets) {
			t.Errorf("%s: Stats.Assets %d, sink got %d", name, c.st.Assets, len(c.assets))
		}
	}
}

// A database streamed (standard input) gives what the file gives.
func TestSQLiteFromStream(t *testing.T) {
	want := parseFile(t, "amass-v4-example-com.sqlite", parse.Options{})
	data, err := os.ReadFile(corpusPath(t, "amass-v4-example-com.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	got := parseBytes(t, data, parse.Options{File: "-"})
	if got.err != nil {
		t.Fatal(got.err)
	}
	a, _ := json.Marshal(want.assets)
	b, _ := json.Marshal(got.assets)
	if !bytes.Equal(a, b) {
		t.Errorf("stream and file differ:\n%s\n%s", a, b)
	}
	// MaxBytes applies to the copy too.
	c := parseBytes(t, data, parse.Options{File: "-", Limits: parse.Limits{MaxBytes: 1000}})
	if !errors.Is(c.err, parse.ErrLimit) {
		t.Errorf("err %v, want ErrLimit", c.err)
	}
}

func TestNoAssetsTable(t *testing.T) {
	name := corpusPath(t, "amass-v4-no-tables.sqlite")
	c := parseFile(t, "amass-v4-no-tables.sqlite", parse.Options{})
	var pe *parse.Error
	if !errors.As(c.err, &pe) || pe.File != name || !errors.Is(c.err, parse.ErrFormat) || !strings.Contains(c.err.Error(), `no "assets" table`) {
		t.Errorf("err %v, want *parse.Error naming %s and the missing table", c.err, name)
	}
}

func TestCorruptSQLite(t *testing.T) {
	data, err := os.ReadFile(corpusPath(t, "amass-v4-example-com.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(data); i++ {
		data[i] ^= 0x5a
	}
	c := parseBytes(t, data, parse.Options{File: "bad.sqlite"})
	var pe *parse.Error
	if !errors.As(c.err, &pe) || pe.File != "bad.sqlite" {
		t.Errorf("err %v, want *parse.Error naming the file", c.err)
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct{ name, scope string }{
		{"amass-v3-example-com.jsonl", ""},
		{"amass-v3-securecodebox-io.jsonl", ""},
		{"amass-v4-example-com.sqlite", "example.com"},
		{"amass-v4-text-beyondmachines-net.txt", "beyondmachines.net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseFile(t, tc.name, parse.Options{Scope: tc.scope})
			if c.err != nil {
				t.Fatal(c.err)
			}
			got, err := json.MarshalIndent(c.assets, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update and review the diff)\ngot:\n%s", golden, got)
			}
		})
	}
}

func TestTextGraph(t *testing.T) {
	in := "www.Example.com. (FQDN) --> a_record --> 192.0.2.1 (IPAddress)\r\n" +
		"\n" +
		"www.example.com (FQDN) --> aaaa_record --> 2001:DB8::1 (IPAddress)\n" +
		"192.0.2.0/24 (Netblock) --> contains --> 192.0.2.1 (IPAddress)\n" +
		"64500 (ASN) --> announces --> 192.0.2.0/24 (Netblock)\n" +
		"64500 (ASN) --> managed_by --> EXAMPLE (AS) - Example, Inc (RIROrganization)\n" +
		"example.com (FQDN) --> mx_record --> mail.example.com (FQDN)"
	c := parseBytes(t, []byte(in), parse.Options{File: "t.txt", Scope: "example.com"})
	if c.err != nil {
		t.Fatal(c.err)
	}
	got, _ := json.Marshal(c.assets)
	want := `[{"type":"fqdn","value":"www.example.com","domain":"example.com","addresses":["192.0.2.1","2001:db8::1"]},` +
		`{"type":"fqdn","value":"example.com","domain":"example.com"},` +
		`{"type":"fqdn","value":"mail.example.com","domain":"example.com"},` +
		`{"type":"ip","value":"192.0.2.1","netblock":"192.0.2.0/24","asn":64500},` +
		`{"type":"ip","value":"2001:db8::1"},` +
		`{"type":"netblock","value":"192.0.2.0/24","asn":64500},` +
		`{"type":"asn","value":"64500","asn":64500,"description":"EXAMPLE (AS) - Example, Inc"}]`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestV3Dedup(t *testing.T) {
	in := `{"name":"a.example.com","domain":"example.com","addresses":[{"ip":"192.0.2.1","cidr":"192.0.2.0/24","asn":64500,"desc":"X"}],"tag":"dns","sources":["B","A"]}` + "\n" +
		`{"Timestamp":"2019-10-04T23:35:19+02:00","name":"b.example.com","domain":"example.com","addresses":[{"ip":"192.0.2.1","cidr":"192.0.2.0/24","asn":64500,"desc":"X"}],"tag":"cert","source":"Entrust"}` + "\n"
	c := parseBytes(t, []byte(in), parse.Options{File: "x.jsonl"})
	if c.err != nil {
		t.Fatal(c.err)
	}
	if c.count(finding.AssetFQDN) != 2 || c.count(finding.AssetIP) != 1 || c.count(finding.AssetNetblock) != 1 || c.count(finding.AssetASN) != 1 {
		b, _ := json.Marshal(c.assets)
		t.Errorf("assets %s: want 2 names and one each of ip, netblock, asn", b)
	}
	if got := strings.Join(c.assets[0].Sources, ","); got != "A,B" {
		t.Errorf("sources %q", got)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		lim      parse.Limits
		line     int
		target   error
	}{
		{"text junk", "a (FQDN) --> a_record --> 192.0.2.1 (IPAddress)\nhello world\n", parse.Limits{}, 2, parse.ErrFormat},
		{"jsonl not object", `{"name":"a.example"}` + "\n[1]\n", parse.Limits{}, 2, parse.ErrFormat},
		{"jsonl syntax", `{"name":"a.example"}` + "\n" + `{"name":}` + "\n", parse.Limits{}, 2, parse.ErrFormat},
		{"jsonl type", `{"name":"a.example","addresses":"x"}`, parse.Limits{}, 1, parse.ErrFormat},
		{"line too long", `{"name":"` + strings.Repeat("a", 100) + `"}`, parse.Limits{MaxString: 50}, 1, parse.ErrLimit},
		{"depth", `{"name":"a","x":[[[[[1]]]]]}`, parse.Limits{MaxDepth: 3}, 1, parse.ErrLimit},
		{"results", `{"name":"a"}` + "\n" + `{"name":"b"}` + "\n" + `{"name":"c"}`, parse.Limits{MaxResults: 2}, 3, parse.ErrLimit},
		{"bytes", `{"name":"a"}` + "\n" + `{"name":"b"}`, parse.Limits{MaxBytes: 15}, 2, parse.ErrLimit},
	} {
		c := parseBytes(t, []byte(tc.in), parse.Options{File: "f", Limits: tc.lim})
		var pe *parse.Error
		if !errors.As(c.err, &pe) || !errors.Is(c.err, tc.target) || pe.File != "f" || pe.Line != tc.line {
			t.Errorf("%s: err %v (line %d), want *parse.Error at line %d wrapping %v", tc.name, c.err, lineOf(pe), tc.line, tc.target)
		}
	}
}

func lineOf(pe *parse.Error) int {
	if pe == nil {
		return -1
	}
	return pe.Line
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]bool{
		"SQLite format 3\x00...":                                    true,
		`{"name":"a.example","domain":"example","addresses":[]}`:    true,
		"x.example (FQDN) --> a_record --> 192.0.2.1 (IPAddress)\n": true,
		`{"name":"a"}`:                  false,
		`{"template-id":"x"}`:           false,
		"hello\n":                       false,
		"":                              false,
		`{"runs":[],"version":"2.1.0"}`: false,
	} {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"amass-v3-example-com.jsonl", "amass-v3-securecodebox-io.jsonl", "amass-v4-text-beyondmachines-net.txt"} {
		b, err := os.ReadFile(corpusPath(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("a (FQDN) --> cname_record --> b (FQDN)\n1 (ASN) --> managed_by --> X (RIROrg)"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// SQLite input needs a temporary file and a real database engine;
		// the fuzzer targets the text and JSON line readers.
		if bytes.HasPrefix(data, []byte(SQLiteMagic)) {
			return
		}
		lim := parse.Limits{MaxBytes: 1 << 20, MaxDepth: 32, MaxString: 4096, MaxResults: 1000}
		n := 0
		st, err := Parse(context.Background(), bytes.NewReader(data), parse.Options{File: "fuzz", Limits: lim}, parse.Sink{
			Asset: func(a *finding.Asset) error {
				if a.Value == "" || a.Type == "" {
					t.Fatalf("incomplete asset %+v", a)
				}
				n++
				return nil
			},
		})
		if err != nil {
			var pe *parse.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *parse.Error", err, err)
			}
			return
		}
		if st.Assets != n {
			t.Fatalf("Stats.Assets %d, sink saw %d", st.Assets, n)
		}
	})
}
