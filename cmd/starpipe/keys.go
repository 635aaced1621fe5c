package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

func init() { subcommands = append(subcommands, newKeysCmd) }

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the master key that encrypts scan credentials",
	}
	cmd.AddCommand(newKeysGenerateCmd(), newKeysRotateCmd())
	return cmd
}

func newKeysGenerateCmd() *cobra.Command {
	var (
		out      string
		printKey bool
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate a new master key",
		Long: `Generate a new AES-256 master key.

With --out the key is written to a new file readable only by its owner
(mode 0600; an existing file is never overwritten) and only its key id is
printed. With --print the key itself is printed in base64, for example to
set ` + vault.EnvMasterKey + `; keep it out of shell history and logs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" && !printKey {
				return errors.New("keys generate: give --out FILE to write the key to a file, or --print to show it")
			}
			k, err := vault.GenerateKey()
			if err != nil {
				return err
			}
			if out != "" {
				if err := vault.WriteKeyFile(out, k); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (key id %s)\n", out, k.ID())
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "key id %s\n", k.ID())
			}
			if printKey {
				fmt.Fprintln(cmd.OutOrStdout(), k.Base64())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the key to this new file (mode 0600)")
	cmd.Flags().BoolVar(&printKey, "print", false, "print the key itself (base64) to standard output")
	return cmd
}

// keysRotateFlags are the flags of `starpipe keys rotate`.
type keysRotateFlags struct {
	cfgFile    string
	keyFile    string
	newKeyFile string
}

func newKeysRotateCmd() *cobra.Command {
	var fl keysRotateFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Re-encrypt every stored credential under a new master key",
		Long: `Re-encrypts every stored scan credential under a new master key, in one
database transaction: either every credential moves to the new key or,
on any error, none does.

The current key comes from ` + vault.EnvMasterKey + `, else vault.key_file (or
--key-file), else <state_dir>/` + devKeyFile + ` as created by ` + "`starpipe dev`" + `.
The database is database.url (or STARPIPE_DATABASE_URL).

With a key file and no --new-key-file, the steps are ordered so that no
crash can leave a credential without its key:

  1. a new key is written to KEYFILE.new (mode 0600) and synced; if that
     file exists from an interrupted run, it is reused instead;
  2. every credential is re-encrypted under it in one transaction;
  3. the old key file is kept as KEYFILE.<old key id>.old (a hard link),
     then KEYFILE.new is renamed over KEYFILE, which is atomic.

If step 2 fails nothing has changed and KEYFILE still holds the key in use.
If the command is interrupted after step 2, run it again: it picks up
KEYFILE.new and finishes the swap. KEYFILE.*.old files are loaded as
decrypt-only keys, so keep them until every credential is known to be under
the new key (a second rotation reporting 0 credentials shows it) and no
database backup taken before the rotation will be restored.

With --new-key-file FILE (needed when the key is in ` + vault.EnvMasterKey + `),
FILE is used if it exists (e.g. made by ` + "`starpipe keys generate --out`" + `) or
created, and no key file is swapped: point ` + vault.EnvMasterKey + ` or
vault.key_file at the new key yourself.

Either way, restart every starpipe process afterwards: until then they seal
new credentials with the old key and cannot open rotated ones.`,
		Example: `  starpipe keys rotate --config /etc/starpipe/starpipe.yaml
  starpipe keys rotate --key-file .starpipe/master.key
  STARPIPE_MASTER_KEY=... starpipe keys rotate --new-key-file /etc/starpipe/master.key.2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeysRotate(cmd, fl)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.cfgFile, "config", "c", "", "configuration file (YAML)")
	f.StringVar(&fl.keyFile, "key-file", "", "current master key file (default: vault.key_file, else <state_dir>/"+devKeyFile+")")
	f.StringVar(&fl.newKeyFile, "new-key-file", "", "the new key: used if the file exists, else generated and written there; the current key file is then left alone")
	return cmd
}

func runKeysRotate(cmd *cobra.Command, fl keysRotateFlags) error {
	cfg, err := config.Load(fl.cfgFile)
	if err != nil {
		return err
	}
	keyFile := cfg.Vault.KeyFile
	if fl.keyFile != "" {
		keyFile = fl.keyFile
	}
	cur, src, err := currentKey(cfg.StateDir, keyFile, false)
	if err != nil {
		return err
	}
	var old []vault.Key
	if !src.env {
		if old, err = oldKeys(src.file); err != nil {
			return err
		}
	}
	newPath, swap := fl.newKeyFile, false
	if newPath == "" {
		if src.env {
			return errors.New("keys rotate: the key comes from " + vault.EnvMasterKey + ", which cannot be replaced in place; give --new-key-file FILE")
		}
		newPath, swap = src.file+".new", true
	}
	if cfg.Database.URL == "" {
		return errors.New("keys rotate: database.url is not set (config file or STARPIPE_DATABASE_URL)")
	}
	next, made, err := loadOrWriteKey(newPath)
	if err != nil {
		return err
	}
	if next.ID() == cur.ID() {
		return fmt.Errorf("keys rotate: %s holds the current key (%s); give a new one", newPath, cur.ID())
	}
	out := cmd.OutOrStdout()
	if made {
		fmt.Fprintf(out, "wrote new key %s to %s\n", next.ID(), newPath)
	} else {
		fmt.Fprintf(out, "using new key %s from %s\n", next.ID(), newPath)
	}

	kr, err := vault.NewKeyring(next, append([]vault.Key{cur}, old...)...)
	if err != nil {
		return err
	}
	st, err := store.Open(cmd.Context(), cfg.Database.URL, store.WithMaxConns(2))
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := credentials.Rotate(cmd.Context(), st, kr, cliActor("keys-rotate"))
	if err != nil {
		return fmt.Errorf("keys rotate: no credential changed; %s still holds the key in use; run again to retry with the new key in %s: %w", src, newPath, err)
	}
	fmt.Fprintf(out, "re-encrypted %d credentials under key %s (was %s)\n", n, next.ID(), cur.ID())

	if !swap {
		fmt.Fprintf(out, "now point %s or vault.key_file at %s and restart every starpipe process; keep the old key until then\n", vault.EnvMasterKey, newPath)
		return nil
	}
	kept, err := keepOldKey(src.file, cur)
	if err != nil {
		return fmt.Errorf("keys rotate: credentials are under the new key in %s but the key file was not swapped: %w", newPath, err)
	}
	if err := os.Rename(newPath, src.file); err != nil {
		return fmt.Errorf("keys rotate: credentials are under the new key in %s but the key file was not swapped: %w", newPath, err)
	}
	if err := syncDir(filepath.Dir(src.file)); err != nil {
		return fmt.Errorf("keys rotate: syncing %s: %w", filepath.Dir(src.file), err)
	}
	fmt.Fprintf(out, "%s now holds key %s; the old key is kept as %s\nrestart every starpipe process to use the new key\n", src.file, next.ID(), kept)
	return nil
}

// loadOrWriteKey loads the key file at path, or generates a key and writes
// it there when the file does not exist, reporting whether it made one.
func loadOrWriteKey(path string) (vault.Key, bool, error) {
	k, err := vault.LoadKeyFile(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return vault.Key{}, false, err
	}
	if k, err = vault.GenerateKey(); err != nil {
		return vault.Key{}, false, err
	}
	if err := vault.WriteKeyFile(path, k); err != nil {
		return vault.Key{}, false, err
	}
	return k, true, nil
}

// cliActor names the person running a command in the activity log.
func cliActor(command string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli:" + command
}
