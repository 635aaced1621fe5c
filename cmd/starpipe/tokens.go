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

	var name, role string
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Create a token and print it once (only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			tok, err := st.CreateToken(cmd.Context(), name, role)
			if err != nil {
				return fmt.Errorf("create token %q: %w", name, err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	create.Flags().StringVar(&name, "name", "", "unique token name (who or what uses it)")
	create.Flags().StringVar(&role, "role", "", "role: "+strings.Join(store.Roles(), ", "))
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

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
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tLAST USED\tREVOKED")
			when := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.UTC().Format(time.RFC3339), when(t.LastUsedAt), when(t.RevokedAt))
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
			return st.RevokeToken(cmd.Context(), args[0])
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
