package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/demo"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

// The options below are what `starpipe dev` adds to a daemon; `serve`
// uses none of them.

// WithAdminToken creates an admin token on first start and writes it to
// path, readable by this user only. Tokens are stored hashed, so a lost file
// cannot be recovered: a new token is minted instead.
func WithAdminToken(path string) Option {
	return func(o *options) {
		o.setups = append(o.setups, func(ctx context.Context, d *Daemon) error {
			return ensureAdminToken(ctx, d, path)
		})
	}
}

// exampleDemoAddr is the demo target's address as the shipped example
// schedules name it.
const exampleDemoAddr = "127.0.0.1:8081"

// WithExampleSchedules applies the example schedules shipped in the binary
// when no schedules file is configured. They are aimed at the demo target,
// so they are re-aimed at demoAddr, where it listens.
func WithExampleSchedules(demoAddr string) Option {
	return func(o *options) {
		o.setups = append(o.setups, func(ctx context.Context, d *Daemon) error {
			if d.cfg.Scheduler.SchedulesFile != "" {
				return nil // New applies the configured file
			}
			b, err := fs.ReadFile(configs.FS, "schedules.example.yaml")
			if err != nil {
				return err
			}
			b = bytes.ReplaceAll(b, []byte(exampleDemoAddr), []byte(demoAddr))
			return ApplySchedules(ctx, d.cfg, d.st, bytes.NewReader(b), "configs/schedules.example.yaml", d.log)
		})
	}
}

// WithDemoTarget serves the deliberately weak demo target on addr (a
// loopback address) beside the daemon, with its bearer token kept in
// tokenFile and stored in the vault as credential "demo-bearer", which the
// authenticated example schedule names. A busy port does not stop the
// daemon: only the demo schedules' scans fail ("unreachable").
func WithDemoTarget(addr, tokenFile string) Option {
	return func(o *options) {
		// A setup, so that the credential exists before the example
		// schedules that name it are saved.
		o.setups = append(o.setups, func(ctx context.Context, d *Daemon) error {
			_, err := demoToken(ctx, d, tokenFile, addr)
			return err
		})
		o.extras = append(o.extras, extra{name: "demo target", run: func(ctx context.Context, d *Daemon) error {
			token, err := demoToken(ctx, d, tokenFile, addr)
			if err != nil {
				return err
			}
			if err := demo.Serve(ctx, addr, token, d.opt.log); err != nil {
				d.log.Warn("demo target not started; use --demo-listen to pick another address", "err", err)
			}
			<-ctx.Done() // a part runs until interrupted
			return nil
		}})
	}
}

// demoToken returns the bearer token that opens the demo's admin area and
// makes sure the vault holds it as credential "demo-bearer", bound to the
// demo target's plain-http loopback address and nothing else.
func demoToken(ctx context.Context, d *Daemon, path, addr string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		b = []byte(hex.EncodeToString(raw))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", fmt.Errorf("write demo token: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("read demo token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if d.keyring == nil {
		return token, nil
	}
	scope := vault.Scope{Targets: []string{"http://" + addr + "/"}, AllowHTTP: true}
	m, err := d.st.CredentialMetadata(ctx, "demo-bearer")
	switch {
	case errors.Is(err, store.ErrNotFound):
		cred := vault.Credential{Name: "demo-bearer", Kind: vault.KindBearer, Secret: vault.Secret(token),
			Targets: scope.Targets, AllowHTTP: scope.AllowHTTP}
		if _, _, err := credentials.Save(ctx, d.st, d.keyring, cred, "starpipe-dev"); err != nil {
			return "", fmt.Errorf("store demo credential: %w", err)
		}
		d.log.Info("stored demo credential", "name", "demo-bearer")
	case err != nil:
		return "", fmt.Errorf("look up demo credential: %w", err)
	case len(m.Targets) == 0:
		// Stored by a version before credential targets.
		if err := credentials.SetTargets(ctx, d.st, "demo-bearer", scope, "starpipe-dev"); err != nil {
			return "", fmt.Errorf("set demo credential targets: %w", err)
		}
	}
	return token, nil
}

func ensureAdminToken(ctx context.Context, d *Daemon, path string) error {
	if _, err := os.Stat(path); err == nil {
		d.log.Info("admin token", "file", path)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin token file: %w", err)
	}
	name := "admin"
	if exists, err := d.st.TokenExists(ctx, name); err != nil {
		return fmt.Errorf("look up admin token: %w", err)
	} else if exists {
		name = "admin-" + strconv.Itoa(os.Getpid())
	}
	tok, err := d.st.CreateToken(ctx, name, "admin")
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	d.log.Info("created admin token", "file", path, "name", name)
	fmt.Fprintf(os.Stderr, "\nstarpipe: admin token written to %s\n  curl -H \"Authorization: Bearer $(cat %s)\" http://<listen>/v1/runs\n\n", path, path)
	return nil
}
