package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

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

func newKeysRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Re-encrypt every stored credential under the current master key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("keys rotate needs the database: wired in a later commit")
		},
	}
}
