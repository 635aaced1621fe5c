package config

import "fmt"

// ReviewConfig holds the rules of the exceptions register.
type ReviewConfig struct {
	// FourEyes makes a new exception wait (pending) until a second person
	// approves it; the creator may not.
	FourEyes bool `yaml:"four_eyes"`
	// MaxException is how many days ahead an exception may expire at most.
	MaxException int `yaml:"max_exception"`
	// ExpiryWarning is how many days before its expiry an
	// exception-expiring event goes out (once).
	ExpiryWarning int `yaml:"expiry_warning"`
}

// DefaultReview allows exceptions of up to 365 days, warned about 14 days
// before they expire, without a second approver.
func DefaultReview() ReviewConfig {
	return ReviewConfig{MaxException: 365, ExpiryWarning: 14}
}

// maxExceptionDays keeps an exception within what anyone means by a
// temporary acceptance (ten years).
const maxExceptionDays = 3650

func (r ReviewConfig) validate() []error {
	var errs []error
	if r.MaxException < 1 || r.MaxException > maxExceptionDays {
		errs = append(errs, fmt.Errorf("review.max_exception: %d days is not between 1 and %d", r.MaxException, maxExceptionDays))
	}
	if r.ExpiryWarning < 0 || r.ExpiryWarning > r.MaxException {
		errs = append(errs, fmt.Errorf("review.expiry_warning: %d days is not between 0 and review.max_exception", r.ExpiryWarning))
	}
	return errs
}
