package review

import (
	"context"
	"fmt"
	"strings"

	"github.com/starpipe/starpipe/store"
)

// Crosswalk returns the controls of other CCM versions that are the same
// control as (version, id): the api wires it to the catalogues' same-title
// links (mapping.Catalog.SameTitle), in both directions.
type Crosswalk func(version, id string) []store.ControlRef

// ExpandOwnership returns own with every control assignment repeated for
// its counterparts in the other CCM versions (Via naming the original), so
// that an owner of v4.1 TVM-03 also owns findings linked to v4.0.13 TVM-07.
// Domain codes and control ids are upper-cased; an assignment given
// explicitly wins over a derived one.
func ExpandOwnership(own []store.Ownership, cw Crosswalk) []store.Ownership {
	out := make([]store.Ownership, 0, len(own))
	given := map[string]bool{}
	for _, o := range own {
		o.Domain = strings.ToUpper(strings.TrimSpace(o.Domain))
		o.Control = strings.ToUpper(strings.TrimSpace(o.Control))
		o.Version = strings.TrimSpace(o.Version)
		o.Via = ""
		given[o.Key()] = true
		out = append(out, o)
	}
	if cw == nil {
		return out
	}
	n := len(out)
	for _, o := range out[:n] {
		if o.Control == "" {
			continue
		}
		for _, c := range cw(o.Version, o.Control) {
			d := store.Ownership{Version: c.Version, Control: c.ID, Via: o.Version + "/" + o.Control, Scopes: o.Scopes}
			if given[d.Key()] {
				continue
			}
			given[d.Key()] = true
			out = append(out, d)
		}
	}
	return out
}

// OwnershipStore is what SetOwnership needs; *store.Store implements it.
type OwnershipStore interface {
	SetOwnership(ctx context.Context, actor, owner string, own []store.Ownership) (before, after []store.Ownership, err error)
}

// SetOwnership replaces owner's assignments (admins only), expanded across
// CCM versions by cw.
func SetOwnership(ctx context.Context, st OwnershipStore, a Actor, owner string, own []store.Ownership, cw Crosswalk) ([]store.Ownership, error) {
	if a.Role != roleAdmin {
		return nil, fmt.Errorf("%w: only admins assign ownership", ErrForbidden)
	}
	_, after, err := st.SetOwnership(ctx, a.Name, owner, ExpandOwnership(own, cw))
	if err != nil {
		return nil, fmt.Errorf("setting ownership of %q: %w", owner, err)
	}
	return after, nil
}
