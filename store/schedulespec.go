package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/starpipe/starpipe/scheduler/spec"
)

// The stored form of a schedule keeps its definition as JSON (Schedule.Spec)
// beside the columns the scheduler queries. These conversions live here,
// below both the scheduler and its readers (api, the worker), so that
// reading a schedule needs no scheduler; spec imports only finding and
// the cadence parser.

// ScheduleOf converts a schedule to its stored form. The schedule should
// have been validated (spec.Decode, spec.DecodeJSON or Validate).
func ScheduleOf(s spec.Schedule) (Schedule, error) {
	s.SetDefaults()
	b, err := json.Marshal(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("encoding schedule %s: %w", s.Name, err)
	}
	return Schedule{
		Name:     s.Name,
		Kind:     string(s.Kind),
		Enabled:  s.IsEnabled(),
		Cadence:  s.Cadence,
		Timezone: s.Timezone,
		Start:    s.Start,
		Spec:     b,
	}, nil
}

// Definition decodes a stored schedule's definition.
func (sc Schedule) Definition() (spec.Schedule, error) {
	var s spec.Schedule
	dec := json.NewDecoder(bytes.NewReader(sc.Spec))
	if err := dec.Decode(&s); err != nil {
		return spec.Schedule{}, fmt.Errorf("decoding stored schedule %s: %w", sc.Name, err)
	}
	return s, nil
}

// NextDue is the first due time of a stored schedule after now, or the
// zero time when it is disabled or never fires again.
func (sc Schedule) NextDue(now time.Time) (time.Time, error) {
	if !sc.Enabled {
		return time.Time{}, nil
	}
	s, err := sc.Definition()
	if err != nil {
		return time.Time{}, err
	}
	c, err := s.CadenceOf()
	if err != nil {
		return time.Time{}, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	return c.Next(now), nil
}
