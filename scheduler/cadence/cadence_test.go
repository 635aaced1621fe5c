package cadence

import (
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // DST cases must not depend on the host's zoneinfo
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func at(loc *time.Location, y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, loc)
}

func TestNext(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	ny := mustLoad(t, "America/New_York")
	utc := time.UTC
	anchor := time.Date(2024, 12, 25, 0, 0, 0, 0, utc) // a Wednesday; its week starts Mon 23 Dec

	tests := []struct {
		name   string
		spec   string
		loc    *time.Location
		anchor time.Time
		from   time.Time
		want   []time.Time // successive Next results
	}{
		{"daily same day", "daily@10:00", utc, time.Time{}, at(utc, 2024, 3, 1, 9, 0),
			[]time.Time{at(utc, 2024, 3, 1, 10, 0), at(utc, 2024, 3, 2, 10, 0)}},
		{"daily exactly at fire time moves on", "daily@10:00", utc, time.Time{}, at(utc, 2024, 3, 1, 10, 0),
			[]time.Time{at(utc, 2024, 3, 2, 10, 0)}},
		{"daily leap day", "daily@23:59", utc, time.Time{}, at(utc, 2024, 2, 28, 23, 59),
			[]time.Time{at(utc, 2024, 2, 29, 23, 59), at(utc, 2024, 3, 1, 23, 59)}},
		{"weekly", "weekly@mon 09:30", utc, time.Time{}, at(utc, 2024, 1, 3, 0, 0),
			[]time.Time{at(utc, 2024, 1, 8, 9, 30), at(utc, 2024, 1, 15, 9, 30)}},
		{"weekly full name", "weekly@Sunday 00:00", utc, time.Time{}, at(utc, 2024, 1, 6, 23, 0),
			[]time.Time{at(utc, 2024, 1, 7, 0, 0), at(utc, 2024, 1, 14, 0, 0)}},
		{"weekly later today", "weekly@Wed 18:00", utc, time.Time{}, at(utc, 2024, 1, 3, 17, 0),
			[]time.Time{at(utc, 2024, 1, 3, 18, 0)}},
		{"biweekly across year boundary", "biweekly@Mon 08:00", utc, anchor, at(utc, 2024, 12, 20, 0, 0),
			// anchor week Mon 23 Dec fires, then 6 Jan, 20 Jan (skipping 30 Dec and 13 Jan)
			[]time.Time{at(utc, 2024, 12, 23, 8, 0), at(utc, 2025, 1, 6, 8, 0), at(utc, 2025, 1, 20, 8, 0)}},
		{"biweekly before anchor keeps parity", "biweekly@Fri 12:00", utc, anchor, at(utc, 2024, 12, 1, 0, 0),
			// anchor week's Friday is 27 Dec; two weeks earlier is 13 Dec
			[]time.Time{at(utc, 2024, 12, 13, 12, 0), at(utc, 2024, 12, 27, 12, 0), at(utc, 2025, 1, 10, 12, 0)}},
		{"biweekly 53-week ISO year", "biweekly@Thu 06:00", utc, time.Date(2020, 12, 31, 0, 0, 0, 0, utc), at(utc, 2020, 12, 30, 0, 0),
			[]time.Time{at(utc, 2020, 12, 31, 6, 0), at(utc, 2021, 1, 14, 6, 0)}},
		{"monthly 31 clamps in Feb leap year", "monthly@31 06:00", utc, time.Time{}, at(utc, 2024, 1, 31, 7, 0),
			[]time.Time{at(utc, 2024, 2, 29, 6, 0), at(utc, 2024, 3, 31, 6, 0), at(utc, 2024, 4, 30, 6, 0)}},
		{"monthly 31 clamps in Feb common year", "monthly@31 06:00", utc, time.Time{}, at(utc, 2023, 2, 1, 0, 0),
			[]time.Time{at(utc, 2023, 2, 28, 6, 0), at(utc, 2023, 3, 31, 6, 0)}},
		{"monthly 29 in Feb", "monthly@29 00:00", utc, time.Time{}, at(utc, 2100, 2, 1, 0, 0), // 2100 is not leap
			[]time.Time{at(utc, 2100, 2, 28, 0, 0), at(utc, 2100, 3, 29, 0, 0)}},
		{"monthly year wrap", "monthly@1 00:00", utc, time.Time{}, at(utc, 2024, 12, 15, 0, 0),
			[]time.Time{at(utc, 2025, 1, 1, 0, 0)}},
		{"cron weekdays", "0 3 * * 1-5", utc, time.Time{}, at(utc, 2024, 1, 5, 4, 0), // Friday after 3:00
			[]time.Time{at(utc, 2024, 1, 8, 3, 0), at(utc, 2024, 1, 9, 3, 0)}},
		{"cron leap day", "0 0 29 2 *", utc, time.Time{}, at(utc, 2024, 3, 1, 0, 0),
			[]time.Time{at(utc, 2028, 2, 29, 0, 0)}},
		{"descriptor daily in zone", "@daily", berlin, time.Time{}, at(berlin, 2024, 1, 1, 12, 0),
			[]time.Time{at(berlin, 2024, 1, 2, 0, 0)}},
		{"descriptor every", "@every 90m", utc, time.Time{}, at(utc, 2024, 1, 1, 0, 0),
			[]time.Time{at(utc, 2024, 1, 1, 1, 30), at(utc, 2024, 1, 1, 3, 0)}},

		// Spring forward in Berlin: 2024-03-31 02:00 CET becomes 03:00 CEST.
		{"berlin gap fires after the gap", "daily@02:30", berlin, time.Time{}, at(berlin, 2024, 3, 30, 12, 0),
			[]time.Time{at(berlin, 2024, 3, 31, 3, 0), at(berlin, 2024, 4, 1, 2, 30)}},
		{"berlin gap cron", "30 2 * * *", berlin, time.Time{}, at(berlin, 2024, 3, 30, 12, 0),
			[]time.Time{at(berlin, 2024, 3, 31, 3, 0), at(berlin, 2024, 4, 1, 2, 30)}},
		{"berlin gap hourly fires once after the gap", "15 * * * *", berlin, time.Time{}, at(berlin, 2024, 3, 31, 1, 20),
			[]time.Time{at(berlin, 2024, 3, 31, 3, 0), at(berlin, 2024, 3, 31, 3, 15)}},
		// Fall back in Berlin: 2024-10-27 03:00 CEST becomes 02:00 CET.
		{"berlin repeat fires once", "daily@02:30", berlin, time.Time{}, at(berlin, 2024, 10, 26, 12, 0),
			[]time.Time{
				time.Date(2024, 10, 27, 0, 30, 0, 0, time.UTC), // 02:30 CEST, the first pass
				at(berlin, 2024, 10, 28, 2, 30),
			}},
		{"berlin repeat cron fires once", "30 2 * * *", berlin, time.Time{}, at(berlin, 2024, 10, 26, 12, 0),
			[]time.Time{time.Date(2024, 10, 27, 0, 30, 0, 0, time.UTC), at(berlin, 2024, 10, 28, 2, 30)}},
		{"berlin second pass of repeated hour skips", "daily@02:30", berlin, time.Time{},
			time.Date(2024, 10, 27, 1, 10, 0, 0, time.UTC), // 02:10 CET, second pass
			[]time.Time{at(berlin, 2024, 10, 28, 2, 30)}},
		// New York: 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
		{"new york gap weekly", "weekly@Sun 02:15", ny, time.Time{}, at(ny, 2024, 3, 9, 0, 0),
			[]time.Time{at(ny, 2024, 3, 10, 3, 0), at(ny, 2024, 3, 17, 2, 15)}},
		{"new york repeat", "daily@01:30", ny, time.Time{}, at(ny, 2024, 11, 2, 12, 0),
			[]time.Time{time.Date(2024, 11, 3, 5, 30, 0, 0, time.UTC), at(ny, 2024, 11, 4, 1, 30)}},
		{"new york monthly keeps wall time across DST", "monthly@10 09:00", ny, time.Time{}, at(ny, 2024, 2, 15, 0, 0),
			[]time.Time{at(ny, 2024, 3, 10, 9, 0), time.Date(2024, 4, 10, 13, 0, 0, 0, time.UTC)}},
		{"new york biweekly across DST", "biweekly@Sun 02:30", ny, time.Date(2024, 3, 10, 0, 0, 0, 0, ny), at(ny, 2024, 3, 1, 0, 0),
			[]time.Time{at(ny, 2024, 3, 10, 3, 0), at(ny, 2024, 3, 24, 2, 30)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.spec, tt.loc, tt.anchor)
			if err != nil {
				t.Fatal(err)
			}
			cur := tt.from
			for i, want := range tt.want {
				got := c.Next(cur)
				if !got.Equal(want) {
					t.Fatalf("Next #%d after %v = %v, want %v", i, cur, got, want)
				}
				if got.Location() != tt.loc {
					t.Fatalf("Next returned location %v, want %v", got.Location(), tt.loc)
				}
				cur = got
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec, anchor, reason string
	}{
		{"weekly@Fun 10:00", "", `unknown day "Fun" (use Mon..Sun)`},
		{"daily@24:00", "", `invalid time "24:00" (use HH:MM, 00:00 to 23:59)`},
		{"daily@9", "", `invalid time "9" (use HH:MM, 00:00 to 23:59)`},
		{"daily@10:60", "", `invalid time "10:60" (use HH:MM, 00:00 to 23:59)`},
		{"weekly@Mon", "", `want weekly@DAY HH:MM, e.g. weekly@Mon 09:30`},
		{"biweekly@Mon 10:00", "", `biweekly needs a start date to count weeks from`},
		{"biweekly@Xyz 10:00", "2024-01-01", `unknown day "Xyz" (use Mon..Sun)`},
		{"monthly@32 10:00", "", `day of month "32" out of range (use 1..31; past the month's end it fires on the last day)`},
		{"monthly@0 10:00", "", `day of month "0" out of range (use 1..31; past the month's end it fires on the last day)`},
		{"monthly@15", "", `want monthly@DD HH:MM, e.g. monthly@1 06:00`},
		{"dayly@10:00", "", `unknown cadence "dayly" (use daily@HH:MM, weekly@DAY HH:MM, biweekly@DAY HH:MM, monthly@DD HH:MM or a cron spec)`},
		{"", "", "empty cadence"},
		{"CRON_TZ=Europe/Berlin 0 3 * * *", "", "time zone prefixes are not allowed"},
		{"TZ=x", "", "time zone prefixes are not allowed"},
		{"0 3 * *", "", "expected exactly 5 fields"},
		{"61 3 * * *", "", "above maximum"},
		{"0 0 31 4 *", "", "never fires"},
		{"@every 30s", "", "shorter than a minute"},
		{"@fortnightly", "", "unrecognized descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			var anchor time.Time
			if tt.anchor != "" {
				anchor, _ = time.Parse(time.DateOnly, tt.anchor)
			}
			_, err := Parse(tt.spec, time.UTC, anchor)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error = %v, want *ParseError", tt.spec, err)
			}
			if !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("reason = %q, want it to contain %q", pe.Reason, tt.reason)
			}
			if want := tt.spec + ": " + pe.Reason; err.Error() != want {
				t.Fatalf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestString(t *testing.T) {
	anchor := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"daily@9:05":           "daily@09:05",
		"WEEKLY@monday 10:00":  "weekly@Mon 10:00",
		"biweekly@SUN  23:00":  "biweekly@Sun 23:00",
		"monthly@05 01:00":     "monthly@5 01:00",
		" 0  3 * * 1-5 ":       "0 3 * * 1-5",
		"@hourly":              "@hourly",
		"weekly@Thursday 7:30": "weekly@Thu 07:30",
	} {
		c, err := Parse(in, time.UTC, anchor)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if got := c.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", in, got, want)
		}
	}
}

func TestBetween(t *testing.T) {
	c, err := Parse("daily@06:00", time.UTC, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	from := at(time.UTC, 2024, 1, 1, 6, 0) // excluded
	to := at(time.UTC, 2024, 1, 4, 6, 0)   // included
	got := Between(c, from, to, 10)
	want := []time.Time{at(time.UTC, 2024, 1, 2, 6, 0), at(time.UTC, 2024, 1, 3, 6, 0), at(time.UTC, 2024, 1, 4, 6, 0)}
	if len(got) != len(want) {
		t.Fatalf("Between = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("Between[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if got := Between(c, from, to, 2); len(got) != 2 {
		t.Fatalf("capped Between returned %d times, want 2", len(got))
	}
	if got := Between(c, from, to, 0); len(got) != 0 {
		t.Fatalf("Between with max 0 returned %v", got)
	}
	if got := Between(c, to, from, 10); len(got) != 0 {
		t.Fatalf("Between with to before from returned %v", got)
	}
}

// TestDSTYearOnceADay walks a whole year of a daily cadence in zones with
// DST and checks that each local day fires exactly once.
func TestDSTYearOnceADay(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/New_York"} {
		loc := mustLoad(t, zone)
		for _, spec := range []string{"daily@02:30", "30 2 * * *", "daily@01:30", "30 1 * * *"} {
			c, err := Parse(spec, loc, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			from := at(loc, 2024, 1, 1, 0, 0)
			got := Between(c, from, from.AddDate(1, 0, 0), 1000)
			if len(got) != 366 {
				t.Fatalf("%s %s: %d firings in 2024, want 366", zone, spec, len(got))
			}
			for i := 1; i < len(got); i++ {
				if a, b := got[i-1].In(loc), got[i].In(loc); a.YearDay()+1 != b.YearDay() {
					t.Fatalf("%s %s: %v then %v", zone, spec, a, b)
				}
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"daily@10:00", "weekly@Fun 10:00", "weekly@mon 23:59", "biweekly@Sunday 02:30",
		"monthly@31 02:30", "0 3 * * 1-5", "*/15 * * * *", "@hourly", "@every 1h",
		"0 0 29 2 *", "30 2 * * 0", "TZ=", "@every -1s", "1-2-3 * * * *", "*/0 * * * *",
	} {
		f.Add(s)
	}
	berlin := mustLoad(f, "Europe/Berlin")
	anchor := time.Date(2024, 3, 27, 0, 0, 0, 0, berlin)
	starts := []time.Time{
		time.Date(2024, 3, 31, 1, 59, 59, 999, berlin),
		time.Date(2024, 10, 27, 0, 45, 0, 0, time.UTC),
		time.Date(2024, 10, 27, 1, 45, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 0, 0, berlin),
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := Parse(spec, berlin, anchor)
		if err != nil {
			return
		}
		again, err := Parse(c.String(), berlin, anchor)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c.String(), spec, err)
		}
		for _, s := range starts {
			cur := s
			for range 3 {
				n := c.Next(cur)
				if n.IsZero() {
					break
				}
				if !n.After(cur) {
					t.Fatalf("%q: Next(%v) = %v, not after", spec, cur, n)
				}
				if m := again.Next(cur); !m.Equal(n) {
					t.Fatalf("%q and its canonical form %q disagree: %v vs %v", spec, c.String(), n, m)
				}
				cur = n
			}
		}
	})
}

func BenchmarkNext(b *testing.B) {
	berlin := mustLoad(b, "Europe/Berlin")
	for _, spec := range []string{"daily@02:30", "monthly@31 06:00", "0 3 * * 1-5"} {
		b.Run("spec="+spec, func(b *testing.B) {
			c, err := Parse(spec, berlin, time.Time{})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, berlin)
			for b.Loop() {
				c.Next(t0)
			}
		})
	}
}
