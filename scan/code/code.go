// Package code runs one code scan: it clones a git repository (shallow,
// through go-git) into a temporary directory, runs a SARIF-producing
// command there (gosec, semgrep, trivy fs, ...) with a timeout and an output
// size limit, and streams the SARIF document to the caller, which ingests it
// with kind `code` and the repository as scope.
//
// The command runs without a shell, in its own process group, with a
// minimal environment: it never sees the daemon's environment or the clone
// token. When the scanner is root, the command runs as the unprivileged
// account SandboxUser (created by `make deps`), as the first process of a
// PID namespace of its own (everything it starts dies with it, setsid or
// not), in a work directory outside the daemon's state directory that
// only that account can enter. A repository holding a symbolic link that
// leads out of the checkout is refused before the command runs. Without
// root the command runs as the scanner's user, in a process group, and
// the scanner process (EnableSubreaper) kills whatever it leaves behind;
// it can then read what that user can read: run the daemon as root, or as
// a user of its own, accordingly. The whole temporary directory (checkout, HOME, TMPDIR) is removed
// before Run returns, whatever happened.
package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/starpipe/starpipe/scan/internal/procgroup"
)

// Defaults applied by Run to zero fields of Config.
const (
	DefaultTimeout        = 10 * time.Minute
	DefaultMaxOutputBytes = 256 << 20
)

// Config describes one code scan.
type Config struct {
	// Repository is what to clone: an http://, https:// or file:// URL, or
	// a local path to a repository. SSH (ssh://, git@host:path) is refused:
	// starpipe holds no SSH keys. Credentials embedded in an http(s) URL
	// are used for the clone but kept out of the checkout's .git/config and
	// out of errors.
	Repository string
	// Ref is the branch or tag to scan (a short name such as "main" or
	// "v1.2.0", or a full "refs/heads/..." or "refs/tags/..." name). Empty
	// means the remote's default branch.
	Ref string
	// Command is the argv of the scanner, run in the checkout without a
	// shell, e.g. {"gosec", "-fmt", "sarif", "./..."}. A relative program
	// path ("./scripts/scan.sh") is taken relative to the checkout.
	Command []string
	// Token is an optional HTTP token for the clone, sent as the password
	// of basic auth with user "x-access-token" (what GitHub, GitLab and
	// Gitea accept). It is a credential: it only goes to an https
	// repository (or http on loopback), and never into errors or output.
	Token string
	// Timeout bounds the clone and, separately, the command (DefaultTimeout
	// when zero).
	Timeout time.Duration
	// MaxOutputBytes bounds the SARIF output (DefaultMaxOutputBytes when
	// zero).
	MaxOutputBytes int64
	// WorkDir is where the temporary directory is made (os.TempDir() when
	// empty).
	WorkDir string
	// OutputFile, when set, is the path, relative to the checkout, where
	// the command writes its SARIF; Run reads it instead of the command's
	// standard output (which then only feeds error messages).
	OutputFile string
	// Env holds extra "KEY=value" entries for the command, added to (and
	// overriding) its minimal environment of PATH, HOME and TMPDIR.
	Env []string
}

// Result describes a finished code scan. Run returns it filled as far as
// the scan got, on error too.
type Result struct {
	// Commit is the full hash of the commit that was scanned.
	Commit string
	// Bytes is the number of bytes written to out.
	Bytes int64
	// Duration is the wall time of the whole run, clone included.
	Duration time.Duration
	// ExitCode is the command's exit status (-1 when it was killed or did
	// not start).
	ExitCode int
}

// Errors returned by Run, to be tested with errors.Is. The text of every
// error Run returns is free of the token and of URL credentials.
var (
	// ErrInvalidConfig marks a Config that Run refuses before doing
	// anything.
	ErrInvalidConfig = errors.New("invalid code scan config")
	// ErrClone marks a failed clone (unreachable server, bad credentials,
	// unknown ref, ...).
	ErrClone = errors.New("cloning repository")
	// ErrTimeout marks a clone or command that ran past Config.Timeout.
	ErrTimeout = errors.New("timeout")
	// ErrOutputTooLarge marks output beyond Config.MaxOutputBytes.
	ErrOutputTooLarge = errors.New("output larger than the limit")
	// ErrCommand marks a command that could not start, failed without
	// producing SARIF, or produced nothing.
	ErrCommand = errors.New("scan command failed")
)

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxOutputBytes == 0 {
		c.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if c.WorkDir == "" {
		c.WorkDir = os.TempDir()
	}
	return c
}

