// Package cadence turns the cadences users write on scan schedules into
// robfig/cron schedules that fire at the right instants in the schedule's
// time zone.
//
// Accepted forms:
//
//	daily@HH:MM
//	weekly@DAY HH:MM         DAY is Mon..Sun or a full name, any case
//	biweekly@DAY HH:MM       every other week, counted from the week of an anchor date
//	monthly@DD HH:MM         DD is 1..31; past the month's end it fires on the last day
//	0 3 * * 1-5              a standard 5-field cron spec
//	@daily, @hourly, ...     cron descriptors; @every DURATION (at least a minute)
//
// Every calendar cadence is evaluated on the wall clock of its time zone and
// only then mapped to an instant, so daylight-saving changes behave the way
// an operator expects: a wall time that does not exist (spring forward) fires
// at the first instant after the gap, and a wall time that occurs twice (fall
// back) fires once, at its first occurrence. robfig's own SpecSchedule skips
// the first case and fires twice in the second, which would show up as a
// missed or duplicated run in the Level 3 evidence.
package cadence

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Cadence is a parsed cadence. Next returns the first firing instant strictly
// after t, in the cadence's time zone, or the zero time if it never fires
// again.
type Cadence interface {
	cron.Schedule
	// String returns the cadence in canonical form, parseable by Parse.
	String() string
}

// ParseError reports a cadence that cannot be parsed. Reason says which part
// is wrong without repeating the spec, so callers that print their own
// context (a schedule file's field path) can use it alone.
type ParseError struct {
	Spec   string
	Reason string
}

func (e *ParseError) Error() string { return e.Spec + ": " + e.Reason }

// minEvery is the shortest @every interval accepted: scans are minutes to
// hours long, and a sub-minute cadence is nearly always a typo.
const minEvery = time.Minute

// Parse parses spec as a cadence in loc (nil means UTC). anchor is only used
// by biweekly cadences: the week (Monday to Sunday) that holds anchor's date
// in loc is a firing week, and so is every second week before and after it.
func Parse(spec string, loc *time.Location, anchor time.Time) (Cadence, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := strings.TrimSpace(spec)
	fail := func(format string, args ...any) (Cadence, error) {
		return nil, &ParseError{Spec: spec, Reason: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return fail("empty cadence (use daily@HH:MM, weekly@DAY HH:MM, biweekly@DAY HH:MM, monthly@DD HH:MM or a cron spec)")
	}
	if i := strings.IndexByte(s, '@'); i > 0 {
		kind, rest := strings.ToLower(s[:i]), strings.TrimSpace(s[i+1:])
		var (
			rule  wallRule
			canon string
			err   string
		)
		switch kind {
		case "daily":
			rule, canon, err = parseDaily(rest)
		case "weekly":
			rule, canon, err = parseWeekly("weekly", rest)
		case "biweekly":
			var w wallRule
			w, canon, err = parseWeekly("biweekly", rest)
			switch {
			case err != "":
			case anchor.IsZero():
				err = "biweekly needs a start date to count weeks from"
			default:
				// Parity is counted on anchor's calendar date in loc.
				a := anchor.In(loc)
				day := time.Date(a.Year(), a.Month(), a.Day(), 0, 0, 0, 0, time.UTC)
				rule = biweekly{weekly: w.(weekly), anchorMonday: mondayOf(day)}
			}
		case "monthly":
			rule, canon, err = parseMonthly(rest)
		default:
			return fail("unknown cadence %q (use daily@HH:MM, weekly@DAY HH:MM, biweekly@DAY HH:MM, monthly@DD HH:MM or a cron spec)", s[:i])
		}
		if err != "" {
			return fail("%s", err)
		}
		return &zoned{spec: canon, loc: loc, rule: rule}, nil
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return fail("time zone prefixes are not allowed here; set the schedule's timezone instead")
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return fail("%v", err)
	}
	canon := strings.Join(strings.Fields(s), " ")
	switch sc := sched.(type) {
	case cron.ConstantDelaySchedule:
		if sc.Delay < minEvery {
			return fail("interval %v is shorter than a minute", sc.Delay)
		}
		return &every{spec: canon, loc: loc, delay: sc.Delay}, nil
	case *cron.SpecSchedule:
		// Evaluate on the wall clock: the zoned wrapper maps to instants.
		sc.Location = time.UTC
		c := &zoned{spec: canon, loc: loc, rule: specRule{sc}}
		if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
			return fail("never fires (no such date)")
		}
		return c, nil
	default:
		return fail("unsupported schedule type %T", sched)
	}
}

