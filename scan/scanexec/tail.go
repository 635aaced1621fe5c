package scanexec

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxLineBytes bounds one kept line of standard error.
const maxLineBytes = 2 << 10

// tailWriter keeps the last lines of the scanner's standard error, each
// with the job's secrets removed, and the first line that says why a Go
// program crashed ("panic: ...", "fatal error: ..."): a crash prints a
// goroutine dump after it, which would push it out of the tail.
type tailWriter struct {
	mu      sync.Mutex
	max     int
	redact  func(string) string
	tee     io.Writer
	partial []byte
	kept    []string
	crash   string
}

func newTailWriter(max int, redact func(string) string, tee io.Writer) *tailWriter {
	return &tailWriter{max: max, redact: redact, tee: tee}
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			// Keep at most one line's worth of an unfinished line.
			room := maxLineBytes - len(t.partial)
			if room > 0 {
				t.partial = append(t.partial, p[:min(room, len(p))]...)
			}
			break
		}
		line := append(t.partial, p[:min(i, max(0, maxLineBytes-len(t.partial)))]...)
		t.partial = nil
		t.add(string(line))
		p = p[i+1:]
	}
	return n, nil
}

// add keeps one complete line.
func (t *tailWriter) add(line string) {
	line = t.redact(strings.TrimRight(line, "\r"))
	if t.tee != nil {
		_, _ = io.WriteString(t.tee, line+"\n")
	}
	if t.crash == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		t.crash = line
	}
	if strings.TrimSpace(line) == "" {
		return
	}
	t.kept = append(t.kept, line)
	if len(t.kept) > t.max {
		t.kept = t.kept[len(t.kept)-t.max:]
	}
}

// flush keeps an unfinished last line.
func (t *tailWriter) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.partial) > 0 {
		t.add(string(t.partial))
		t.partial = nil
	}
}

func (t *tailWriter) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.kept...)
}

func (t *tailWriter) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.kept) == 0 {
		return ""
	}
	return t.kept[len(t.kept)-1]
}

func (t *tailWriter) crashLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.crash
}
