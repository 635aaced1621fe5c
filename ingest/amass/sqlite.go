package amass

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"

	// glebarez/go-sqlite (pure Go, modernc-based) registers the "sqlite"
	// driver. It is the one amass itself links, and two packages may not
	// both register that name in one binary.
	_ "github.com/glebarez/go-sqlite"
)

// sqliteDSN opens the file read-only and immutable: starpipe never writes
// to a scanner's database, and immutable skips locking, which also lets it
// read files on read-only media.
func sqliteDSN(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: filepath.ToSlash(abs), RawQuery: "mode=ro&immutable=1"}
	return u.String(), nil
}

// assetContent is the union of the content JSON of the v4 asset types
// starpipe reads.
type assetContent struct {
	Name    string          `json:"name"`    // FQDN, RIROrg
	Address string          `json:"address"` // IPAddress
	CIDR    string          `json:"cidr"`    // Netblock
	Number  json.RawMessage `json:"number"`  // ASN
}

func (c assetContent) value(typ string) string {
	switch typ {
	case typeFQDN, typeRIROrg:
		return c.Name
	case typeIP:
		return c.Address
	case typeNetblock:
		return c.CIDR
	case typeASN:
		return strings.Trim(string(c.Number), `"`)
	}
	return ""
}

// parseSQLite reads an Amass v4 asset database.
func parseSQLite(ctx context.Context, path string, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	st := parse.Stats{Tools: []string{Tool}}
	lim := opt.Limits.WithDefaults()
	fail := func(err error) (parse.Stats, error) {
		var pe *parse.Error
		if errors.As(err, &pe) {
			return st, pe
		}
		if ctx.Err() != nil {
			return st, fmt.Errorf("%s: %w", opt.File, err)
		}
		return st, &parse.Error{File: opt.File, Offset: -1, Err: fmt.Errorf("amass SQLite database: %v: %w", err, parse.ErrFormat)}
	}
	dsn, err := sqliteDSN(path)
	if err != nil {
		return fail(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	tables := map[string]bool{}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fail(err)
		}
		tables[name] = true
	}
	if err := rows.Close(); err != nil {
		return fail(err)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if !tables["assets"] {
		return st, &parse.Error{File: opt.File, Offset: -1,
			Err: fmt.Errorf("SQLite database has no \"assets\" table: not an Amass v4 asset database: %w", parse.ErrFormat)}
	}

	g := newGraph(lim.MaxResults)
	byID := map[int64]*node{}
	rows, err = db.QueryContext(ctx, `SELECT id, type, content FROM assets ORDER BY id`)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var id int64
		var typ, content sql.NullString
		if err := rows.Scan(&id, &typ, &content); err != nil {
			rows.Close()
			return fail(err)
		}
		st.Runs++
		if lim.MaxString >= 0 && len(content.String) > lim.MaxString {
			rows.Close()
			return st, &parse.Error{File: opt.File, Offset: -1,
				Err: fmt.Errorf("asset %d: content longer than %d bytes: %w", id, lim.MaxString, parse.ErrLimit)}
		}
		t := canonicalType(typ.String)
		switch t {
		case typeFQDN, typeIP, typeNetblock, typeASN, typeRIROrg:
		default:
			continue
		}
		var c assetContent
		if err := json.Unmarshal([]byte(content.String), &c); err != nil {
			rows.Close()
			return st, &parse.Error{File: opt.File, Offset: -1,
				Err: fmt.Errorf("asset %d (%s): content: %v: %w", id, t, err, parse.ErrFormat)}
		}
		v := c.value(t)
		if strings.TrimSpace(v) == "" {
			continue
		}
		n, err := g.add(t, v)
		if err != nil {
			rows.Close()
			return st, &parse.Error{File: opt.File, Offset: -1, Err: err}
		}
		byID[id] = n
	}
	if err := rows.Close(); err != nil {
		return fail(err)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}

	if tables["relations"] {
		rows, err = db.QueryContext(ctx, `SELECT type, from_asset_id, to_asset_id FROM relations ORDER BY id`)
		if err != nil {
			return fail(err)
		}
		for rows.Next() {
			var rel sql.NullString
			var from, to sql.NullInt64
			if err := rows.Scan(&rel, &from, &to); err != nil {
				rows.Close()
				return fail(err)
			}
			f, t := byID[from.Int64], byID[to.Int64]
			if f != nil && t != nil {
				g.relate(f, rel.String, t)
			}
		}
		if err := rows.Close(); err != nil {
			return fail(err)
		}
		if err := rows.Err(); err != nil {
			return fail(err)
		}
	}

	err = g.emit(opt.Scope, func(a *finding.Asset) error {
		if lim.MaxResults >= 0 && st.Assets >= lim.MaxResults {
			return &parse.Error{File: opt.File, Offset: -1, Err: fmt.Errorf("more than %d results: %w", lim.MaxResults, parse.ErrLimit)}
		}
		st.Assets++
		if sink.Asset != nil {
			if err := sink.Asset(a); err != nil {
				return fmt.Errorf("%s: %w", opt.File, err)
			}
		}
		return nil
	})
	return st, err
}