// Between lists the firing instants of c in (from, to], at most max of them
// (none when max <= 0). The scheduler uses it to find runs missed while it
// was down; the cap keeps a long outage with a frequent cadence from
// producing an unbounded backlog. A result of length max may be truncated.
func Between(c Cadence, from, to time.Time, max int) []time.Time {
	var out []time.Time
	t := from
	for len(out) < max {
		n := c.Next(t)
		if n.IsZero() || n.After(to) || !n.After(t) {
			break
		}
		out = append(out, n)
		t = n
	}
	return out
}

// wallRule yields the next wall-clock reading strictly after w. Wall
// readings are carried as times in UTC so that no zone rule interferes with
// the calendar arithmetic.
type wallRule interface {
	nextWall(w time.Time) time.Time
}

// zoned maps a wallRule's readings to instants in loc.
type zoned struct {
	spec string
	loc  *time.Location
	rule wallRule
}

func (z *zoned) String() string { return z.spec }

// maxSkips bounds the walk over wall readings that map to instants at or
// before t: readings inside a repeated hour (second pass) or a skipped
// stretch. A minute-resolution cron spec can produce a day's worth of them
// when a zone skips a whole day (Samoa, 2011).
const maxSkips = 10000

// Next implements cron.Schedule.
func (z *zoned) Next(t time.Time) time.Time {
	w := wallOf(t, z.loc)
	for range maxSkips {
		w = z.rule.nextWall(w)
		if w.IsZero() {
			return time.Time{}
		}
		if at := instantOf(w, z.loc); at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// every is "@every D": a fixed interval on the absolute time line, where
// time zones play no part.
type every struct {
	spec  string
	loc   *time.Location
	delay time.Duration
}

func (e *every) String() string { return e.spec }

// Next implements cron.Schedule; like robfig's ConstantDelaySchedule it
// lands on whole seconds.
func (e *every) Next(t time.Time) time.Time {
	return t.Add(e.delay - time.Duration(t.Nanosecond())).In(e.loc)
}

// wallOf is t's wall-clock reading in loc, carried in UTC.
func wallOf(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// instantOf maps a wall reading to an instant in loc: the earliest instant
// showing that reading when there are two (fall back), or the first instant
// after the gap when there is none (spring forward). time.Date leaves both
// choices unspecified, so they are made explicitly here.
func instantOf(w time.Time, loc *time.Location) time.Time {
	if loc == time.UTC {
		return w
	}
	W, ns := w.Unix(), int64(w.Nanosecond())
	const hour = 3600
	var (
		best   time.Time
		found  bool
		maxOff = -1 << 31
	)
	// The instant is within ±14h of W; probing the offsets in force around
	// it finds every offset that could apply, unless a zone changed twice
	// within a day, which none has.
	for _, p := range [...]int64{W - 26*hour, W - 14*hour, W, W + 14*hour, W + 26*hour} {
		_, off := time.Unix(p, 0).In(loc).Zone()
		maxOff = max(maxOff, off)
		u := time.Unix(W-int64(off), ns).In(loc)
		if _, got := u.Zone(); got != off {
			continue
		}
		if !found || u.Before(best) {
			best, found = u, true
		}
	}
	if found {
		return best
	}
	// In a gap: W-maxOff lies before the transition (it would show a later
	// reading under the new offset), so its zone period ends at the
	// transition, the first instant whose reading is past w.
	_, end := time.Unix(W-int64(maxOff), 0).In(loc).ZoneBounds()
	if !end.IsZero() {
		return end
	}
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
}

// specRule adapts a robfig SpecSchedule evaluated in UTC to a wallRule.
type specRule struct{ s *cron.SpecSchedule }

func (r specRule) nextWall(w time.Time) time.Time { return r.s.Next(w) }

type daily struct{ hour, min int }

func (d daily) nextWall(w time.Time) time.Time {
	c := time.Date(w.Year(), w.Month(), w.Day(), d.hour, d.min, 0, 0, time.UTC)
	if !c.After(w) {
		c = c.AddDate(0, 0, 1)
	}
	return c
}

type weekly struct {
	day time.Weekday
	daily
}

func (k weekly) nextWall(w time.Time) time.Time {
	c := time.Date(w.Year(), w.Month(), w.Day(), k.hour, k.min, 0, 0, time.UTC)
	c = c.AddDate(0, 0, (int(k.day)-int(c.Weekday())+7)%7)
	if !c.After(w) {
		c = c.AddDate(0, 0, 7)
	}
	return c
}

type biweekly struct {
	weekly
	anchorMonday time.Time // midnight UTC of the anchor week's Monday
}

func (b biweekly) nextWall(w time.Time) time.Time {
	c := b.weekly.nextWall(w)
	days := int(mondayOf(c).Sub(b.anchorMonday) / (24 * time.Hour))
	if (days/7)%2 != 0 { // days is a multiple of 7, so the sign is harmless
		c = c.AddDate(0, 0, 7)
	}
	return c
}

// mondayOf is midnight of the Monday starting d's week (weeks run Monday to
// Sunday, as ISO 8601 has them).
func mondayOf(d time.Time) time.Time {
	back := (int(d.Weekday()) + 6) % 7
	return time.Date(d.Year(), d.Month(), d.Day()-back, 0, 0, 0, 0, time.UTC)
}

type monthly struct {
	dom int
	daily
}

func (m monthly) nextWall(w time.Time) time.Time {
	y, mo := w.Year(), w.Month()
	for range 2 {
		day := min(m.dom, daysIn(y, mo))
		c := time.Date(y, mo, day, m.hour, m.min, 0, 0, time.UTC)
		if c.After(w) {
			return c
		}
		if mo++; mo > time.December {
			mo, y = time.January, y+1
		}
	}
	return time.Time{} // unreachable: the next month always has a later day
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

var clockRE = regexp.MustCompile(`^(\d{1,2}):(\d{2})$`)

func parseClock(s string) (daily, string) {
	m := clockRE.FindStringSubmatch(s)
	if m == nil {
		return daily{}, fmt.Sprintf("invalid time %q (use HH:MM, 00:00 to 23:59)", s)
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	if h > 23 || mi > 59 {
		return daily{}, fmt.Sprintf("invalid time %q (use HH:MM, 00:00 to 23:59)", s)
	}
	return daily{hour: h, min: mi}, ""
}

func (d daily) clock() string { return fmt.Sprintf("%02d:%02d", d.hour, d.min) }

func parseDaily(rest string) (wallRule, string, string) {
	d, err := parseClock(rest)
	if err != "" {
		return nil, "", err
	}
	return d, "daily@" + d.clock(), ""
}

var dayNames = map[string]time.Weekday{
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tues": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thur": time.Thursday, "thurs": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
	"sun": time.Sunday, "sunday": time.Sunday,
}

func parseWeekly(kind, rest string) (wallRule, string, string) {
	f := strings.Fields(rest)
	if len(f) != 2 {
		return nil, "", fmt.Sprintf("want %s@DAY HH:MM, e.g. %s@Mon 09:30", kind, kind)
	}
	day, ok := dayNames[strings.ToLower(f[0])]
	if !ok {
		return nil, "", fmt.Sprintf("unknown day %q (use Mon..Sun)", f[0])
	}
	d, err := parseClock(f[1])
	if err != "" {
		return nil, "", err
	}
	return weekly{day: day, daily: d}, kind + "@" + day.String()[:3] + " " + d.clock(), ""
}

func parseMonthly(rest string) (wallRule, string, string) {
	f := strings.Fields(rest)
	if len(f) != 2 {
		return nil, "", "want monthly@DD HH:MM, e.g. monthly@1 06:00"
	}
	dom, err := strconv.Atoi(f[0])
	if err != nil || dom < 1 || dom > 31 {
		return nil, "", fmt.Sprintf("day of month %q out of range (use 1..31; past the month's end it fires on the last day)", f[0])
	}
	d, msg := parseClock(f[1])
	if msg != "" {
		return nil, "", msg
	}
	return monthly{dom: dom, daily: d}, fmt.Sprintf("monthly@%d %s", dom, d.clock()), ""
}
