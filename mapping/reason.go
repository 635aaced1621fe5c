package mapping

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/finding"
)

// A reason template is text with {{.Field}} placeholders. It is split into
// literal and field segments at load, so rendering is a few appends and an
// unknown field is a load error rather than a surprise at ingest time.
// Conditionals and functions are deliberately not supported: a reason an
// auditor reads should be plain.

type reasonField uint8

const (
	fieldNone reasonField = iota
	fieldRuleID
	fieldRuleName
	fieldTitle
	fieldTool
	fieldKind
	fieldSeverity
	fieldCWE
	fieldCVE
	fieldTags
	fieldLocation
	fieldLocationKind
	fieldCVSS
	fieldControl
	fieldControlTitle
	fieldVersion
	fieldMappingRule
)

// reasonFields are the names a reason template may use.
var reasonFields = map[string]reasonField{
	"RuleID":       fieldRuleID,       // the finding's rule or template id
	"RuleName":     fieldRuleName,     // the finding's rule name
	"Title":        fieldTitle,        // the finding's title
	"Tool":         fieldTool,         // the tool that reported it
	"Kind":         fieldKind,         // scan kind: external, authenticated, code
	"Severity":     fieldSeverity,     // info .. critical
	"CWE":          fieldCWE,          // "CWE-79, CWE-89", or "none"
	"CVE":          fieldCVE,          // "CVE-2021-44228", or "none"
	"Tags":         fieldTags,         // "misconfig, tls", or "none"
	"Location":     fieldLocation,     // URI (or logical location)
	"LocationKind": fieldLocationKind, // file, url, host, logical, none
	"CVSS":         fieldCVSS,         // the CVSS vector, else the score, else "none"
	"Control":      fieldControl,      // the control id of this link
	"ControlTitle": fieldControlTitle, // its short title
	"Version":      fieldVersion,      // the CCM version of this link
	"MappingRule":  fieldMappingRule,  // the mapping rule id
}

type reasonSeg struct {
	lit   string
	field reasonField
}

type reasonTmpl struct {
	segs       []reasonSeg
	perControl bool // uses Control, ControlTitle or Version
	constant   bool // no placeholders at all
	text       string
}

func compileReason(s string) (*reasonTmpl, error) {
	t := &reasonTmpl{text: s}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, errors.New("'}}' without '{{' in reason")
			}
			if rest != "" {
				t.segs = append(t.segs, reasonSeg{lit: rest})
			}
			break
		}
		if strings.Contains(rest[:i], "}}") {
			return nil, errors.New("'}}' without '{{' in reason")
		}
		if i > 0 {
			t.segs = append(t.segs, reasonSeg{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, errors.New("unclosed '{{' in reason")
		}
		expr := strings.TrimSpace(rest[i+2 : i+j])
		name, ok := strings.CutPrefix(expr, ".")
		f := reasonFields[name]
		if !ok || f == fieldNone {
			return nil, fmt.Errorf("unknown reason field {{%s}} (known: %s)", expr, knownReasonFields())
		}
		switch f {
		case fieldControl, fieldControlTitle, fieldVersion:
			t.perControl = true
		}
		t.segs = append(t.segs, reasonSeg{field: f})
		rest = rest[i+j+2:]
	}
	t.constant = true
	for _, sg := range t.segs {
		if sg.field != fieldNone {
			t.constant = false
		}
	}
	return t, nil
}

func knownReasonFields() string {
	names := make([]string, 0, len(reasonFields))
	for n := range reasonFields {
		names = append(names, "."+n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// render returns the reason for one finding and one link, built in buf (a
// scratch buffer the caller keeps on its stack) and copied once into the
// returned string. l is nil when the template does not use the link fields.
func (t *reasonTmpl) render(b []byte, f *finding.Finding, l *linkSpec, rule string) string {
	if t.constant {
		return t.text
	}
	for _, sg := range t.segs {
		switch sg.field {
		case fieldNone:
			b = append(b, sg.lit...)
		case fieldRuleID:
			b = append(b, f.RuleID...)
		case fieldRuleName:
			b = append(b, f.RuleName...)
		case fieldTitle:
			b = append(b, f.Title...)
		case fieldTool:
			b = append(b, f.Tool...)
		case fieldKind:
			b = append(b, string(f.Kind)...)
		case fieldSeverity:
			b = append(b, f.Severity.String()...)
		case fieldCWE:
			if len(f.CWE) == 0 {
				b = append(b, "none"...)
			}
			for i, c := range f.CWE {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = append(b, "CWE-"...)
				b = strconv.AppendInt(b, int64(c), 10)
			}
		case fieldCVE:
			b = appendList(b, f.CVE)
		case fieldTags:
			b = appendList(b, f.Tags)
		case fieldLocation:
			if f.Location.URI != "" {
				b = append(b, f.Location.URI...)
			} else {
				b = append(b, f.Location.Logical...)
			}
		case fieldLocationKind:
			if f.Location.Kind == finding.LocationNone {
				b = append(b, "none"...)
			} else {
				b = append(b, string(f.Location.Kind)...)
			}
		case fieldCVSS:
			switch {
			case f.CVSS != nil && f.CVSS.Vector != "":
				b = append(b, f.CVSS.Vector...)
			case f.Signals.Vector != "":
				b = append(b, f.Signals.Vector...)
			case f.Signals.Score != nil:
				b = strconv.AppendFloat(b, *f.Signals.Score, 'f', -1, 64)
			default:
				b = append(b, "none"...)
			}
		case fieldControl:
			b = append(b, l.control...)
		case fieldControlTitle:
			b = append(b, l.title...)
		case fieldVersion:
			b = append(b, l.version...)
		case fieldMappingRule:
			b = append(b, rule...)
		}
	}
	return string(b)
}

// appendList writes a list field; "none" keeps a reason readable when the
// finding has no value for it.
func appendList(b []byte, items []string) []byte {
	if len(items) == 0 {
		return append(b, "none"...)
	}
	for i, it := range items {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, it...)
	}
	return b
}
