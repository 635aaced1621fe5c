package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/starpipe/starpipe/vault"
)

// devKeyFile is the master key `starpipe dev` creates in its state
// directory when no key is configured.
const devKeyFile = "master.key"

// oldKeySuffix names the copies `keys rotate` keeps of replaced key files:
// KEYFILE.<key id>.old.
const oldKeySuffix = ".old"

// keySource says where the current master key came from, which decides
// what `keys rotate` may do with it.
type keySource struct {
	env  bool   // STARPIPE_MASTER_KEY
	file string // the key file, when not env
}

func (s keySource) String() string {
	if s.env {
		return vault.EnvMasterKey
	}
	return s.file
}

// loadOrCreateKeyring returns the keyring the daemon seals and opens
// credentials with. STARPIPE_MASTER_KEY wins; else keyFile (vault.key_file)
// must exist; else, when stateDir is given (only `starpipe dev` passes one),
// <stateDir>/master.key is loaded, or created with mode 0600 on first
// start. `serve` passes "" so that a production daemon never invents a key:
// one it made up would leave every stored credential unreadable.
func loadOrCreateKeyring(stateDir, keyFile string) (*vault.Keyring, error) {
	kr, _, err := loadKeyring(stateDir, keyFile, true)
	return kr, err
}

// loadKeyring is loadOrCreateKeyring with creation optional, for commands
// that must use the daemon's key rather than make one.
//
// With a key file, copies of replaced keys that `keys rotate` left next to
// it (KEYFILE.<id>.old) are loaded as decrypt-only keys: a credential that a
// daemon still running with the old key saved during a rotation stays
// readable, and the next rotation moves it to the current key.
func loadKeyring(stateDir, keyFile string, create bool) (*vault.Keyring, keySource, error) {
	cur, src, err := currentKey(stateDir, keyFile, create)
	if err != nil {
		return nil, keySource{}, err
	}
	var old []vault.Key
	if !src.env {
		if old, err = oldKeys(src.file); err != nil {
			return nil, keySource{}, err
		}
	}
	kr, err := vault.NewKeyring(cur, old...)
	if err != nil {
		return nil, keySource{}, err
	}
	return kr, src, nil
}

func currentKey(stateDir, keyFile string, create bool) (vault.Key, keySource, error) {
	k, err := vault.KeyFromEnv()
	if err == nil {
		return k, keySource{env: true}, nil
	}
	if !errors.Is(err, vault.ErrNoKey) {
		return vault.Key{}, keySource{}, err
	}
	if keyFile != "" {
		k, err := vault.LoadKeyFile(keyFile)
		return k, keySource{file: keyFile}, err
	}
	if stateDir == "" {
		return vault.Key{}, keySource{}, vault.ErrNoKey
	}
	path := filepath.Join(stateDir, devKeyFile)
	k, err = vault.LoadKeyFile(path)
	switch {
	case err == nil:
		return k, keySource{file: path}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return vault.Key{}, keySource{}, err
	case !create:
		return vault.Key{}, keySource{}, fmt.Errorf("no master key: set %s, configure vault.key_file, or start `starpipe dev` once to create %s", vault.EnvMasterKey, path)
	}
	if k, err = vault.GenerateKey(); err != nil {
		return vault.Key{}, keySource{}, err
	}
	if err := vault.WriteKeyFile(path, k); err != nil {
		// Another process created it first (WriteKeyFile never
		// overwrites): use that one.
		if errors.Is(err, fs.ErrExist) {
			k, err := vault.LoadKeyFile(path)
			return k, keySource{file: path}, err
		}
		return vault.Key{}, keySource{}, err
	}
	return k, keySource{file: path}, nil
}

// oldKeys loads the KEYFILE.*.old copies next to keyFile.
func oldKeys(keyFile string) ([]vault.Key, error) {
	paths, err := filepath.Glob(globEscape(keyFile) + ".*" + oldKeySuffix)
	if err != nil {
		return nil, fmt.Errorf("looking for old key files: %w", err)
	}
	var keys []vault.Key
	for _, p := range paths {
		k, err := vault.LoadKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("old key file: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// globEscape quotes the glob metacharacters in a path.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// keepOldKey hard-links keyFile (holding old) to KEYFILE.<id>.old, so that
// the old key survives the swap and the link shares the file's 0600 mode.
// An existing copy of the same key (from an interrupted rotation) is fine.
func keepOldKey(keyFile string, old vault.Key) (string, error) {
	dst := keyFile + "." + old.ID() + oldKeySuffix
	err := os.Link(keyFile, dst)
	if errors.Is(err, fs.ErrExist) {
		if k, lerr := vault.LoadKeyFile(dst); lerr == nil && k.ID() == old.ID() {
			return dst, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("keeping the old key as %s: %w", dst, err)
	}
	return dst, nil
}

// syncDir makes renames and links in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
