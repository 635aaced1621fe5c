// Package review is the people's side of findings: who may decide what
// (users, owners and their CCM domains and controls), the review decisions
// themselves (untriaged, confirmed, false positive, accepted risk, not
// applicable, with a VEX-style justification), and the SLA policy with the
// periodic check that announces breaches.
//
// Every decision is written with its activity-log row and its
// starpipe.finding.events message (through the outbox) in one transaction.
package review

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/store"
)

// Roles, as store and api name them.
const (
	roleAdmin = store.RoleAdmin
	roleOwner = store.RoleOwner
)

// ErrForbidden is a change the actor may not make: an owner deciding on a
// finding none of whose controls they own. The API answers it with 403.
var ErrForbidden = errors.New("forbidden")

// ErrTooMany is a bulk review that selects more than MaxBulk findings.
var ErrTooMany = errors.New("too many findings")

// ErrStale is a bulk review whose expected count no longer matches: the
// findings changed since the preview.
var ErrStale = errors.New("the selection changed since the preview")

// MaxBulk bounds the findings one bulk review may change, so that one
// request is one transaction of bounded size.
const MaxBulk = 10000

// DecisionError is a decision the rules refuse; the API answers it with 400
// naming Field.
type DecisionError struct{ Field, Reason string }

func (e *DecisionError) Error() string { return e.Field + ": " + e.Reason }

// Justifications a not-affected decision may give: the CycloneDX VEX
// (Dependency-Track) names, which the OpenVEX names alias. Stored under the
// canonical name.
var justifications = []string{
	"code_not_present",
	"code_not_reachable",
	"requires_configuration",
	"requires_dependency",
	"requires_environment",
	"protected_by_compiler",
	"protected_at_runtime",
	"protected_at_perimeter",
	"protected_by_mitigating_control",
	// OpenVEX only: no CycloneDX equivalent.
	"component_not_present",
	"vulnerable_code_cannot_be_controlled_by_adversary",
}

// justificationAliases maps OpenVEX names to the canonical ones.
var justificationAliases = map[string]string{
	"vulnerable_code_not_present":         "code_not_present",
	"vulnerable_code_not_in_execute_path": "code_not_reachable",
	"inline_mitigations_already_exist":    "protected_by_mitigating_control",
}

// Justifications lists the canonical justification names.
func Justifications() []string { return slices.Clone(justifications) }

// CanonicalJustification returns the canonical name of j (an alias is
// resolved), or false when j is not a justification.
func CanonicalJustification(j string) (string, bool) {
	j = strings.ToLower(strings.TrimSpace(j))
	if c, ok := justificationAliases[j]; ok {
		return c, true
	}
	return j, slices.Contains(justifications, j)
}

// maxComment bounds a decision's free text (the column allows as much).
const maxComment = 10000

// Decision is what a person decides about a finding.
type Decision struct {
	State         string
	Justification string // from Justifications (or an alias); "" for none
	Comment       string // free text: the rationale
	// Exception is the exceptions-register entry a risk acceptance is made
	// under; set by the register only (0 for a person's own decision).
	Exception int64
}

// normalise checks d and returns it with its justification canonical.
//
// The rules follow VEX: a finding declared not to matter (false positive,
// not applicable) says why, by a justification or in words; an accepted
// risk states its rationale; a justification belongs only to those three.
func (d Decision) normalise() (Decision, error) {
	d.State = strings.TrimSpace(d.State)
	d.Comment = strings.TrimSpace(d.Comment)
	if !store.ValidReviewState(d.State) {
		return d, &DecisionError{"state", fmt.Sprintf("%q is not one of %s", d.State, strings.Join(store.ReviewStates(), ", "))}
	}
	if len(d.Comment) > maxComment {
		return d, &DecisionError{"comment", fmt.Sprintf("longer than %d bytes", maxComment)}
	}
	if strings.ContainsRune(d.Comment, 0) {
		return d, &DecisionError{"comment", "contains a NUL byte"}
	}
	if d.Justification != "" {
		j, ok := CanonicalJustification(d.Justification)
		if !ok {
			return d, &DecisionError{"justification", fmt.Sprintf("%q is not one of %s (or the OpenVEX names %s); explain anything else in comment",
				d.Justification, strings.Join(justifications, ", "), strings.Join(aliasNames(), ", "))}
		}
		d.Justification = j
	}
	switch d.State {
	case store.ReviewFalsePositive, store.ReviewNotApplicable:
		if d.Justification == "" && d.Comment == "" {
			return d, &DecisionError{"justification", d.State + " needs a justification or a comment saying why"}
		}
	case store.ReviewRiskAccepted:
		if d.Comment == "" {
			return d, &DecisionError{"comment", "risk_accepted needs the rationale in comment"}
		}
	default:
		if d.Justification != "" {
			return d, &DecisionError{"justification", "only false_positive, not_applicable and risk_accepted take a justification"}
		}
	}
	return d, nil
}

