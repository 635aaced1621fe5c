package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/store"
)

func init() { subcommands = append(subcommands, newTokensCmd) }

// newTokensCmd manages API tokens straight in the configured database:
// the way to the first admin token of a `serve` deployment (`dev` makes
// its own), and to tokens for CI pipelines (role ingest).
func newTokensCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Create, list and revoke API tokens (admin, operator, owner, auditor, ingest)",
	}
	cmd.PersistentFlags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")

	var name, role, user string
	var scopes, kinds []string
	create := &cobra.Command{
		Use:   "create --name NAME (--role ROLE | --user USER) [--scope GLOB]... [--kind KIND]...",
		Short: "Create a token and print it once (only its hash is stored)",
		Long: `Create a token and print it once (only its hash is stored).

--scope and --kind (repeatable) limit what the token may upload: an upload
whose scope matches none of the patterns, or whose kind is not listed, is
refused with 403. Without them the token may upload any scope and kind.
Patterns match the whole scope: '*' matches any characters but '/', '**'
any characters, '?' one character but '/'; everything else is literal.
Examples: --scope 'https://*.example.com' --scope 'git.example.com/acme/**'.
A token limited to kinds must name the kind of each upload (kind=...).

--user makes a token that acts as that user: it has the user's role (now
and after it changes) and ownership scopes, stops working when the user
is disabled, and every change made with it records the user's name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role == "" && user == "" {
				return fmt.Errorf("create token %q: give --role for a service's token or --user for a user's", name)
			}
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			spec := store.TokenSpec{Name: name, Role: role, User: user, Scopes: scopes, Kinds: kinds}
			tok, err := st.IssueToken(cmd.Context(), spec, cliActor("tokens-create"))
			if err != nil {
				return fmt.Errorf("create token %q: %w", name, err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	create.Flags().StringVar(&name, "name", "", "unique token name (who or what uses it)")
	create.Flags().StringVar(&role, "role", "", "role: "+strings.Join(store.Roles(), ", ")+" (a user's token has the user's)")
	create.Flags().StringVar(&user, "user", "", "the user the token acts as (its role and scopes follow the user's)")
	create.Flags().StringArrayVar(&scopes, "scope", nil, "scope pattern the token may upload (repeatable; default any)")
	create.Flags().StringArrayVar(&kinds, "kind", nil, "scan kind the token may upload: external, authenticated, code (repeatable; default any)")
	_ = create.MarkFlagRequired("name")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (names and roles; the tokens themselves are not stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			toks, err := st.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, t := range toks {
					if err := enc.Encode(api.TokenOf(t)); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tUSER\tSCOPES\tKINDS\tCREATED\tLAST USED\tREVOKED")
			when := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			for _, t := range toks {
				user := t.User
				if user == "" {
					user = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, user, listOrAny(t.Scopes), listOrAny(t.Kinds),
					t.CreatedAt.UTC().Format(time.RFC3339), when(t.LastUsedAt), when(t.RevokedAt))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token; requests with it are refused from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			return st.RevokeToken(cmd.Context(), args[0], cliActor("tokens-revoke"))
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// listOrAny shows a token's limit list: "*" for none.
func listOrAny(l []string) string {
	if len(l) == 0 {
		return "*"
	}
	return strings.Join(l, ",")
}
