// Package sarif normalises SARIF logs (Static Analysis Results Interchange
// Format, version 2.1.0, with best-effort support for the 2.0.0 and 2.2
// shapes) into starpipe findings.
//
// The reader streams: it pulls JSON tokens itself (see lexer.go) and decodes
// one result at a time, so a 1 GB log parses in memory bounded by the
// largest single result and the run's rule metadata, not by the file.
//
// Key order in a run is free in JSON, and real tools differ: semgrep and
// gosec sort keys, which puts "results" before "tool" and "taxonomies".
// Resolving a result needs the whole rest of its run (rules, base URIs,
// artifacts, taxonomies), so:
//
//   - when the reader is an io.Seeker (a file, bytes.Reader), results are
//     skipped on first sight (a syntax scan, no allocation), the rest of the
//     run is decoded, and then the reader seeks back and streams the results.
//     Memory stays bounded whatever the key order, and the output does not
//     depend on key order at all.
//   - otherwise (a pipe, an upload stream) results that come after the
//     run's tool are streamed at once with the run metadata read so far,
//     and results that come before the tool are decoded and buffered
//     (bounded by Limits.MaxResults) until the end of the run. Run-level
//     properties that follow the results (rare) are then not applied to the
//     results already emitted.
//
// Counting: every result of kind fail, open, review or no kind is a finding
// (suppressed ones included, flagged); pass, informational and
// notApplicable results, and results whose baselineState is "absent" (the
// issue is gone), are counted in Stats.NotFindings and not emitted.
package sarif

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/starpipe/starpipe/ingest/parse"
)

// compile-time check that Parse matches the shared parser signature.
var _ parse.Func = Parse

// Parse reads one SARIF log from r and hands each finding to sink as soon
// as it is resolved. Errors caused by the input are *parse.Error values
// naming opt.File, the line and the byte offset, wrapping parse.ErrFormat
// or parse.ErrLimit. An error returned by the sink stops the parse and is
// returned wrapped.
func Parse(ctx context.Context, r io.Reader, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	file := opt.File
	if file == "" {
		file = "-"
	}
	p := &parser{ctx: ctx, opt: opt, sink: sink, lim: opt.Limits.WithDefaults()}
	if s, ok := r.(io.Seeker); ok {
		// Offsets reported and seeked to are relative to where the reader
		// stands now, so a caller that already consumed a prefix still gets
		// offsets into what it handed over.
		if off, err := s.Seek(0, io.SeekCurrent); err == nil {
			p.seeker, p.seekBase = s, off
		}
	}
	p.d = newLexer(r, file, p.lim, 0)
	p.parseLog()
	p.stats.Tools = sortedUnique(p.stats.Tools)
	switch {
	case p.stop != nil:
		return p.stats, p.stop
	case p.d.err != nil:
		return p.stats, p.d.err
	}
	return p.stats, nil
}

type parser struct {
	ctx      context.Context
	opt      parse.Options
	sink     parse.Sink
	lim      parse.Limits
	d        *lexer
	seeker   io.Seeker
	seekBase int64
	stats    parse.Stats
	results  int   // results decoded, for Limits.MaxResults
	stop     error // sink or context error; d.err is set too so loops end
}

// halt stops decoding with a non-input error (sink, context, seek).
func (p *parser) halt(err error) {
	if p.stop == nil {
		p.stop = err
	}
	if p.d.err == nil {
		p.d.err = err
	}
}

func (p *parser) parseLog() {
	d := p.d
	// A UTF-8 byte order mark is not JSON but several Windows tools write
	// one; skip it.
	if d.fill(3) || d.end > 0 {
		if d.end-d.pos >= 3 && d.buf[0] == 0xEF && d.buf[1] == 0xBB && d.buf[2] == 0xBF {
			d.pos += 3
		}
	}
	c, ok := d.peek()
	if d.err != nil {
		return
	}
	if !ok {
		d.errAt("empty file: no SARIF log")
		return
	}
	if c != '{' {
		d.unexpected("'{' starting a SARIF log object")
		return
	}
	d.beginObj()
	for d.objMore() {
		switch string(d.key()) {
		case "version":
			p.checkVersion()
		case "$schema":
			line, off := d.line, d.offset()
			s := strings.ToLower(d.strVal())
			if strings.Contains(s, "sarif-1.") || strings.Contains(s, "sarif-schema-1.") {
				d.err = &parse.Error{File: d.file, Line: line, Offset: off, Err: fmt.Errorf("unsupported SARIF version 1.0.0 ($schema %q): %w", s, parse.ErrFormat)}
			}
		case "runs":
			if d.null() {
				continue
			}
			if c, ok := d.peek(); ok && c != '[' {
				d.errAt("runs is not an array")
				continue
			}
			d.beginArr()
			for d.arrMore() {
				p.run()
			}
		default:
			d.skip()
		}
	}
	if d.err != nil {
		return
	}
	if _, ok := d.peek(); ok {
		d.errAt("unexpected data after the SARIF log object")
	}
}

