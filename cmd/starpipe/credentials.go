package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/vault"
)

func init() { subcommands = append(subcommands, newCredentialsCmd) }

// maxSecretFile bounds what --secret-file reads, like the API's body limit.
const maxSecretFile = 64 << 10

func newCredentialsCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Manage the scan credentials stored encrypted in the database",
		Long: `Manages scan credentials directly in the database (database.url), sealed
with the master key (` + vault.EnvMasterKey + `, vault.key_file, or the key
` + "`starpipe dev`" + ` keeps in its state directory). Secrets are write-only:
no command prints one.`,
	}
	cmd.PersistentFlags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")
	cmd.AddCommand(newCredentialsSetCmd(&cfgFile), newCredentialsTargetsCmd(&cfgFile), newCredentialsListCmd(&cfgFile), newCredentialsDeleteCmd(&cfgFile))
	return cmd
}

type credentialsSetFlags struct {
	name, kind, username, headerName, secretFile string
	targets                                      []string
	allowHTTP                                    bool
}

func newCredentialsSetCmd(cfgFile *string) *cobra.Command {
	var fl credentialsSetFlags
	cmd := &cobra.Command{
		Use:   "set --name NAME --kind KIND --target URL... --secret-file FILE|-",
		Short: "Create or replace a credential",
		Long: `Creates the named credential, or replaces the secret and details of an
existing one (its id, and so the schedules naming it, stay the same).

The secret is read from --secret-file, or from standard input with "-"
(without echo on a terminal), never from a flag, so that it stays out of
shell history and the process list. One trailing newline is dropped.

Kinds: bearer (Authorization: Bearer SECRET), basic (--username; the secret
is the password), header (--header-name; the secret is the value), cookie
(the secret is "name=value; other=value").

--target (repeat it, or separate with commas) names the URL prefixes the
credential may be sent to: scheme, host and port exactly, and a path prefix
("https://app.example.com/api" covers /api and /api/..., not /apix). A
schedule that would send the credential elsewhere is refused. Plain http
targets need --allow-http: the secret would cross the network in clear.`,
		Example: `  starpipe credentials set --name portal-api --kind bearer --target https://portal.example.com/api --secret-file token.txt
  starpipe credentials set --name portal --kind basic --username scanner --target https://portal.example.com/ --secret-file -
  starpipe credentials set --name gw --kind header --header-name X-API-Key --target https://gw.example.com/ --secret-file key.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCredentialsSet(cmd, *cfgFile, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.name, "name", "", "credential name (letters, digits, '.', '_', '-')")
	f.StringVar(&fl.kind, "kind", "", "bearer, basic, header or cookie")
	f.StringVar(&fl.username, "username", "", "user name (basic only)")
	f.StringVar(&fl.headerName, "header-name", "", "header name (header only)")
	f.StringVar(&fl.secretFile, "secret-file", "", `file holding the secret, or "-" for standard input`)
	f.StringSliceVar(&fl.targets, "target", nil, "URL prefix the credential may be sent to (repeatable)")
	f.BoolVar(&fl.allowHTTP, "allow-http", false, "allow plain http targets (the secret travels in clear)")
	for _, n := range []string{"name", "kind", "target", "secret-file"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func runCredentialsSet(cmd *cobra.Command, cfgFile string, fl credentialsSetFlags) error {
	secret, err := readSecret(cmd, fl.secretFile)
	if err != nil {
		return err
	}
	defer clear(secret)
	c := vault.Credential{Name: fl.name, Kind: vault.CredentialKind(fl.kind), Username: fl.username,
		HeaderName: fl.headerName, Secret: secret, Targets: fl.targets, AllowHTTP: fl.allowHTTP}
	// Validate before touching the key or the database, for a quick answer.
	if err := credentials.Validate(c); err != nil {
		return err
	}
	st, cfg, err := openConfiguredStore(cmd.Context(), cfgFile)
	if err != nil {
		return err
	}
	defer st.Close()
	kr, _, err := loadKeyring(cfg.StateDir, cfg.Vault.KeyFile, false)
	if err != nil {
		return err
	}
	id, created, err := credentials.Save(cmd.Context(), st, kr, c, cliActor("credentials-set"))
	if err != nil {
		return err
	}
	verb := "replaced"
	if created {
		verb = "created"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s credential %s (id %s, kind %s, key %s)\n", verb, c.Name, id, c.Kind, kr.CurrentID())
	return nil
}

// readSecret reads the secret from path or, for "-", standard input, and
// drops one trailing newline (echo and most editors add one).
func readSecret(cmd *cobra.Command, path string) (vault.Secret, error) {
	var b []byte
	var err error
	if path == "-" {
		in := cmd.InOrStdin()
		if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(cmd.ErrOrStderr(), "secret (not echoed): ")
			b, err = term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(cmd.ErrOrStderr())
		} else {
			b, err = io.ReadAll(io.LimitReader(in, maxSecretFile+1))
		}
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			b, err = io.ReadAll(io.LimitReader(f, maxSecretFile+1))
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the secret: %w", err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("reading the secret: longer than %d bytes", maxSecretFile)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return vault.Secret(b), nil
}

func newCredentialsTargetsCmd(cfgFile *string) *cobra.Command {
	var (
		name      string
		targets   []string
		allowHTTP bool
	)
	cmd := &cobra.Command{
		Use:   "targets --name NAME --target URL... [--allow-http]",
		Short: "Set where a credential may be sent, keeping its secret",
		Long: `Replaces the URL prefixes the named credential may be sent to, without
touching its secret. Credentials stored before targets existed have none and
can be used by no schedule until an admin sets them here (or stores the
credential again with set --target). This command needs the database, that
is admin access; the API lets operators set targets only together with a new
secret.`,
		Example: `  starpipe credentials targets --name portal-api --target https://portal.example.com/api`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc := vault.Scope{Targets: targets, AllowHTTP: allowHTTP}
			if err := sc.Validate(name); err != nil {
				return err
			}
			st, _, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := credentials.SetTargets(cmd.Context(), st, name, sc, cliActor("credentials-targets")); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "credential %s may be sent to %s\n", name, strings.Join(targets, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "credential name")
	f.StringSliceVar(&targets, "target", nil, "URL prefix the credential may be sent to (repeatable)")
	f.BoolVar(&allowHTTP, "allow-http", false, "allow plain http targets (the secret travels in clear)")
	for _, n := range []string{"name", "target"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newCredentialsListCmd(cfgFile *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List credentials (metadata only, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			list, err := st.ListCredentials(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, m := range list {
					if err := enc.Encode(api.CredentialViewOf(m)); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tUSERNAME\tHEADER\tTARGETS\tKEY ID\tUPDATED\tCREATED BY")
			for _, m := range list {
				targets := strings.Join(m.Targets, ",")
				if m.AllowHTTP {
					targets += " (http allowed)"
				}
				if len(m.Targets) == 0 {
					targets = "NONE: unusable, set with `credentials targets`"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Kind, dashIfEmpty(m.Username), dashIfEmpty(m.HeaderName),
					targets, m.KeyID, m.UpdatedAt.UTC().Format(time.RFC3339), m.CreatedBy)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per credential")
	return cmd
}

func newCredentialsDeleteCmd(cfgFile *string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a credential",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), *cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.DeleteCredential(cmd.Context(), args[0], cliActor("credentials-delete")); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted credential %s\n", args[0])
			return nil
		},
	}
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
