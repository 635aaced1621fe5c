package wordlist

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "lists")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "top.txt"), "# common\nwww\n\n api \nmail\n")
	write(filepath.Join(base, "secret.txt"), "root:x:0:0\n")
	if err := os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(dir, "out.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("top.txt", filepath.Join(dir, "alias.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"top.txt", "alias.txt"} {
		got, err := Read(dir, name)
		if err != nil || !slices.Equal(got, []string{"www", "api", "mail"}) {
			t.Errorf("Read(%s) = %q, %v", name, got, err)
		}
	}
	tests := []struct{ dir, name, want string }{
		{dir, "../secret.txt", "without a path"},
		{dir, "/etc/passwd", "without a path"},
		{dir, `..\secret.txt`, "without a path"},
		{dir, "..", "not a file name"},
		{dir, "out.txt", "links outside"},
		{dir, "sub", "not a regular file"},
		{dir, "missing.txt", "no word list"},
		{dir, ".hidden", "hidden"},
		{"", "top.txt", "no amass.wordlist_dir"},
	}
	for _, tt := range tests {
		_, err := Read(tt.dir, tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Read(%q, %q) = %v, want an error containing %q", tt.dir, tt.name, err, tt.want)
		}
	}
}
