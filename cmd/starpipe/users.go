package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
)

func init() { subcommands = append(subcommands, newUsersCmd) }

// newUsersCmd manages named users straight in the configured database, as
// the admin routes /v1/users do.
func newUsersCmd() *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Create, list and disable named users, and make tokens that act as them",
	}
	cmd.PersistentFlags().StringVarP(&cfgFile, "config", "c", "", "configuration file (YAML)")

	var name, email, role string
	var domains, controls, scopes []string
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE [--email ADDR] [--domain AIS] [--control 4.1/TVM-03] [--scope SCOPE]",
		Short: "Create a user; an owner can be assigned CCM domains and controls",
		Example: `  starpipe users create --name alice --email alice@example.com --role owner --domain AIS
  starpipe users create --name bob --role owner --control 4.1/TVM-03 --scope https://app.example.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var own []store.Ownership
			if len(domains)+len(controls)+len(scopes) > 0 {
				if role != store.RoleOwner {
					return errors.New("--domain, --control and --scope are for users with role owner")
				}
				cats, err := mapping.DefaultCatalogs()
				if err != nil {
					return err
				}
				if own, err = api.ParseOwnership(cats, domains, controls, scopes); err != nil {
					return err
				}
			}
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := st.CreateUser(cmd.Context(), nil, cliActor("users"), store.NewUser{Name: name, Email: email, Role: role}, own)
			if err != nil {
				return fmt.Errorf("create user %q: %w", name, err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(u)
		},
	}
	f := create.Flags()
	f.StringVar(&name, "name", "", "user name (lower case letters, digits, '.', '_', '@', '-')")
	f.StringVar(&email, "email", "", "e-mail address")
	f.StringVar(&role, "role", "", "role: "+strings.Join(store.Roles(), ", "))
	f.StringSliceVar(&domains, "domain", nil, "CCM domain code the owner is responsible for, every version (repeat)")
	f.StringSliceVar(&controls, "control", nil, "CCM control VERSION/ID (or ID in the default version) the owner is responsible for (repeat)")
	f.StringSliceVar(&scopes, "scope", nil, "limit the owner's domains and controls to these scan scopes (repeat)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List users with their roles and ownership",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			users, err := st.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, u := range users {
					if err := enc.Encode(u); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tEMAIL\tOWNS\tDISABLED")
			for _, u := range users {
				var owns []string
				for _, o := range u.Ownership {
					if o.Via == "" {
						owns = append(owns, o.Key())
					}
				}
				disabled := "-"
				if u.DisabledAt != nil {
					disabled = u.DisabledAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Email, strings.Join(owns, ","), disabled)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	disable := &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable a user: their tokens stop working and they own nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			return st.DisableUser(cmd.Context(), cliActor("users"), args[0])
		},
	}

	var tokenName string
	token := &cobra.Command{
		Use:   "token USER --name TOKEN",
		Short: "Create a token that acts as the user and print it once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openConfiguredStore(cmd.Context(), cfgFile)
			if err != nil {
				return err
			}
			defer st.Close()
			tok, err := st.CreateUserToken(cmd.Context(), cliActor("users"), args[0], tokenName)
			if err != nil {
				return fmt.Errorf("create token for %q: %w", args[0], err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	token.Flags().StringVar(&tokenName, "name", "", "unique token name")
	_ = token.MarkFlagRequired("name")

	cmd.AddCommand(create, list, disable, token)
	return cmd
}
