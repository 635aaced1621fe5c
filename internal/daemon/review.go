package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/store"
)

// SLAPolicy is the configured SLA policy as the store and the ingest
// consumer take it.
func SLAPolicy(cfg config.Config) store.SLA {
	c, h, m, l, i := cfg.SLA.Days()
	return store.SLA{Critical: c, High: h, Medium: m, Low: l, Info: i}
}

// slaActor records the configuration's SLA policy versions in the
// activity log.
const slaActor = "config"

// recordSLAPolicy makes the configured SLA policy the version in force,
// unless it already is: every process that sets due dates (ingest) or
// checks them (scheduler) runs under a recorded version.
func (d *Daemon) recordSLAPolicy(ctx context.Context) error {
	p, created, err := d.st.RecordSLAPolicy(ctx, SLAPolicy(d.cfg), slaActor, d.clock().Now())
	if err != nil {
		return err
	}
	if created {
		d.log.Info("SLA policy recorded", "version", p.Version, "critical", d.cfg.SLA.Critical, "high", d.cfg.SLA.High,
			"medium", d.cfg.SLA.Medium, "low", d.cfg.SLA.Low, "info", d.cfg.SLA.Info)
	}
	return nil
}

// clock is the scheduler's clock (tests set a fake one through
// WithSchedulerOptions), which the SLA watcher shares: one fake clock
// drives every time-based part.
func (d *Daemon) clock() review.Clock {
	so := scheduler.Options{}
	if d.opt.schedTune != nil {
		d.opt.schedTune(&so)
	}
	if so.Clock == nil {
		return review.SystemClock
	}
	return so.Clock
}

// ExceptionPolicy is the configured rules of the exceptions register.
func ExceptionPolicy(cfg config.Config) review.ExceptionPolicy {
	day := 24 * time.Hour
	return review.ExceptionPolicy{
		FourEyes:      cfg.Review.FourEyes,
		MaxException:  time.Duration(cfg.Review.MaxException) * day,
		ExpiryWarning: time.Duration(cfg.Review.ExpiryWarning) * day,
		RestartSLA:    cfg.SLA.RestartOnExpiry,
	}
}

// buildSLAWatcher adds the part that announces SLA breaches and runs the
// exceptions register's expiry and warnings. It runs with
// the scheduler role, on every replica: the store records each breach once
// whoever finds it first, so no leader is needed.
func (d *Daemon) buildSLAWatcher() {
	w := review.NewSLAWatcher(d.st, d.clock(), d.cfg.SLA.CheckEvery, d.opt.log).
		WithExceptions(review.NewExceptionChecker(d.st, ExceptionPolicy(d.cfg), d.clock(), d.opt.log))
	d.add(part{name: "sla watcher", stage: stageBackground, run: w.Run})
}

func (d *Daemon) buildReview(ctx context.Context) error {
	if !d.cfg.HasRole(config.RoleIngest) && !d.cfg.HasRole(config.RoleScheduler) {
		return nil
	}
	if err := d.recordSLAPolicy(ctx); err != nil {
		return fmt.Errorf("record SLA policy: %w", err)
	}
	if d.cfg.HasRole(config.RoleScheduler) {
		d.buildSLAWatcher()
	}
	return nil
}
