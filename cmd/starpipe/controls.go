package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/mapping"
)

func init() { subcommands = append(subcommands, newControlsCmd) }

// tableFrameworks are the crosswalk columns shown when --framework is not
// given; ISO/IEC 27002 guidance references are left to --framework iso27002
// to keep the table readable.
var tableFrameworks = []string{"iso27001", "soc2", "nist80053"}

type controlsFlags struct {
	version   string
	framework string
	domains   []string
	json      bool
}

func newControlsCmd() *cobra.Command {
	var fl controlsFlags
	cmd := &cobra.Command{
		Use:   "controls",
		Short: "List CCM controls with their crosswalk to ISO/IEC 27001, SOC 2 and NIST SP 800-53",
		Long: `Lists the controls of a CSA Cloud Controls Matrix version shipped with
starpipe: id, domain, short title and the ids the control maps to in other
frameworks, so that evidence for a CCM control also reads under those.

The crosswalk is CSA's, for CCM v4.0.13. CSA has not published one for v4.1;
for v4.1 the ids of the v4.0.13 control with exactly the same title are shown
and the "via" column names that control.`,
		Example: `  starpipe controls --domain TVM,AIS,IVS
  starpipe controls --version 4.1 --domain TVM
  starpipe controls --framework iso27001 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runControls(cmd, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.version, "version", "", "CCM version: 4.0.13 or 4.1 (default: 4.0.13)")
	f.StringVar(&fl.framework, "framework", "", "show only this framework's ids: iso27001, iso27002, soc2 or nist80053")
	f.StringSliceVar(&fl.domains, "domain", nil, "only these domains (comma-separated codes, e.g. TVM,AIS,IVS)")
	f.BoolVar(&fl.json, "json", false, "print JSON instead of a table")
	return cmd
}

// controlRow is one control as `starpipe controls --json` prints it.
type controlRow struct {
	Version      string              `json:"version"`
	ID           string              `json:"id"`
	Domain       string              `json:"domain"`
	DomainName   string              `json:"domain_name"`
	Title        string              `json:"title"`
	Crosswalk    map[string][]string `json:"crosswalk"`
	CrosswalkVia string              `json:"crosswalk_via,omitempty"`
}

func runControls(cmd *cobra.Command, fl controlsFlags) error {
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		return err
	}
	version := fl.version
	if version == "" {
		version = cats.Default()
	}
	cat, ok := cats.Get(version)
	if !ok {
		return fmt.Errorf("--version: unknown CCM version %q (known: %s)", fl.version, strings.Join(cats.Versions(), ", "))
	}
	frameworks := tableFrameworks
	if fl.framework != "" {
		fw, ok := cats.Framework(fl.framework)
		if !ok {
			keys := make([]string, 0, len(cats.Frameworks()))
			for _, f := range cats.Frameworks() {
				keys = append(keys, f.Key)
			}
			return fmt.Errorf("--framework: unknown framework %q (known: %s)", fl.framework, strings.Join(keys, ", "))
		}
		frameworks = []string{fw.Key}
	}
	domains, err := resolveDomains(cat, fl.domains)
	if err != nil {
		return err
	}

	var rows []controlRow
	for _, c := range cat.Controls {
		if domains != nil && !slices.Contains(domains, c.Domain) {
			continue
		}
		r := controlRow{Version: cat.Version, ID: c.ID, Domain: c.Domain, DomainName: cat.DomainName(c.Domain), Title: c.Title, Crosswalk: map[string][]string{}}
		for _, fw := range frameworks {
			ids, via := cat.Crosswalk(c.ID, fw)
			if ids == nil {
				ids = []string{} // JSON [] rather than null: "no mapping", not "unknown"
			}
			r.Crosswalk[fw] = ids
			if via != "" {
				r.CrosswalkVia = via
			}
		}
		rows = append(rows, r)
	}

	out := cmd.OutOrStdout()
	if fl.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // keep "I&S" and "A&A" readable
		if rows == nil {
			rows = []controlRow{}
		}
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	header := []string{"ID", "DOMAIN", "TITLE"}
	for _, fw := range frameworks {
		header = append(header, strings.ToUpper(fw))
	}
	borrowed := slices.ContainsFunc(rows, func(r controlRow) bool { return r.CrosswalkVia != "" })
	if borrowed {
		header = append(header, "VIA")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cols := []string{r.ID, r.Domain, r.Title}
		for _, fw := range frameworks {
			cols = append(cols, orDash(strings.Join(r.Crosswalk[fw], ", ")))
		}
		if borrowed {
			cols = append(cols, orDash(r.CrosswalkVia))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// resolveDomains checks the --domain codes against the catalogue. IVS is
// accepted for CCM 4.1, where the domain is called I&S, because users carry
// the v4.0.13 code over.
func resolveDomains(cat *mapping.Catalog, codes []string) ([]string, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	var out []string
	for _, code := range codes {
		code = strings.ToUpper(strings.TrimSpace(code))
		if cat.DomainName(code) == "" && code == "IVS" && cat.DomainName("I&S") != "" {
			code = "I&S"
		}
		if cat.DomainName(code) == "" {
			known := make([]string, len(cat.Domains))
			for i, d := range cat.Domains {
				known[i] = d.Code
			}
			return nil, fmt.Errorf("--domain: CCM %s has no domain %q (known: %s)", cat.Version, code, strings.Join(known, ", "))
		}
		out = append(out, code)
	}
	return out, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
