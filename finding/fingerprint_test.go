package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// Fingerprints are stored identities: a finding seen again must get the
// same one in every release, or every rescan would open it afresh. These
// values pin the encoding (uvarint length, label, uvarint length, value).
func TestFingerprintPinned(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{
			"labelled pairs",
			Fingerprint("rule", "go/sql-injection", "uri", "main.go"),
			"9059c82a0b93375f0d26a32ab06692c3fba900f4caf0226692e6631fa1885346",
		},
		{
			"tool fingerprint",
			ToolFingerprint("CodeQL", "primaryLocationLineHash/v1", "abc:1"),
			"da1ba006088915c4adbdc0bb9c72bfef2d86abbca34b7198473a64f8b67d082f",
		},
		{
			"no fields is the hash of nothing",
			Fingerprint(),
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %s, want %s", tt.got, tt.want)
			}
		})
	}
}

// The encoding is the documented one, computed independently here.
func TestFingerprintEncoding(t *testing.T) {
	raw := "\x04rule\x10go/sql-injection\x03uri\x07main.go"
	sum := sha256.Sum256([]byte(raw))
	if got, want := Fingerprint("rule", "go/sql-injection", "uri", "main.go"), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Fingerprint = %s, want sha256 of the length-prefixed fields %s", got, want)
	}
	// A value over 127 bytes takes a two-byte length.
	long := string(make([]byte, 200))
	sum = sha256.Sum256([]byte("\x01v\xc8\x01" + long))
	if got, want := Fingerprint("v", long), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("long value: %s, want %s", got, want)
	}
}

// Fields that differ only in where one ends and the next begins, or in
// their labels or order, must never collide.
func TestFingerprintDistinguishes(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{"boundary moves", []string{"x", "ab", "y", "c"}, []string{"x", "a", "y", "bc"}},
		{"value into label", []string{"ab", "c"}, []string{"a", "bc"}},
		{"labels differ", []string{"rule", "r1"}, []string{"uri", "r1"}},
		{"order differs", []string{"a", "1", "b", "2"}, []string{"b", "2", "a", "1"}},
		{"empty value versus absent", []string{"a", "1", "b", ""}, []string{"a", "1"}},
		{"case is significant", []string{"uri", "Main.go"}, []string{"uri", "main.go"}},
		{"trailing whitespace is significant", []string{"rule", "r1 "}, []string{"rule", "r1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if Fingerprint(tt.a...) == Fingerprint(tt.b...) {
				t.Fatalf("%q and %q share a fingerprint", tt.a, tt.b)
			}
		})
	}
}

func TestFingerprintDeterministic(t *testing.T) {
	want := Fingerprint("rule", "r", "uri", "u", "evidence", "e")
	for range 100 {
		if got := Fingerprint("rule", "r", "uri", "u", "evidence", "e"); got != want {
			t.Fatalf("second computation %s, first %s", got, want)
		}
	}
	// The builder gives the same as the convenience form, Sum does not
	// consume the fields, and fields added after a Sum extend them.
	var f Fingerprinter
	f.Add("rule", "r").Add("uri", "u")
	first := f.Sum()
	if again := f.Sum(); again != first {
		t.Fatalf("Sum twice: %s then %s", first, again)
	}
	if want := Fingerprint("rule", "r", "uri", "u"); first != want {
		t.Fatalf("Fingerprinter %s, Fingerprint %s", first, want)
	}
	if got := f.Add("evidence", "e").Sum(); got != want {
		t.Fatalf("after one more Add: %s, want %s", got, want)
	}
}

// A label without a value (an odd number of arguments) is a caller's
// mistake; it is left out rather than paired with nothing, so that it
// cannot be confused with an empty value.
func TestFingerprintOddArguments(t *testing.T) {
	if got, want := Fingerprint("rule", "r", "uri"), Fingerprint("rule", "r"); got != want {
		t.Fatalf("trailing label: %s, want %s", got, want)
	}
	if Fingerprint("rule", "r", "uri") == Fingerprint("rule", "r", "uri", "") {
		t.Fatal("trailing label must differ from an empty value")
	}
}

func TestToolFingerprint(t *testing.T) {
	base := ToolFingerprint("codeql", "primaryLocationLineHash/v1", "abc:1")
	tests := []struct {
		name             string
		tool, key, value string
		same             bool
	}{
		{"tool name case is normalised", "CodeQL", "primaryLocationLineHash/v1", "abc:1", true},
		{"another tool never collides", "semgrep", "primaryLocationLineHash/v1", "abc:1", false},
		{"fingerprint name is significant", "codeql", "primaryLocationStartColumnFingerprint/v1", "abc:1", false},
		{"value is significant", "codeql", "primaryLocationLineHash/v1", "abc:2", false},
		{"value case is significant", "codeql", "primaryLocationLineHash/v1", "ABC:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToolFingerprint(tt.tool, tt.key, tt.value)
			if (got == base) != tt.same {
				t.Fatalf("ToolFingerprint(%q, %q, %q) = %s; same as codeql's %s: %v, want %v", tt.tool, tt.key, tt.value, got, base, got == base, tt.same)
			}
		})
	}
	// Namespaced: a tool's fingerprint is not the bare hash of its value.
	if base == Fingerprint("name", "primaryLocationLineHash/v1", "value", "abc:1") {
		t.Fatal("tool fingerprint is not namespaced by tool")
	}
}