// Validate reports what is wrong with c, without touching the network or
// the disk, so that a schedule can be checked when it is saved.
func (c Config) Validate() error {
	if _, err := parseRepository(c.Repository, c.Token); err != nil {
		return err
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return fmt.Errorf("%w: command is empty", ErrInvalidConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	if c.MaxOutputBytes < 0 {
		return fmt.Errorf("%w: negative output limit", ErrInvalidConfig)
	}
	if c.Ref != "" {
		if _, err := parseRef(c.Ref); err != nil {
			return err
		}
	}
	if c.OutputFile != "" && !filepath.IsLocal(c.OutputFile) {
		// The checkout is the only place the command is meant to write to;
		// an absolute or ../ path would make Run read some other file.
		return fmt.Errorf("%w: output file %q is not a path inside the checkout", ErrInvalidConfig, c.OutputFile)
	}
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			// The entry is not quoted: it may be a bare secret.
			return fmt.Errorf("%w: env entry is not KEY=value", ErrInvalidConfig)
		}
	}
	return nil
}

// Run clones cfg.Repository, runs cfg.Command in the checkout and copies
// the SARIF it produces to out as it comes. When Run returns an error, what
// was already written to out must be discarded.
//
// A non-zero exit is a success when the output is a JSON object (after
// white space and a byte order mark): most SAST tools exit 1 when they
// found something.
func Run(ctx context.Context, cfg Config, out io.Writer) (res Result, err error) {
	start := time.Now()
	res.ExitCode = -1
	defer func() { res.Duration = time.Since(start) }()

	requestedWorkDir := cfg.WorkDir
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	src, err := parseRepository(cfg.Repository, cfg.Token)
	if err != nil {
		return res, err
	}

	sb, err := newSandbox()
	if err != nil {
		return res, err
	}
	workDir := cfg.WorkDir
	if sb.run {
		if requestedWorkDir == "" {
			// Not the scanner's TMPDIR: it lies in the state directory.
			workDir = DefaultSandboxDir
		}
		if err := checkReachable(workDir, sb.uid, sb.gid); err != nil {
			return res, err
		}
	}
	base, err := os.MkdirTemp(workDir, "starpipe-code-*")
	if err != nil {
		return res, fmt.Errorf("making work dir: %w", err)
	}
	defer func() {
		// A checkout left behind is source code lying around on disk:
		// failing to remove it is worth failing the run for.
		if rmErr := procgroup.RemoveTree(base); rmErr != nil && err == nil {
			err = fmt.Errorf("removing work dir %s: %w", base, rmErr)
		}
	}()
	dirs := workDirs{
		checkout: filepath.Join(base, "src"),
		home:     filepath.Join(base, "home"),
		tmp:      filepath.Join(base, "tmp"),
	}
	for _, d := range []string{dirs.home, dirs.tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return res, fmt.Errorf("making work dir: %w", err)
		}
	}

	res.Commit, err = clone(ctx, src, cfg.Ref, dirs.checkout, cfg.Timeout)
	if err != nil {
		return res, err
	}
	if err := checkSymlinks(dirs.checkout); err != nil {
		return res, err
	}
	if sb.run {
		// The whole work directory (0700) becomes the account's: the
		// analyser may write caches and its output file there, and no
		// other user can look in.
		if err := chownTree(base, sb.uid, sb.gid); err != nil {
			return res, fmt.Errorf("%w: handing the work directory to %s: %v", ErrSandbox, SandboxUser, err)
		}
	}
	res.ExitCode, res.Bytes, err = runCommand(ctx, cfg, dirs, sb, out, src.redactor)
	return res, err
}

// workDirs are the parts of a run's temporary directory.
type workDirs struct {
	checkout string // the clone; the command's working directory
	home     string // the command's HOME, so tool caches stay in the run
	tmp      string // the command's TMPDIR
}
