package scoring

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestScoreLines(t *testing.T) {
	in := strings.Join([]string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:U\r",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/CR:L/IR:L/AR:L/MAV:P",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/" + strings.Repeat("E:H/", 100000),
		"CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/RC:U", // no final newline
	}, "\n")
	want := strings.Join([]string{
		"9.8 9.8 9.8 Critical",
		"error: empty vector",
		"9.8 7.8 7.8 High",
		"9.8 9.8 5.0 Medium",
		"0.0 0.0 0.0 None",
		"error: metric E: defined more than once",
		`error: metric AV: invalid value (allowed: N, A, L, P): "X"`,
		"10.0 9.2 9.2 Critical",
	}, "\n") + "\n"
	// One byte at a time, to exercise lines split across reads.
	var out bytes.Buffer
	invalid, err := ScoreLines(&out, iotest.OneByteReader(strings.NewReader(in)))
	if err != nil || invalid != 3 || out.String() != want {
		t.Errorf("invalid=%d err=%v\n got:\n%s\nwant:\n%s", invalid, err, out.String(), want)
	}
	out.Reset()
	if n, err := ScoreLines(&out, strings.NewReader("")); n != 0 || err != nil || out.Len() != 0 {
		t.Errorf("empty input: %d %v %q", n, err, out.String())
	}
	if n, err := ScoreLines(&out, strings.NewReader("\n")); n != 1 || err != nil || out.String() != "error: empty vector\n" {
		t.Errorf("one blank line: %d %v %q", n, err, out.String())
	}
	boom := errors.New("boom")
	if _, err := ScoreLines(&out, iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error lost: %v", err)
	}
}

// TestScoreLinesHuge: a line far larger than the reader's buffer is one
// error, in bounded memory, and the next line is still scored.
func TestScoreLinesHuge(t *testing.T) {
	in := "CVSS:3.1/" + strings.Repeat("A", 5<<20) + "\nCVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\n"
	var out bytes.Buffer
	n, err := ScoreLines(&out, strings.NewReader(in))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if err != nil || n != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], `error: unknown metric: "AAAA`) || len(lines[0]) > 200 || lines[1] != "9.8 9.8 9.8 Critical" {
		t.Errorf("n=%d err=%v out=%.300q", n, err, out.String())
	}
}
