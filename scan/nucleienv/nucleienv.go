// Package nucleienv moves the files that the nuclei and amass libraries
// write while their packages initialise (and later, per engine) out of the
// user's home directory and into a directory owned by starpipe.
//
// The nuclei packages fix their paths in init functions: they read $HOME,
// $XDG_CONFIG_HOME, $XDG_CACHE_HOME and $TMPDIR, create
// $XDG_CONFIG_HOME/nuclei/..., ~/.config/uncover/provider-config.yaml and
// $TMPDIR/openssl.cnf, and remember those paths for the life of the process.
// Setting the variables in main is too late, because every package init runs
// before main.
//
// This package sets them in its own init, and that init is guaranteed to run
// before any package that touches files. Since Go 1.21 the specification fixes
// the order: packages are sorted by import path, and each step initialises
// the first package in that list whose imports are all initialised. This
// package imports only syscall. Package os imports syscall and sorts after
// "github.com/starpipe/...", so from the moment syscall is initialised this
// package is ready and precedes os in the list: it is therefore initialised
// before os, and so before every package that imports os — which includes
// every package that creates a file. The guarantee holds only while this
// package imports nothing but syscall (and the packages syscall itself
// needs); do not add imports here. TestInitOrder in scan/nuclei checks the
// effect on nuclei's own configuration paths.
//
// Any binary that imports scan/nuclei gets this behaviour, because
// scan/nuclei imports this package. The directory is chosen from the
// environment the process started with:
//
//   - STARPIPE_SCAN_HOME, when set, is used as is (it should be absolute);
//   - otherwise $XDG_STATE_HOME/starpipe/scanner, or
//     $HOME/.local/state/starpipe/scanner, or /tmp/starpipe-scanner-UID.
//
// Inside it, HOME becomes DIR/home, XDG_CONFIG_HOME DIR/home/.config,
// XDG_CACHE_HOME DIR/home/.cache and TMPDIR DIR/tmp, for the whole process.
// The values seen before are kept and returned by OriginalHome.
package nucleienv

import "syscall"

// HomeVar names the variable that selects the scanner state directory.
const HomeVar = "STARPIPE_SCAN_HOME"

// Variables set by init, in the order Env returns them.
const (
	homeVar       = "HOME"
	configHomeVar = "XDG_CONFIG_HOME"
	cacheHomeVar  = "XDG_CACHE_HOME"
	tmpDirVar     = "TMPDIR"
)

var (
	dir          string
	originalHome string
	original     = map[string]string{}
	initErr      error
)

func init() {
	for _, k := range []string{homeVar, configHomeVar, cacheHomeVar, tmpDirVar} {
		if v, ok := syscall.Getenv(k); ok {
			original[k] = v
		}
	}
	originalHome = original[homeVar]
	dir = chooseDir()
	for _, kv := range Env(dir) {
		k, v := split(kv)
		if err := syscall.Setenv(k, v); err != nil && initErr == nil {
			initErr = err
		}
	}
	for _, d := range []string{dir, dir + "/home", dir + "/home/.config", dir + "/home/.cache", dir + "/tmp"} {
		if err := mkdirAll(d); err != nil && initErr == nil {
			initErr = err
		}
	}
}

// chooseDir picks the state directory from the starting environment.
func chooseDir() string {
	if d, ok := syscall.Getenv(HomeVar); ok && d != "" {
		return clean(d)
	}
	if d, ok := syscall.Getenv("XDG_STATE_HOME"); ok && d != "" {
		return clean(d) + "/starpipe/scanner"
	}
	if originalHome != "" {
		return clean(originalHome) + "/.local/state/starpipe/scanner"
	}
	return "/tmp/starpipe-scanner-" + itoa(syscall.Getuid())
}

// Env returns the environment, as KEY=VALUE entries, under which a process
// keeps every nuclei file inside stateDir. A parent that starts a scan worker
// can append it to the child's environment; a process that imports
// scan/nuclei applies it to itself at init (see the package comment), so
// setting STARPIPE_SCAN_HOME alone is enough.
func Env(stateDir string) []string {
	d := clean(stateDir)
	return []string{
		HomeVar + "=" + d,
		homeVar + "=" + d + "/home",
		configHomeVar + "=" + d + "/home/.config",
		cacheHomeVar + "=" + d + "/home/.cache",
		tmpDirVar + "=" + d + "/tmp",
	}
}

// Dir returns the state directory chosen at init.
func Dir() string { return dir }

// OriginalHome returns $HOME as the process started with it, for code that
// must read the real user's files (for example ~/.pgpass).
func OriginalHome() string { return originalHome }

// Original returns the value that HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME or
// TMPDIR had when the process started, before init replaced it.
func Original(key string) (string, bool) {
	v, ok := original[key]
	return v, ok
}

// Err reports a failure to set a variable or create a directory at init.
// Scan runners refuse to run when it is not nil, because nuclei would then
// write wherever the defaults point.
func Err() error { return initErr }

func split(kv string) (string, string) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:]
		}
	}
	return kv, ""
}

// clean drops trailing slashes; path/filepath is not importable here.
func clean(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// mkdirAll creates p and its parents with mode 0700, like os.MkdirAll.
func mkdirAll(p string) error {
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		err := syscall.Mkdir(p[:i], 0o700)
		if err != nil && err != syscall.EEXIST {
			return err
		}
	}
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
