package amass

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/internal/jsonsniff"
	"github.com/starpipe/starpipe/ingest/parse"
)

// lineReader yields lines with their number and offset and enforces the
// MaxString limit on each line.
type lineReader struct {
	br      *bufio.Reader
	file    string
	max     int
	line    int
	off     int64 // offset of the next line
	buf     []byte
	started bool
}

// next returns the next line without its end-of-line bytes, or io.EOF.
func (lr *lineReader) next() (text []byte, line int, off int64, err error) {
	lr.buf = lr.buf[:0]
	line, off = lr.line+1, lr.off
	for {
		chunk, err := lr.br.ReadSlice('\n')
		lr.buf = append(lr.buf, chunk...)
		lr.off += int64(len(chunk))
		if lr.max >= 0 && len(lr.buf) > lr.max+2 {
			return nil, line, off, &parse.Error{File: lr.file, Line: line, Offset: off,
				Err: fmt.Errorf("line longer than %d bytes: %w", lr.max, parse.ErrLimit)}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(lr.buf) == 0 {
				return nil, 0, 0, io.EOF
			}
			break
		}
		return nil, line, off, readError(lr.file, line, lr.off, err)
	}
	lr.line++
	text = bytes.TrimRight(lr.buf, "\r\n")
	if !lr.started {
		lr.started = true
		text = bytes.TrimPrefix(text, jsonsniff.BOM)
	}
	if lr.max >= 0 && len(text) > lr.max {
		return nil, line, off, &parse.Error{File: lr.file, Line: line, Offset: off,
			Err: fmt.Errorf("line longer than %d bytes: %w", lr.max, parse.ErrLimit)}
	}
	return text, line, off, nil
}

// v3 is one Amass v3 `enum -json` line. encoding/json matches keys without
// regard to case, which also covers v3.0's "Timestamp".
type v3 struct {
	Name      string      `json:"name"`
	Domain    string      `json:"domain"`
	Addresses []v3Address `json:"addresses"`
	Tag       string      `json:"tag"`
	Sources   []string    `json:"sources"`
	Source    string      `json:"source"`
}

type v3Address struct {
	IP   string `json:"ip"`
	CIDR string `json:"cidr"`
	ASN  int    `json:"asn"`
	Desc string `json:"desc"`
}

// parseLines reads v3 JSON lines or v4 text graph lines; the first
// non-blank line decides which.
func parseLines(ctx context.Context, br *bufio.Reader, opt parse.Options, lim parse.Limits, sink parse.Sink) (parse.Stats, error) {
	st := parse.Stats{Tools: []string{Tool}}
	lr := &lineReader{br: br, file: opt.File, max: lim.MaxString}
	send := func(a *finding.Asset, line int, off int64) error {
		if lim.MaxResults >= 0 && st.Assets >= lim.MaxResults {
			return &parse.Error{File: opt.File, Line: line, Offset: off,
				Err: fmt.Errorf("more than %d results: %w", lim.MaxResults, parse.ErrLimit)}
		}
		st.Assets++
		if sink.Asset != nil {
			if err := sink.Asset(a); err != nil {
				return fmt.Errorf("%s:%d: %w", opt.File, line, err)
			}
		}
		return nil
	}
	var (
		mode  byte // 0 undecided, 'j' JSON lines, 't' text graph
		g     *graph
		seen  = map[nodeKey]bool{} // JSON lines: IP, netblock and ASN assets already sent
		lastL int
		lastO int64
	)
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("%s: %w", opt.File, err)
		}
		text, line, off, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		lastL, lastO = line, off
		t := bytes.TrimSpace(text)
		if len(t) == 0 {
			continue
		}
		if mode == 0 {
			mode = 't'
			if t[0] == '{' {
				mode = 'j'
			} else {
				g = newGraph(lim.MaxResults)
			}
		}
		st.Runs++
		if mode == 'j' {
			if err := v3Line(t, opt.File, line, off, lim, seen, func(a *finding.Asset) error { return send(a, line, off) }); err != nil {
				return st, err
			}
			continue
		}
		e, ok := parseGraphLine(string(t))
		if !ok {
			return st, &parse.Error{File: opt.File, Line: line, Offset: off,
				Err: fmt.Errorf("not an Amass graph line (want `name (Type) --> relation --> name (Type)`): %w", parse.ErrFormat)}
		}
		from, err := g.add(e.fromType, e.from)
		if err == nil {
			var to *node
			if to, err = g.add(e.toType, e.to); err == nil {
				g.relate(from, e.rel, to)
			}
		}
		if err != nil {
			return st, &parse.Error{File: opt.File, Line: line, Offset: off, Err: err}
		}
	}
	if g != nil {
		if err := g.emit(opt.Scope, func(a *finding.Asset) error { return send(a, lastL, lastO) }); err != nil {
			return st, err
		}
	}
	return st, nil
}

