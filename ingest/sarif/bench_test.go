package sarif

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sarif/internal/sarifgen"
)

// benchResults makes the synthetic log about 50 MB.
const benchResults = 42_000

var benchData = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	if err := sarifgen.Write(&buf, benchResults); err != nil {
		panic(err)
	}
	return buf.Bytes()
})

// fullLog is a conventional encoding/json model of the SARIF the generator
// writes: the reference a non-streaming reader would use.
type fullLog struct {
	Schema  string    `json:"$schema"`
	Version string    `json:"version"`
	Runs    []fullRun `json:"runs"`
}

type fullRun struct {
	Tool struct {
		Driver struct {
			Name            string     `json:"name"`
			SemanticVersion string     `json:"semanticVersion"`
			Rules           []fullRule `json:"rules"`
		} `json:"driver"`
	} `json:"tool"`
	Artifacts []struct {
		Location fullArtifactLocation `json:"location"`
	} `json:"artifacts"`
	Results    []fullResult `json:"results"`
	ColumnKind string       `json:"columnKind"`
}

type fullRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	ShortDescription     fullMessage    `json:"shortDescription"`
	FullDescription      fullMessage    `json:"fullDescription"`
	DefaultConfiguration map[string]any `json:"defaultConfiguration"`
	Properties           map[string]any `json:"properties"`
}

type fullMessage struct {
	Text      string   `json:"text"`
	Markdown  string   `json:"markdown"`
	ID        string   `json:"id"`
	Arguments []string `json:"arguments"`
}

type fullArtifactLocation struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId"`
	Index     *int   `json:"index"`
}

type fullLocation struct {
	ID               int `json:"id"`
	PhysicalLocation struct {
		ArtifactLocation fullArtifactLocation `json:"artifactLocation"`
		Region           struct {
			StartLine   int `json:"startLine"`
			StartColumn int `json:"startColumn"`
			EndLine     int `json:"endLine"`
			EndColumn   int `json:"endColumn"`
			Snippet     struct {
				Text string `json:"text"`
			} `json:"snippet"`
		} `json:"region"`
	} `json:"physicalLocation"`
	Message fullMessage `json:"message"`
}

type fullResult struct {
	RuleID    string `json:"ruleId"`
	RuleIndex *int   `json:"ruleIndex"`
	Rule      struct {
		ID    string `json:"id"`
		Index *int   `json:"index"`
	} `json:"rule"`
	Level               string            `json:"level"`
	Message             fullMessage       `json:"message"`
	Locations           []fullLocation    `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Fingerprints        map[string]string `json:"fingerprints"`
	CodeFlows           []struct {
		ThreadFlows []struct {
			Locations []struct {
				Location fullLocation `json:"location"`
			} `json:"locations"`
		} `json:"threadFlows"`
	} `json:"codeFlows"`
	RelatedLocations []fullLocation `json:"relatedLocations"`
	Properties       map[string]any `json:"properties"`
}

func BenchmarkParse(b *testing.B) {
	data := benchData()
	b.Run("impl=starpipe", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			st, err := Parse(context.Background(), bytes.NewReader(data), parse.Options{File: "bench"},
				parse.Sink{Finding: func(*finding.Finding) error { n++; return nil }})
			if err != nil || st.Findings != benchResults || n != benchResults {
				b.Fatalf("%+v %v", st, err)
			}
		}
	})
	b.Run("impl=starpipe-stream", func(b *testing.B) {
		// A reader that cannot seek: results follow the tool, so they stream
		// without the skip-then-revisit pass.
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			st, err := Parse(context.Background(), nonSeeker{bytes.NewReader(data)}, parse.Options{File: "bench"}, parse.Sink{})
			if err != nil || st.Findings != benchResults {
				b.Fatalf("%+v %v", st, err)
			}
		}
	})
	b.Run("impl=encoding-json-struct", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var log fullLog
			if err := json.Unmarshal(data, &log); err != nil || len(log.Runs[0].Results) != benchResults {
				b.Fatal(err)
			}
		}
	})
}
