// Command measure1g writes a synthetic SARIF log of about 1 GB to a
// temporary file, parses it with sarif.Parse, prints the time, throughput
// and peak memory the Go runtime reports, and removes the file. It is a
// manual measurement for BENCHMARKS.sarif.md, not part of the test suite:
//
//	go run ./ingest/sarif/internal/measure1g [-results N]
//
// With -out PATH it only writes the file there and exits: the input of
// the daemon's memory measurement (scripts/bench-memory.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sarif"
	"github.com/starpipe/starpipe/ingest/sarif/internal/sarifgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "measure1g:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("results", 830_000, "results to generate (830k is about 1 GB)")
	out := flag.String("out", "", "write the file to this path and exit without parsing it")
	flag.Parse()
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		if err := sarifgen.Write(f, *n); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	f, err := os.CreateTemp("", "starpipe-sarif-*.sarif")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := sarifgen.Write(f, *n); err != nil {
		return err
	}
	size, err := f.Seek(0, 1)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	runtime.GC()
	stopPeak := make(chan struct{})
	peak := make(chan uint64)
	go samplePeak(stopPeak, peak)
	start := time.Now()
	var fps int
	st, err := sarif.Parse(context.Background(), f, parse.Options{File: f.Name()}, parse.Sink{
		Finding: func(*finding.Finding) error { fps++; return nil },
	})
	el := time.Since(start)
	close(stopPeak)
	peakHeap := <-peak
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("file %.1f MB, %d results, %d findings emitted, %d runs\n", float64(size)/1e6, st.Findings+st.NotFindings, fps, st.Runs)
	fmt.Printf("parse %.2fs, %.1f MB/s\n", el.Seconds(), float64(size)/1e6/el.Seconds())
	fmt.Printf("peak live heap (sampled every 10ms) %.1f MB; runtime Sys %.1f MB; HeapSys %.1f MB; total allocated %.0f MB\n",
		float64(peakHeap)/1e6, float64(ms.Sys)/1e6, float64(ms.HeapSys)/1e6, float64(ms.TotalAlloc)/1e6)
	return nil
}

// samplePeak records the largest live heap seen while parsing.
func samplePeak(stop <-chan struct{}, out chan<- uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		peak = max(peak, s[0].Value.Uint64())
		select {
		case <-stop:
			out <- peak
			return
		case <-t.C:
		}
	}
}
