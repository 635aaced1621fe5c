package config

import (
	"errors"
	"fmt"
	"time"
)

// SLAConfig is the SLA policy: how many days a finding of each severity may
// stay open, counted from first seen. 0 means no SLA for that severity. The
// daemon records the policy as a new version whenever it differs from the
// last one recorded, so a past cycle reads the policy then in force.
type SLAConfig struct {
	Critical int `yaml:"critical"`
	High     int `yaml:"high"`
	Medium   int `yaml:"medium"`
	Low      int `yaml:"low"`
	Info     int `yaml:"info"`
	// CheckEvery is how often breaches are looked for (and announced once
	// as sla-breached events).
	CheckEvery time.Duration `yaml:"check_every"`
	// RestartOnExpiry restarts a finding's due date from the expiry of the
	// exception that covered it (DefectDojo's switch of the same name;
	// default on here, so an expired acceptance is not at once a breach).
	RestartOnExpiry bool `yaml:"restart_on_expiry"`
}

// DefaultSLA is 7/30/90/180 days for critical/high/medium/low, none for
// info, checked every five minutes.
func DefaultSLA() SLAConfig {
	return SLAConfig{Critical: 7, High: 30, Medium: 90, Low: 180, CheckEvery: 5 * time.Minute, RestartOnExpiry: true}
}

// Days returns the durations per severity (critical, high, medium, low,
// info); 0 is none.
func (s SLAConfig) Days() (critical, high, medium, low, info time.Duration) {
	d := func(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
	return d(s.Critical), d(s.High), d(s.Medium), d(s.Low), d(s.Info)
}

// maxSLADays keeps due dates within what anyone means by a deadline (ten
// years) and far from overflowing a duration.
const maxSLADays = 3650

func (s SLAConfig) validate() []error {
	var errs []error
	for _, f := range []struct {
		key  string
		days int
	}{{"sla.critical", s.Critical}, {"sla.high", s.High}, {"sla.medium", s.Medium}, {"sla.low", s.Low}, {"sla.info", s.Info}} {
		if f.days < 0 || f.days > maxSLADays {
			errs = append(errs, fmt.Errorf("%s: %d days is not between 0 (no SLA) and %d", f.key, f.days, maxSLADays))
		}
	}
	if s.CheckEvery < time.Second {
		errs = append(errs, errors.New("sla.check_every: must be at least 1s"))
	}
	return errs
}
