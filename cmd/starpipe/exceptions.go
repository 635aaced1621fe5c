package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newExceptionsCmd) }

// newExceptionsCmd is the exceptions register from the command line,
// through the daemon's API.
func newExceptionsCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "exceptions",
		Short: "List and create risk exceptions through the daemon's API (--server, --token)",
	}
	cf.register(cmd.PersistentFlags())
	cmd.AddCommand(newExceptionsListCmd(&cf), newExceptionsCreateCmd(&cf))
	return cmd
}

// exceptionsRouteError explains a daemon without the exceptions register
// (one older than this CLI): its API answers no such route.
func exceptionsRouteError(what string, err error) error {
	if ae, ok := errors.AsType[*apiError](err); ok && (ae.Status == http.StatusMethodNotAllowed ||
		ae.Status == http.StatusNotFound && (ae.Code == "" || strings.HasPrefix(ae.Message, "no such route"))) {
		return fmt.Errorf("%s: this daemon has no exceptions register (%v); it is older than this starpipe", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// exceptionView is what the CLI shows of an exception; the JSON output
// passes the daemon's answer through unchanged.
type exceptionView struct {
	ID          int64      `json:"id"`
	State       string     `json:"state"`
	Owner       string     `json:"owner"`
	Expires     time.Time  `json:"expires"`
	NextReview  *time.Time `json:"next_review"`
	ReviewEvery string     `json:"review_every"`
	Findings    []int64    `json:"findings"`
	Rationale   string     `json:"rationale"`
}

func newExceptionsListCmd(cf *clientFlags) *cobra.Command {
	var due string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--due review] [--json]",
		Short: "List exceptions (GET /v1/exceptions); --due review lists those whose review is due",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if due != "" {
				q.Set("due", due)
			}
			path := "/v1/exceptions"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := c.call(cmd.Context(), http.MethodGet, path, nil, &page); err != nil {
				return exceptionsRouteError("list exceptions", err)
			}
			if asJSON {
				for _, it := range page.Items {
					if _, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", it); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tOWNER\tEXPIRES\tNEXT REVIEW\tFINDINGS\tRATIONALE")
			for _, raw := range page.Items {
				var e exceptionView
				if err := json.Unmarshal(raw, &e); err != nil {
					return fmt.Errorf("list exceptions: unexpected item %s: %w", raw, err)
				}
				next := "-"
				if e.NextReview != nil {
					next = e.NextReview.UTC().Format("2006-01-02")
				}
				ids := make([]string, len(e.Findings))
				for i, id := range e.Findings {
					ids[i] = fmt.Sprint(id)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, e.Owner, e.Expires.UTC().Format("2006-01-02"), next,
					dashIfEmpty(strings.Join(ids, ",")), e.Rationale)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&due, "due", "", `"review": only exceptions whose review is due`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

// parseExpiry takes an RFC 3339 time, or a date meaning its start (UTC).
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q: want a date (2027-06-30) or an RFC 3339 time", s)
	}
	return t, nil
}

func newExceptionsCreateCmd(cf *clientFlags) *cobra.Command {
	var owner, rationale, expires, reviewEvery string
	var findings []int64
	var compensating []string
	cmd := &cobra.Command{
		Use:   "create --finding ID... --owner USER --rationale TEXT --expires DATE [--review-every P90D]",
		Short: "Record a risk exception for findings (POST /v1/exceptions); they become risk_accepted until it expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, err := parseExpiry(expires)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			body := map[string]any{
				"findings": findings, "owner": owner, "rationale": rationale,
				"expires": exp.UTC().Format(time.RFC3339),
			}
			if reviewEvery != "" {
				body["review_every"] = reviewEvery
			}
			if len(compensating) > 0 {
				body["compensating_controls"] = compensating
			}
			var created struct {
				ID    int64  `json:"id"`
				State string `json:"state"`
			}
			if err := c.call(cmd.Context(), http.MethodPost, "/v1/exceptions", body, &created); err != nil {
				return exceptionsRouteError("create exception", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "exception %d: %s, expires %s\n", created.ID, created.State, exp.UTC().Format(time.RFC3339))
			return err
		},
	}
	f := cmd.Flags()
	f.Int64SliceVar(&findings, "finding", nil, "finding id (repeatable, or comma-separated)")
	f.StringVar(&owner, "owner", "", "the named user who owns the risk")
	f.StringVar(&rationale, "rationale", "", "why the risk is accepted")
	f.StringVar(&expires, "expires", "", "when the exception ends: a date (2027-06-30) or an RFC 3339 time")
	f.StringVar(&reviewEvery, "review-every", "", "review cadence, an ISO 8601 duration such as P90D")
	f.StringArrayVar(&compensating, "compensating-control", nil, "CCM control that compensates, e.g. IAM-02 (repeatable)")
	for _, n := range []string{"finding", "owner", "rationale", "expires"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}
