// Package wordlist reads the amass word lists an admin keeps in
// amass.wordlist_dir. Schedules name a list by its file name only; this is
// the one place that turns a name into a file, and it refuses anything
// that would read outside the directory.
package wordlist

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MaxWords bounds a list: brute forcing sends one DNS query per word and
// domain, so a larger list is a mistake or an attempt to flood resolvers.
const MaxWords = 1_000_000

// CheckName refuses names that are not a plain file name.
func CheckName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a file name", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q: give a file name in amass.wordlist_dir, without a path", name)
	case strings.ContainsRune(name, 0):
		return errors.New("contains a NUL byte")
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q: hidden files are not word lists", name)
	}
	return nil
}

// Path returns the file that name stands for in dir, after following
// symlinks, and refuses one that ends up outside dir or is not a regular
// file.
func Path(dir, name string) (string, error) {
	if dir == "" {
		return "", errors.New("no amass.wordlist_dir is configured; give the words inline (amass.wordlist)")
	}
	if err := CheckName(name); err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("amass.wordlist_dir: %w", err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("amass.wordlist_dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no word list %q in amass.wordlist_dir", name)
	}
	if err != nil {
		return "", fmt.Errorf("word list %q: %w", name, err)
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("word list %q links outside amass.wordlist_dir", name)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("word list %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("word list %q is not a regular file", name)
	}
	return real, nil
}

// Read returns the words of the named list: one per line, blank lines and
// '#' comments skipped.
func Read(dir, name string) ([]string, error) {
	p, err := Path(dir, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("word list %q: %w", name, err)
	}
	defer f.Close()
	// The file checked must be the file opened: a symlink swapped in
	// between would otherwise be followed.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("word list %q is not a regular file", name)
	} else if li, err := os.Lstat(p); err != nil || !os.SameFile(fi, li) {
		return nil, fmt.Errorf("word list %q changed while it was opened", name)
	}
	var words []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(words) == MaxWords {
			return nil, fmt.Errorf("word list %q has more than %d words", name, MaxWords)
		}
		words = append(words, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading word list %q: %w", name, err)
	}
	return words, nil
}
