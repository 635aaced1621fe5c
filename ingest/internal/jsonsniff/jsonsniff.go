// Package jsonsniff looks at the start of a file (at most a few tens of KB)
// and describes the first JSON value in it: whether it is an object, an
// array or something else, and which keys the first object carries at its
// top level. Format detection needs only that much, and reading a prefix
// keeps detection cheap on multi-gigabyte files. A prefix cut in the middle
// of a value is normal: the description covers what was seen before the cut
// or before the first syntax error.
package jsonsniff

import (
	"bytes"
	"encoding/json"
	"io"
)

// BOM is the UTF-8 byte order mark some Windows tools write.
var BOM = []byte{0xEF, 0xBB, 0xBF}

// TrimLeft drops a leading UTF-8 BOM and JSON whitespace.
func TrimLeft(b []byte) []byte {
	b = bytes.TrimPrefix(b, BOM)
	return bytes.TrimLeft(b, " \t\r\n")
}

// First describes the first JSON value of a prefix.
type First struct {
	// Kind is the first significant byte: '{', '[', 'n' (null), another
	// JSON literal's first byte, or 0 when the prefix holds no significant
	// byte at all.
	Kind byte
	// InArray is set when Keys describe the first element of a top-level
	// array rather than a top-level object.
	InArray bool
	// Elem is the first significant byte of the first array element (0 if
	// the array is empty or cut before it).
	Elem byte
	// Keys are the top-level keys of the first object, in order, as far as
	// the prefix goes.
	Keys []string
	// Strings holds the values of keys whose value is a string (shortened
	// to 200 bytes), so callers can look at "$schema" or "version".
	Strings map[string]string
}

// Has reports whether the object had the key.
func (f First) Has(key string) bool {
	for _, k := range f.Keys {
		if k == key {
			return true
		}
	}
	return false
}

// HasAny reports whether the object had any of the keys.
func (f First) HasAny(keys ...string) bool {
	for _, k := range keys {
		if f.Has(k) {
			return true
		}
	}
	return false
}

// maxKeys bounds the work on objects with absurd numbers of keys.
const maxKeys = 256

// Describe reads the first JSON value of prefix. It never fails: what could
// not be read is simply absent from the result.
func Describe(prefix []byte) First {
	b := TrimLeft(prefix)
	var f First
	if len(b) == 0 {
		return f
	}
	f.Kind = b[0]
	if f.Kind != '{' && f.Kind != '[' {
		return f
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return f
	}
	if f.Kind == '[' {
		rest := TrimLeft(b[dec.InputOffset():])
		if len(rest) == 0 || rest[0] == ']' {
			return f
		}
		f.Elem = rest[0]
		if f.Elem != '{' {
			return f
		}
		f.InArray = true
		if _, err := dec.Token(); err != nil {
			return f
		}
	}
	f.Strings = map[string]string{}
	for len(f.Keys) < maxKeys && dec.More() {
		t, err := dec.Token()
		if err != nil {
			return f
		}
		k, ok := t.(string)
		if !ok {
			return f
		}
		f.Keys = append(f.Keys, k)
		t, err = dec.Token()
		if err != nil {
			return f
		}
		switch v := t.(type) {
		case string:
			if len(v) > 200 {
				v = v[:200]
			}
			f.Strings[k] = v
		case json.Delim:
			if err := skip(dec); err != nil {
				return f
			}
		}
	}
	return f
}

// skip consumes the rest of an object or array whose opening delimiter has
// just been read.
func skip(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			default:
				depth--
			}
		}
	}
	return nil
}
