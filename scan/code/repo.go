package code

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// tokenUser is the basic-auth user name sent with Config.Token. GitHub
// wants it for installation tokens; GitLab and Gitea accept any name.
const tokenUser = "x-access-token"

// errSSH explains why SSH remotes are refused.
var errSSH = fmt.Errorf("%w: SSH repositories are not supported (starpipe holds no SSH keys); use an https URL and a token", ErrInvalidConfig)

// repoSource is a validated Config.Repository.
type repoSource struct {
	url      string               // what go-git clones, without credentials
	display  string               // for messages: url with any user info removed
	auth     transport.AuthMethod // nil for anonymous and local clones
	redactor redactor             // the credentials to keep out of errors
}

// parseRepository checks the repository and splits credentials off it.
// Its errors never quote the repository as given, which may hold a
// password.
func parseRepository(repo, token string) (repoSource, error) {
	var src repoSource
	src.redactor = newRedactor(token)
	if strings.TrimSpace(repo) == "" {
		return src, fmt.Errorf("%w: repository is empty", ErrInvalidConfig)
	}
	if strings.ContainsAny(repo, "\x00\r\n") {
		return src, fmt.Errorf("%w: repository contains control characters", ErrInvalidConfig)
	}
	scheme, _, hasScheme := strings.Cut(repo, "://")
	if !hasScheme {
		// Git reads "host:path" and "user@host:path" as SSH when the colon
		// comes before any slash; anything else is a local path.
		before, _, _ := strings.Cut(repo, "/")
		if strings.Contains(before, ":") {
			return src, errSSH
		}
		if token != "" {
			return src, fmt.Errorf("%w: a token is only sent to http(s) repositories, not to a local path", ErrInvalidConfig)
		}
		src.url, src.display = repo, repo
		return src, nil
	}
	switch strings.ToLower(scheme) {
	case "http", "https", "file":
	case "ssh", "git+ssh", "ssh+git":
		return src, errSSH
	default:
		return src, fmt.Errorf("%w: repository scheme %q is not supported (use https, http or file, or a local path)", ErrInvalidConfig, scheme)
	}
	u, err := url.Parse(repo)
	if err != nil {
		return src, fmt.Errorf("%w: repository is not a valid URL", ErrInvalidConfig)
	}
	var user, pass string
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
		// A lone user name is how some servers take a token
		// (https://TOKEN@host/repo), so it is a credential too.
		src.redactor.add(user, pass == "")
		src.redactor.add(pass, true)
		u.User = nil
	}
	src.url = u.String()
	src.display = src.url
	if u.Scheme == "file" {
		if token != "" || user != "" {
			return src, fmt.Errorf("%w: credentials are only sent to http(s) repositories, not to %s", ErrInvalidConfig, src.display)
		}
		return src, nil
	}
	if u.Host == "" {
		return src, fmt.Errorf("%w: repository URL %s has no host", ErrInvalidConfig, src.display)
	}
	if token != "" || user != "" {
		if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			return src, fmt.Errorf("%w: credentials would cross the network in clear text to %s; use https", ErrInvalidConfig, src.display)
		}
		src.auth = cloneAuth(token, user, pass)
	}
	return src, nil
}

// cloneAuth picks the basic-auth credentials of a clone: the token when
// there is one, otherwise what the URL carried.
func cloneAuth(token, user, pass string) transport.AuthMethod {
	if token != "" {
		return &githttp.BasicAuth{Username: tokenUser, Password: token}
	}
	if user == "" && pass == "" {
		return nil
	}
	return &githttp.BasicAuth{Username: user, Password: pass}
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseRef turns a full ref name into a plumbing name; a short name gives
// "" and is resolved against the remote by resolveRef.
func parseRef(ref string) (plumbing.ReferenceName, error) {
	if !strings.HasPrefix(ref, "refs/") {
		if err := plumbing.ReferenceName("refs/heads/" + ref).Validate(); err != nil {
			return "", fmt.Errorf("%w: ref %q is not a valid branch or tag name", ErrInvalidConfig, ref)
		}
		return "", nil
	}
	name := plumbing.ReferenceName(ref)
	if err := name.Validate(); err != nil {
		return "", fmt.Errorf("%w: ref %q is not a valid ref name", ErrInvalidConfig, ref)
	}
	// go-git's single-branch clone builds its refspec from the short name,
	// which is only right for branches and tags.
	if !name.IsBranch() && !name.IsTag() {
		return "", fmt.Errorf("%w: ref %q is neither a branch nor a tag", ErrInvalidConfig, ref)
	}
	return name, nil
}

// clone makes a shallow, single-branch checkout of ref (the default branch
// when empty) in dir and returns the hash of its HEAD commit.
func clone(ctx context.Context, src repoSource, ref, dir string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	fail := func(err error) (string, error) {
		if errors.Is(context.Cause(ctx), ErrTimeout) {
			return "", fmt.Errorf("%w %s: %w after %s", ErrClone, src.display, ErrTimeout, timeout)
		}
		if cerr := ctx.Err(); cerr != nil {
			return "", fmt.Errorf("%w %s: %w", ErrClone, src.display, cerr)
		}
		// go-git errors may quote the URL or a server's answer: they are
		// flattened to scrubbed text rather than wrapped.
		return "", fmt.Errorf("%w %s: %s", ErrClone, src.display, src.redactor.scrub(err.Error()))
	}

	var name plumbing.ReferenceName // "" is HEAD: the remote's default branch
	if ref != "" {
		var err error
		if name, err = parseRef(ref); err != nil {
			return "", err
		}
		if name == "" {
			if name, err = resolveRef(ctx, src, ref); err != nil {
				return fail(err)
			}
		}
	}
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
		URL:           src.url,
		Auth:          src.auth,
		ReferenceName: name,
		SingleBranch:  true,
		Depth:         1,
		Tags:          git.NoTags,
	})
	if err != nil {
		return fail(err)
	}
	head, err := repo.Head()
	if err != nil {
		return fail(err)
	}
	return head.Hash().String(), nil
}

// errRefNotFound is returned when a short ref names neither a branch nor a
// tag of the remote.
var errRefNotFound = errors.New("no such branch or tag")

// resolveRef finds whether a short name is a branch or a tag of the
// remote, branches first (as `git clone --branch` does).
func resolveRef(ctx context.Context, src repoSource, short string) (plumbing.ReferenceName, error) {
	remote := git.NewRemote(memory.NewStorage(), &gitconfig.RemoteConfig{
		Name: "origin",
		URLs: []string{src.url},
	})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: src.auth})
	if err != nil {
		return "", err
	}
	branch, tag := plumbing.NewBranchReferenceName(short), plumbing.NewTagReferenceName(short)
	var haveTag bool
	for _, r := range refs {
		switch r.Name() {
		case branch:
			return branch, nil
		case tag:
			haveTag = true
		}
	}
	if haveTag {
		return tag, nil
	}
	return "", fmt.Errorf("%w: %q", errRefNotFound, short)
}

// Scope is the finding scope of a code scan of repository: for http(s) the
// URL without credentials, with lower-case scheme and host and without a
// trailing "/" or ".git", so that a scheduled scan of
// https://github.com/org/repo.git and a CI upload scoped
// https://github.com/org/repo land on the same findings. Other forms come
// back with any credentials removed and otherwise as given.
func Scope(repository string) string {
	u, err := url.Parse(repository)
	// url.Parse has already lower-cased the scheme.
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return userInfo.ReplaceAllString(repository, "$1")
	}
	u.User = nil
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), ".git")
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