func aliasNames() []string {
	var out []string
	for k := range justificationAliases {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Actor is who makes a change: the user a token acts as, or a named
// service.
type Actor struct {
	Name string // recorded as the actor: the user's name, or the service token's
	Role string
	User string // "" for a service token
}

// Store is what the review service needs of the database; *store.Store
// implements it. The transactional steps (store.ApplyReview,
// store.AppendActivityBatch, store.EnqueueBatch) run in the *store.Tx that
// InTx hands out.
type Store interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
	OwnsFinding(ctx context.Context, user string, id int64) (bool, error)
	CountFindings(ctx context.Context, f store.FindingFilter) (int, error)
}

// Clock tells the time; scheduler.Clock and schedulertest.FakeClock fit.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

// Service makes review decisions.
type Service struct {
	st    Store
	clock Clock
	log   *slog.Logger
}

// NewService builds a Service. clock nil is the wall clock; log nil
// discards.
func NewService(st Store, clock Clock, log *slog.Logger) *Service {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, clock: clock, log: log.With("component", "review")}
}

// mayDecide checks that the actor may decide at all: admins and owners do;
// an owner's token without a user has no scope and so may change nothing.
func mayDecide(a Actor) error {
	switch a.Role {
	case roleAdmin:
		return nil
	case roleOwner:
		if a.User == "" {
			return fmt.Errorf("%w: an owner token that belongs to no user owns no controls", ErrForbidden)
		}
		return nil
	}
	return fmt.Errorf("%w: role %s may not review findings", ErrForbidden, a.Role)
}

// Result is what a decision changed.
type Result struct {
	Changed []store.ReviewChange
}

// Review records decision d on finding id. An owner may decide only on a
// finding linked to a control they own (ErrForbidden otherwise); an unknown
// finding is store.ErrNotFound. Deciding what is already decided changes
// nothing and writes nothing.
func (s *Service) Review(ctx context.Context, a Actor, id int64, d Decision) (Result, error) {
	if err := mayDecide(a); err != nil {
		return Result{}, err
	}
	d, err := d.normalise()
	if err != nil {
		return Result{}, err
	}
	if a.Role == roleOwner {
		owns, err := s.st.OwnsFinding(ctx, a.User, id)
		if err != nil {
			return Result{}, err
		}
		if !owns {
			return Result{}, fmt.Errorf("%w: %s owns none of the controls finding %d is linked to", ErrForbidden, a.User, id)
		}
	}
	changes, err := s.apply(ctx, a, store.FindingFilter{IDs: []int64{id}}, d, -1)
	if err != nil {
		return Result{}, fmt.Errorf("reviewing finding %d: %w", id, err)
	}
	return Result{Changed: changes}, nil
}

// BulkRequest is a review of every finding a filter selects.
type BulkRequest struct {
	Filter   store.FindingFilter
	Decision Decision
	DryRun   bool
	// Expect, when not negative, is the count the preview showed: the
	// apply fails with ErrStale if the selection has changed meanwhile.
	Expect int
}

// BulkResult says what a bulk review selected and changed.
type BulkResult struct {
	Matched    int  `json:"matched"`      // findings the filter selects that the actor may change
	OutOfScope int  `json:"out_of_scope"` // findings the filter selects outside an owner's controls (left alone)
	Changed    int  `json:"changed"`      // decisions written (0 on a dry run)
	DryRun     bool `json:"dry_run"`
}

// Bulk records a decision for every finding the filter selects. An owner's
// selection is limited to the findings they own; the rest are counted as
// out of scope and left alone. A dry run counts and changes nothing.
func (s *Service) Bulk(ctx context.Context, a Actor, req BulkRequest) (BulkResult, error) {
	if err := mayDecide(a); err != nil {
		return BulkResult{}, err
	}
	d, err := req.Decision.normalise()
	if err != nil {
		return BulkResult{}, err
	}
	f := req.Filter
	f.Cursor, f.Limit, f.Sort = "", 0, ""
	res := BulkResult{DryRun: req.DryRun}
	if a.Role == roleOwner {
		if f.Owner != "" && f.Owner != a.User {
			return BulkResult{}, fmt.Errorf("%w: an owner reviews only their own findings (owner=%s)", ErrForbidden, f.Owner)
		}
		all, err := s.st.CountFindings(ctx, f)
		if err != nil {
			return BulkResult{}, err
		}
		f.Owner = a.User
		if res.Matched, err = s.st.CountFindings(ctx, f); err != nil {
			return BulkResult{}, err
		}
		res.OutOfScope = all - res.Matched
	} else if res.Matched, err = s.st.CountFindings(ctx, f); err != nil {
		return BulkResult{}, err
	}
	if res.Matched > MaxBulk {
		return res, fmt.Errorf("%w: the filter selects %d findings, at most %d may be reviewed at once; narrow it", ErrTooMany, res.Matched, MaxBulk)
	}
	if req.DryRun {
		return res, nil
	}
	changes, err := s.apply(ctx, a, f, d, req.Expect)
	if err != nil {
		return res, fmt.Errorf("bulk review: %w", err)
	}
	res.Changed = len(changes)
	return res, nil
}

