package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/api"
)

func init() { subcommands = append(subcommands, newFindingsCmd) }

// newFindingsCmd is the findings part of the HTTP API from the command
// line: an owner's queue and review decisions, one or many at a time.
func newFindingsCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "List and review findings through the daemon's API (--server, --token)",
	}
	cf.register(cmd.PersistentFlags())
	cmd.AddCommand(newFindingsListCmd(&cf), newFindingsReviewCmd(&cf))
	return cmd
}

func newFindingsListCmd(cf *clientFlags) *cobra.Command {
	var owner, scope, control, limit string
	var reviews, severities, statuses []string
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "list [--owner me] [--review untriaged] [--json]",
		Short: "List findings (GET /v1/findings); --owner me --review untriaged is an owner's queue, oldest SLA first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			set := func(k string, vals ...string) {
				for _, v := range vals {
					if v != "" {
						q.Add(k, v)
					}
				}
			}
			set("owner", owner)
			set("scope", scope)
			set("control", control)
			set("limit", limit)
			set("review", reviews...)
			set("severity", severities...)
			set("status", statuses...)
			var items []api.Finding
			for {
				var page struct {
					Items []api.Finding `json:"items"`
					Next  *string       `json:"next"`
				}
				if err := c.call(cmd.Context(), http.MethodGet, "/v1/findings?"+q.Encode(), nil, &page); err != nil {
					return fmt.Errorf("list findings: %w", err)
				}
				items = append(items, page.Items...)
				if !all || page.Next == nil {
					break
				}
				q.Set("cursor", *page.Next)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, f := range items {
					if err := enc.Encode(f); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tSTATUS\tREVIEW\tSLA DUE\tCONTROLS\tOWNERS\tTITLE")
			for _, f := range items {
				due := "-"
				if f.SLADue != nil {
					due = f.SLADue.UTC().Format("2006-01-02")
				}
				ctls := make([]string, len(f.Controls))
				for i, c := range f.Controls {
					ctls[i] = c.Version + "/" + c.ID
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Severity, f.Status, f.Review, due,
					dashIfEmpty(strings.Join(ctls, ",")), dashIfEmpty(strings.Join(f.Owners, ",")), f.Title)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&owner, "owner", "", `findings a user owns: a user name, or "me" for the token's user`)
	f.StringArrayVar(&reviews, "review", nil, "review state: untriaged, confirmed, false_positive, risk_accepted, not_applicable (repeatable)")
	f.StringArrayVar(&severities, "severity", nil, "severity (repeatable)")
	f.StringArrayVar(&statuses, "status", nil, "status: open, resolved, reopened (repeatable)")
	f.StringVar(&scope, "scope", "", "scope")
	f.StringVar(&control, "control", "", "CCM control id, e.g. AIS-01")
	f.StringVar(&limit, "limit", "", "page size")
	f.BoolVar(&all, "all", false, "follow every page")
	f.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

// bulkFilterKeys are the keys --filter takes, as POST /v1/findings/review's
// filter names them; the repeatable ones take a list.
var bulkFilterKeys = map[string]bool{
	"scope": false, "control": false, "version": false, "kind": false, "tool": false, "owner": false,
	"status": true, "severity": true, "review": true, "id": true,
}

// parseBulkFilter turns 'review=untriaged&scope=...' into the JSON filter
// of POST /v1/findings/review.
func parseBulkFilter(raw string) (map[string]any, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("--filter: %w", err)
	}
	out := map[string]any{}
	for k, vals := range q {
		list, ok := bulkFilterKeys[k]
		if !ok {
			return nil, fmt.Errorf("--filter: unknown key %q (allowed: scope, status, severity, control, version, kind, tool, review, owner, id)", k)
		}
		switch {
		case k == "id":
			ids := make([]int64, 0, len(vals))
			for _, v := range vals {
				for _, s := range strings.Split(v, ",") {
					id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
					if err != nil || id <= 0 {
						return nil, fmt.Errorf("--filter: id %q is not a finding id", s)
					}
					ids = append(ids, id)
				}
			}
			out["ids"] = ids
		case list:
			var l []string
			for _, v := range vals {
				l = append(l, strings.Split(v, ",")...)
			}
			out[k] = l
		default:
			if len(vals) != 1 {
				return nil, fmt.Errorf("--filter: %s given %d times", k, len(vals))
			}
			out[k] = vals[0]
		}
	}
	return out, nil
}

func newFindingsReviewCmd(cf *clientFlags) *cobra.Command {
	var state, justification, comment, filter string
	var dryRun bool
	var expect int
	cmd := &cobra.Command{
		Use:   "review (ID | --filter QUERY) --state STATE [--justification J] [--comment C] [--dry-run]",
		Short: "Record a review decision for a finding, or for every finding a filter selects",
		Long: `Record a review decision (POST /v1/findings/{id}/review), or one for
every finding a filter selects (POST /v1/findings/review).

--filter takes the findings list's parameters as a query string, e.g.
'review=untriaged&scope=https://shop.example.com&severity=low'; owner=me
is the token's user. --dry-run counts what the filter selects and changes
nothing; --expect N refuses the change when the selection no longer has N
findings (the count a dry run showed).

States: untriaged, confirmed, false_positive, risk_accepted, not_applicable.
The decision is kept under the finding's identity, so rescans keep it.
An owner may decide only findings linked to a control they own (403).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (filter != "") {
				return errors.New("give a finding ID or --filter, not both or neither")
			}
			if state == "" {
				return errors.New("--state is required")
			}
			if len(args) == 1 && (dryRun || cmd.Flags().Changed("expect")) {
				return errors.New("--dry-run and --expect go with --filter")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				id, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || id <= 0 {
					return fmt.Errorf("%q is not a finding id", args[0])
				}
				var res struct {
					FindingID int64           `json:"finding_id"`
					Review    json.RawMessage `json:"review"`
					Changed   bool            `json:"changed"`
				}
				body := map[string]string{"state": state, "justification": justification, "comment": comment}
				if err := c.call(cmd.Context(), http.MethodPost, "/v1/findings/"+strconv.FormatInt(id, 10)+"/review", body, &res); err != nil {
					return fmt.Errorf("review finding %d: %w", id, err)
				}
				verb := "recorded"
				if !res.Changed {
					verb = "unchanged (already this decision)"
				}
				_, err = fmt.Fprintf(out, "finding %d: %s %s\n", id, state, verb)
				return err
			}
			f, err := parseBulkFilter(filter)
			if err != nil {
				return err
			}
			body := map[string]any{"filter": f, "state": state, "justification": justification, "comment": comment, "dry_run": dryRun}
			if cmd.Flags().Changed("expect") {
				body["expect"] = expect
			}
			var res struct {
				Matched    int  `json:"matched"`
				OutOfScope int  `json:"out_of_scope"`
				Changed    int  `json:"changed"`
				DryRun     bool `json:"dry_run"`
			}
			if err := c.call(cmd.Context(), http.MethodPost, "/v1/findings/review", body, &res); err != nil {
				return fmt.Errorf("review findings: %w", err)
			}
			if res.DryRun {
				_, err = fmt.Fprintf(out, "dry run: %d findings would be marked %s (%d selected outside your controls are left alone); nothing changed\n",
					res.Matched, state, res.OutOfScope)
				return err
			}
			_, err = fmt.Fprintf(out, "%d findings matched, %d decisions recorded as %s, %d outside your controls left alone\n",
				res.Matched, res.Changed, state, res.OutOfScope)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "review state")
	f.StringVar(&justification, "justification", "", "why (code_not_reachable, protected_by_mitigating_control, requires_configuration, ...)")
	f.StringVar(&comment, "comment", "", "free text")
	f.StringVar(&filter, "filter", "", "select findings by the list's parameters, e.g. 'review=untriaged&scope=...'")
	f.BoolVar(&dryRun, "dry-run", false, "with --filter: count, change nothing")
	f.IntVar(&expect, "expect", 0, "with --filter: refuse unless the selection has exactly this many findings")
	return cmd
}
