package main

import (
	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/scoring"
)

func init() { subcommands = append(subcommands, newScoreCmd) }

func newScoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "score [VECTOR...]",
		Short: "Score CVSS v3.1 and v3.0 vectors",
		Long: `Score CVSS v3.1 and v3.0 vectors as FIRST's specification defines them.

With arguments, each argument is a vector; without, vectors are read from
standard input, one per line. For each vector one line is printed:

  BASE TEMPORAL ENVIRONMENTAL SEVERITY

with one decimal per score. TEMPORAL and ENVIRONMENTAL are what FIRST's
calculator shows when the vector has no such metrics; SEVERITY (None, Low,
Medium, High, Critical) rates the most specific score the vector defines.
An invalid vector prints "error: REASON" and scoring goes on; the exit
status is 1 if any vector was invalid.`,
		Example: `  starpipe score CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H
  starpipe score < vectors.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var invalid int
			if len(args) > 0 {
				var b []byte
				for _, a := range args {
					var ok bool
					b, ok = scoring.AppendScoreLine(b, a)
					b = append(b, '\n')
					if !ok {
						invalid++
					}
				}
				if _, err := cmd.OutOrStdout().Write(b); err != nil {
					return err
				}
			} else {
				var err error
				invalid, err = scoring.ScoreLines(cmd.OutOrStdout(), cmd.InOrStdin())
				if err != nil {
					return err
				}
			}
			if invalid > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
}