// apply writes the decisions, their activity rows and their events in one
// transaction. expect, when not negative, is checked against the
// selection inside the transaction.
func (s *Service) apply(ctx context.Context, a Actor, f store.FindingFilter, d Decision, expect int) ([]store.ReviewChange, error) {
	var changes []store.ReviewChange
	at := s.clock.Now().UTC().Truncate(time.Microsecond)
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		if expect >= 0 {
			n, err := store.CountFindingsTx(ctx, tx, f)
			if err != nil {
				return err
			}
			if n != expect {
				return fmt.Errorf("%w: it selects %d findings, the preview counted %d", ErrStale, n, expect)
			}
		}
		var err error
		changes, err = applyTx(ctx, tx, a, f, d, at)
		return err
	})
	if err != nil {
		return nil, err
	}
	logChanges(s.log, a, changes)
	return changes, nil
}

func logChanges(log *slog.Logger, a Actor, changes []store.ReviewChange) {
	for _, c := range changes {
		log.Info("finding reviewed", "finding_id", c.ID, "actor", a.Name, "from", c.Before.State, "to", c.After.State)
	}
}

// applyTx writes the decisions with their activity rows and events in tx:
// the one path every decision takes, a person's or an exception's.
func applyTx(ctx context.Context, tx *store.Tx, a Actor, f store.FindingFilter, d Decision, at time.Time) ([]store.ReviewChange, error) {
	changes, err := store.ApplyReview(ctx, tx, f, store.Review{State: d.State, Justification: d.Justification, Comment: d.Comment, Exception: d.Exception}, a.Name, at)
	if err != nil || len(changes) == 0 {
		return changes, err
	}
	acts := make([]store.Activity, len(changes))
	msgs := make([]store.OutboxMessage, len(changes))
	for i, c := range changes {
		acts[i] = store.Activity{
			At: at, Actor: a.Name, Action: "finding.reviewed", SubjectType: "finding", SubjectID: strconv.FormatInt(c.ID, 10),
			Before: activityReview(c.Before), After: activityReview(c.After),
		}
		v, err := bus.EncodeID(bus.NewID(), bus.TypeReviewed, at, ReviewEvent{
			FindingID: c.ID, Scope: c.Scope, Kind: c.Kind, Fingerprint: c.Fingerprint, Tool: c.Tool, Rule: c.Rule,
			Title: c.Title, Severity: c.Severity, Status: c.Status, From: c.Before.State, To: c.After.State,
			Justification: c.After.Justification, Comment: c.After.Comment, Exception: c.After.Exception, Actor: a.Name,
		})
		if err != nil {
			return nil, err
		}
		msgs[i] = store.OutboxMessage{Topic: bus.TopicFindingEvents, Key: strconv.FormatInt(c.ID, 10), Payload: v}
	}
	if err := store.AppendActivityBatch(ctx, tx, acts); err != nil {
		return nil, err
	}
	return changes, store.EnqueueBatch(ctx, tx, msgs)
}

// activityReview is a decision as the activity log records it.
func activityReview(r store.Review) map[string]string {
	m := map[string]string{"review": r.State}
	if r.Justification != "" {
		m["justification"] = r.Justification
	}
	if r.Comment != "" {
		m["comment"] = r.Comment
	}
	if r.Exception != 0 {
		m["exception"] = strconv.FormatInt(r.Exception, 10)
	}
	return m
}

// ReviewEvent is published on starpipe.finding.events (type reviewed) for
// every changed decision.
type ReviewEvent struct {
	FindingID     int64  `json:"finding_id"`
	Scope         string `json:"scope"`
	Kind          string `json:"kind"`
	Fingerprint   string `json:"fingerprint"`
	Tool          string `json:"tool"`
	Rule          string `json:"rule"`
	Title         string `json:"title"`
	Severity      string `json:"severity"`
	Status        string `json:"status"` // the scanner's view, unchanged by the decision
	From          string `json:"from"`   // review state before
	To            string `json:"to"`     // review state after
	Justification string `json:"justification,omitempty"`
	Comment       string `json:"comment,omitempty"`
	Exception     int64  `json:"exception,omitempty"` // the exception a risk acceptance was made under
	Actor         string `json:"actor"`
}
