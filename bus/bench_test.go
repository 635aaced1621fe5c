package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// benchFinding mirrors the shape of a normalised finding in a
// scan.results "findings" batch: mostly repeated vocabulary, plus hashes
// and identifiers that do not compress.
type benchFinding struct {
	Fingerprint string   `json:"fingerprint"`
	Scanner     string   `json:"scanner"`
	RuleID      string   `json:"rule_id"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	CVSSVector  string   `json:"cvss_vector"`
	Scope       string   `json:"scope"`
	Location    string   `json:"location"`
	Evidence    string   `json:"evidence"`
	CWE         []string `json:"cwe"`
	References  []string `json:"references"`
	ObservedAt  string   `json:"observed_at"`
}

var (
	benchRules = []string{"CVE-2021-44228", "CVE-2023-4863", "http-missing-security-headers", "tls-weak-cipher",
		"go/sql-injection", "js/xss", "exposed-git-directory", "open-redirect", "ssh-weak-kex", "outdated-nginx"}
	benchSev   = []string{"critical", "high", "medium", "low", "info"}
	benchHosts = []string{"api.example.com", "portal.example.com", "10.20.3.14", "build.internal.example.net", "git.example.org"}
)

// benchBatch returns a findings envelope of about size bytes; seed makes
// each batch different, as real batches are.
func benchBatch(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var fs []benchFinding
	for n := 0; n < size; n += 680 { // one finding encodes to roughly 680 bytes
		rule := benchRules[r.IntN(len(benchRules))]
		host := benchHosts[r.IntN(len(benchHosts))]
		h := sha256.Sum256([]byte(strconv.FormatUint(r.Uint64(), 10)))
		fs = append(fs, benchFinding{
			Fingerprint: hex.EncodeToString(h[:]),
			Scanner:     "nuclei",
			RuleID:      rule,
			Title:       "Detected " + rule + " on " + host,
			Severity:    benchSev[r.IntN(len(benchSev))],
			CVSSVector:  "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
			Scope:       "https://" + host,
			Location:    fmt.Sprintf("https://%s/app/v%d/resource/%d?id=%d", host, r.IntN(4), r.IntN(5000), r.Uint32()),
			Evidence:    fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: nginx/1.%d.%d\r\nX-Request-Id: %x\r\nContent-Type: text/html", r.IntN(25), r.IntN(10), r.Uint64()),
			CWE:         []string{"CWE-" + strconv.Itoa(20+r.IntN(900))},
			References:  []string{"https://nvd.nist.gov/vuln/detail/" + rule, "https://owasp.org/Top10/"},
			ObservedAt:  time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(86400)) * time.Second).Format(time.RFC3339),
		})
	}
	b, err := Encode(TypeFindings, map[string]any{"run_id": fmt.Sprintf("run-%d", seed), "findings": fs})
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkEndToEnd measures produce → embedded broker → consumer group
// with ~100 KB findings batches: Publish (acks=all) in calls of 8 messages
// from one goroutine while Consumer.Run handles and commits each message.
// Reported: throughput (MB/s of uncompressed values), messages per
// second, and bytes stored by the broker per message (compression).
func BenchmarkEndToEnd(b *testing.B) {
	const size, perPublish, distinct = 100_000, 8, 64
	payloads := make([][]byte, distinct)
	for i := range payloads {
		payloads[i] = benchBatch(uint64(i), size)
	}
	for _, comp := range []string{"none", "snappy", "lz4", "zstd"} {
		b.Run("compression="+comp, func(b *testing.B) {
			ctx := context.Background()
			e, err := StartEmbedded(ctx, EmbeddedConfig{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			cfg := Config{Brokers: e.Addrs(), Compression: comp}.WithDefaults()
			p := NewProducer(cfg, nil)
			defer p.Close()
			c := NewConsumer(cfg, "bench", TopicScanResults, nil)

			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			handled := 0
			runErr := make(chan error, 1)
			b.SetBytes(int64(len(payloads[0])))
			b.ResetTimer()
			start := time.Now()
			go func() {
				runErr <- c.Run(runCtx, func(context.Context, Message) error {
					if handled++; handled == b.N {
						stop()
					}
					return nil
				}, RunOptions{DLQ: p})
			}()
			for sent := 0; sent < b.N; {
				n := min(perPublish, b.N-sent)
				batch := make([]Message, n)
				for i := range batch {
					batch[i] = Message{Key: []byte("run-" + strconv.Itoa(sent+i)), Value: payloads[(sent+i)%distinct]}
				}
				if err := p.Publish(ctx, TopicScanResults, batch...); err != nil {
					b.Fatal(err)
				}
				sent += n
			}
			if err := <-runErr; err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			var stored int64
			for _, pi := range e.cluster.PartitionInfos(TopicScanResults) {
				stored += pi.NumBytes
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
			b.ReportMetric(float64(stored)/float64(b.N), "stored-B/msg")
		})
	}
}

// BenchmarkCodec measures what each compression costs the producer
// (compress) and the consumer (decompress) for one ~100 KB findings batch,
// using kafka-go's own codecs; it is CPU-bound, so less sensitive to a
// busy machine than BenchmarkEndToEnd.
func BenchmarkCodec(b *testing.B) {
	payload := benchBatch(7, 100_000)
	for _, name := range []string{"snappy", "lz4", "zstd", "gzip"} {
		comp, _ := parseCompression(name)
		codec := comp.Codec()
		var buf bytes.Buffer
		w := codec.NewWriter(&buf)
		w.Write(payload)
		w.Close()
		compressed := append([]byte(nil), buf.Bytes()...)
		b.Run("compression="+name+"/op=compress", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				buf.Reset()
				w := codec.NewWriter(&buf)
				w.Write(payload)
				w.Close()
			}
			b.ReportMetric(float64(len(payload))/float64(len(compressed)), "ratio")
		})
		b.Run("compression="+name+"/op=decompress", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				r := codec.NewReader(bytes.NewReader(compressed))
				io.Copy(io.Discard, r)
				r.Close()
			}
		})
	}
}