// checkVersion rejects SARIF 1.x, whose shape (results with bare-string
// messages, resultFile locations, rules keyed by id) is not what this reader
// understands, and any other major version than 2. A missing version is
// accepted: some producers leave it out.
func (p *parser) checkVersion() {
	d := p.d
	line, off := d.line, d.offset()
	v := d.strVal()
	if d.err != nil || v == "" || strings.HasPrefix(v, "2.") || v == "2" {
		return
	}
	d.err = &parse.Error{File: d.file, Line: line, Offset: off, Err: fmt.Errorf("unsupported SARIF version %s: %w", v, parse.ErrFormat)}
}

// segment is the place of a results array to come back to.
type segment struct {
	off         int64
	line, depth int
}

func (p *parser) run() {
	d := p.d
	if !d.beginObj() {
		return // null or a non-object run: nothing to read
	}
	p.stats.Runs++
	rc := &runCtx{}
	var pending []segment
	var buffered []rawResult
	for d.objMore() {
		switch string(d.key()) {
		case "tool":
			d.decodeTool(rc)
		case "originalUriBaseIds":
			d.decodeBases(rc)
		case "artifacts", "files":
			d.decodeArtifacts(rc)
		case "logicalLocations":
			d.decodeLogicals(rc)
		case "taxonomies":
			d.decodeTaxonomies(rc)
		case "versionControlProvenance":
			d.decodeVCP(rc)
		case "resources": // SARIF 2.0.0: run.resources.rules
			if d.beginObj() {
				for d.objMore() {
					if string(d.key()) == "rules" {
						rc.driver.rules = d.decodeRules(rc.driver.rules)
					} else {
						d.skip()
					}
				}
			}
		case "results":
			if d.null() {
				continue // "not computed": no results
			}
			c, ok := d.peek()
			if !ok {
				d.unexpected("a value")
				continue
			}
			if c != '[' {
				d.errAt("run.results is not an array (found %s)", jsonKind(c))
				continue
			}
			switch {
			case p.seeker != nil:
				pending = append(pending, segment{off: d.offset(), line: d.line, depth: d.depth})
				d.skip()
			case rc.toolSeen:
				rc.driver.index()
				p.streamResults(rc)
			default:
				buffered = p.bufferResults(buffered)
			}
		default:
			d.skip()
		}
	}
	if d.err != nil {
		return
	}
	if rc.driver.name != "" {
		p.stats.Tools = append(p.stats.Tools, rc.driver.name)
	}
	rc.driver.index()
	for i := range buffered {
		p.emit(rc, &buffered[i])
		if d.err != nil {
			return
		}
	}
	if len(pending) == 0 {
		return
	}
	back := segment{off: d.offset(), line: d.line, depth: d.depth}
	for _, s := range pending {
		if !p.seek(s) {
			return
		}
		p.streamResults(rc)
		if d.err != nil {
			return
		}
	}
	p.seek(back)
}

// seek moves the reader and the lexer to a remembered place.
func (p *parser) seek(s segment) bool {
	if _, err := p.seeker.Seek(p.seekBase+s.off, io.SeekStart); err != nil {
		p.halt(&parse.Error{File: p.d.file, Line: s.line, Offset: s.off, Err: fmt.Errorf("seeking back to the results: %w", err)})
		return false
	}
	p.d.reset(s.off, s.line, s.depth)
	return true
}

// countResult enforces Limits.MaxResults before a result is decoded.
func (p *parser) countResult() bool {
	d := p.d
	if _, ok := d.peek(); !ok {
		return false
	}
	p.results++
	if p.lim.MaxResults >= 0 && p.results > p.lim.MaxResults {
		d.limitAt("more than %d results", p.lim.MaxResults)
		return false
	}
	if p.results%512 == 0 {
		if err := p.ctx.Err(); err != nil {
			p.halt(fmt.Errorf("parsing %s: %w", d.file, err))
			return false
		}
	}
	return true
}

// streamResults decodes a results array one result at a time, emitting each.
func (p *parser) streamResults(rc *runCtx) {
	d := p.d
	if !d.beginArr() {
		return
	}
	var rr rawResult
	for d.arrMore() {
		if !p.countResult() {
			return
		}
		d.decodeResult(&rr)
		if d.err != nil {
			return
		}
		p.emit(rc, &rr)
	}
}

// bufferResults decodes a results array that came before the run's tool on
// a reader that cannot seek.
func (p *parser) bufferResults(into []rawResult) []rawResult {
	d := p.d
	if !d.beginArr() {
		return into
	}
	for d.arrMore() {
		if !p.countResult() {
			return into
		}
		into = append(into, rawResult{})
		d.decodeResult(&into[len(into)-1])
	}
	return into
}

func (p *parser) emit(rc *runCtx, rr *rawResult) {
	f, ok := p.build(rc, rr)
	if !ok {
		p.stats.NotFindings++
		return
	}
	p.stats.Findings++
	if f.Suppressed {
		p.stats.Suppressed++
	}
	if p.sink.Finding != nil {
		if err := p.sink.Finding(f); err != nil {
			p.halt(fmt.Errorf("sarif %s: sink: %w", p.d.file, err))
		}
	}
}

func jsonKind(c byte) string {
	switch {
	case c == '{':
		return "an object"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || isDigit(c):
		return "a number"
	}
	return fmt.Sprintf("%q", c)
}