// v3Line turns one v3 JSON line into an FQDN asset plus the address,
// netblock and ASN assets not sent before.
func v3Line(t []byte, file string, line int, off int64, lim parse.Limits, seen map[nodeKey]bool, send func(*finding.Asset) error) error {
	if t[0] != '{' {
		return &parse.Error{File: file, Line: line, Offset: off,
			Err: fmt.Errorf("not a JSON object: Amass JSON output has one object per line: %w", parse.ErrFormat)}
	}
	if d := jsonDepth(t); lim.MaxDepth >= 0 && d > lim.MaxDepth {
		return &parse.Error{File: file, Line: line, Offset: off,
			Err: fmt.Errorf("JSON nested deeper than %d: %w", lim.MaxDepth, parse.ErrLimit)}
	}
	var rec v3
	if err := json.Unmarshal(t, &rec); err != nil {
		return &parse.Error{File: file, Line: line, Offset: off, Err: fmt.Errorf("amass JSON line: %v: %w", err, parse.ErrFormat)}
	}
	name := normValue(typeFQDN, rec.Name)
	if name == "" {
		// Every v3 line names a host; a line without one is another
		// tool's JSON (nuclei read with --format amass, for instance).
		return &parse.Error{File: file, Line: line, Offset: off,
			Err: fmt.Errorf("JSON line without a \"name\": not Amass enum -json output: %w", parse.ErrFormat)}
	}
	a := &finding.Asset{
		Type:   finding.AssetFQDN,
		Value:  name,
		Domain: strings.TrimSuffix(strings.ToLower(strings.TrimSpace(rec.Domain)), "."),
	}
	src := slices.Clone(rec.Sources)
	if rec.Source != "" {
		src = append(src, rec.Source)
	}
	for i := range src {
		src[i] = strings.TrimSpace(src[i])
	}
	src = slices.DeleteFunc(src, func(s string) bool { return s == "" })
	slices.Sort(src)
	a.Sources = slices.Compact(src)

	var more []*finding.Asset
	for _, ad := range rec.Addresses {
		ip := normValue(typeIP, ad.IP)
		if ip == "" {
			continue
		}
		if !slices.Contains(a.Addresses, ip) {
			a.Addresses = append(a.Addresses, ip)
		}
		cidr := normValue(typeNetblock, ad.CIDR)
		if k := (nodeKey{typeIP, ip}); !seen[k] {
			seen[k] = true
			more = append(more, &finding.Asset{Type: finding.AssetIP, Value: ip, Netblock: cidr, ASN: ad.ASN})
		}
		if k := (nodeKey{typeNetblock, cidr}); cidr != "" && !seen[k] {
			seen[k] = true
			more = append(more, &finding.Asset{Type: finding.AssetNetblock, Value: cidr, ASN: ad.ASN})
		}
		if k := (nodeKey{typeASN, fmt.Sprint(ad.ASN)}); ad.ASN > 0 && !seen[k] {
			seen[k] = true
			more = append(more, &finding.Asset{Type: finding.AssetASN, Value: fmt.Sprint(ad.ASN), ASN: ad.ASN,
				Description: strings.TrimSpace(ad.Desc)})
		}
	}
	slices.Sort(a.Addresses)
	if err := send(a); err != nil {
		return err
	}
	for _, m := range more {
		if err := send(m); err != nil {
			return err
		}
	}
	return nil
}

// jsonDepth is the maximum nesting depth of a JSON text (strings skipped).
func jsonDepth(b []byte) int {
	depth, max := 0, 0
	inString, escape := false, false
	for _, c := range b {
		if inString {
			switch {
			case escape:
				escape = false
			case c == '\\':
				escape = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

// edge is one parsed v4 graph line.
type edge struct {
	from, fromType, rel, to, toType string
}

// parseGraphLine reads `name (Type) --> relation --> name (Type)`.
func parseGraphLine(s string) (edge, bool) {
	parts := strings.Split(s, " --> ")
	if len(parts) != 3 {
		return edge{}, false
	}
	var e edge
	var ok bool
	if e.from, e.fromType, ok = splitNode(parts[0]); !ok {
		return edge{}, false
	}
	if e.to, e.toType, ok = splitNode(parts[2]); !ok {
		return edge{}, false
	}
	e.rel = strings.TrimSpace(parts[1])
	if e.rel == "" || strings.ContainsAny(e.rel, " \t") {
		return edge{}, false
	}
	return e, true
}

// splitNode reads `name (Type)`; RIROrganization names contain spaces and
// may contain parentheses, so the type is the last parenthesised word.
func splitNode(s string) (name, typ string, ok bool) {
	s = strings.TrimSpace(s)
	if !strings.HasSuffix(s, ")") {
		return "", "", false
	}
	i := strings.LastIndex(s, " (")
	if i <= 0 {
		return "", "", false
	}
	name, typ = strings.TrimSpace(s[:i]), s[i+2:len(s)-1]
	if name == "" || typ == "" || strings.ContainsAny(typ, " ()") {
		return "", "", false
	}
	return name, typ, true
}
