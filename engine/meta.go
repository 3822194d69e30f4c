package engine

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Meta holds the parameters every resource has, whatever its kind.
type Meta struct {
	AutoEdge  bool     `yaml:"autoedge"`
	AutoGroup bool     `yaml:"autogroup"`
	Noop      bool     `yaml:"noop"`
	Retry     int      `yaml:"retry"`   // retries after a failure; -1: forever
	Delay     int      `yaml:"delay"`   // milliseconds between retries
	Poll      int      `yaml:"poll"`    // seconds; > 0: poll instead of watching
	Limit     float64  `yaml:"limit"`   // check-and-apply per second; 0 or .inf: unlimited
	Burst     int      `yaml:"burst"`   // with limit: how many may come at once
	Sema      []string `yaml:"sema"`    // "name:count": named semaphores shared across the graph
	Timeout   int      `yaml:"timeout"` // seconds one check-and-apply may take; 0: no limit
	// Sensitive: the resource's values (content, commands, output, errors)
	// never appear in logs, reports or metrics; only that a property
	// changed, with a short hash of its old and new value.
	Sensitive bool `yaml:"sensitive"`
}

// The bounds of the meta durations: a year each, far beyond any real use and
// far below what a time.Duration holds (292 years), so converting a valid
// value can never overflow into a negative duration.
const (
	MaxPoll    = 365 * 24 * 60 * 60        // seconds
	MaxTimeout = 365 * 24 * 60 * 60        // seconds
	MaxDelay   = 365 * 24 * 60 * 60 * 1000 // milliseconds
	// MinLimit is the smallest positive rate: one check-and-apply a year.
	MinLimit = 1.0 / (365 * 24 * 60 * 60)
)

// PollEvery is the poll interval (0: no polling).
func (m Meta) PollEvery() time.Duration { return time.Duration(m.Poll) * time.Second }

// RetryDelay is the wait before each retry.
func (m Meta) RetryDelay() time.Duration { return time.Duration(m.Delay) * time.Millisecond }

// TimeLimit is how long one check-and-apply may take (0: no limit).
func (m Meta) TimeLimit() time.Duration { return time.Duration(m.Timeout) * time.Second }

// DefaultMeta is what a resource gets when its file says nothing.
func DefaultMeta() Meta {
	return Meta{AutoEdge: true, AutoGroup: true}
}

// Validate checks the meta parameters.
func (m Meta) Validate() error {
	switch {
	case m.Retry < -1:
		return fmt.Errorf("meta retry: %d is invalid: want -1 (forever) or a count >= 0", m.Retry)
	case m.Delay < 0:
		return fmt.Errorf("meta delay: %d is invalid: want milliseconds >= 0", m.Delay)
	case m.Delay > MaxDelay:
		return fmt.Errorf("meta delay: %d is invalid: want milliseconds <= %d (a year)", m.Delay, MaxDelay)
	case m.Poll < 0:
		return fmt.Errorf("meta poll: %d is invalid: want seconds >= 0", m.Poll)
	case m.Poll > MaxPoll:
		return fmt.Errorf("meta poll: %d is invalid: want seconds <= %d (a year)", m.Poll, MaxPoll)
	case m.Limit < 0 || math.IsNaN(m.Limit):
		return fmt.Errorf("meta limit: %v is invalid: want a rate >= 0 (0: unlimited)", m.Limit)
	case m.Limit > 0 && m.Limit < MinLimit:
		return fmt.Errorf("meta limit: %v is invalid: want 0 (unlimited) or a rate >= %.3g per second (one a year)", m.Limit, MinLimit)
	case m.Burst < 0:
		return fmt.Errorf("meta burst: %d is invalid: want a count >= 0", m.Burst)
	case m.Timeout < 0:
		return fmt.Errorf("meta timeout: %d is invalid: want seconds >= 0", m.Timeout)
	case m.Timeout > MaxTimeout:
		return fmt.Errorf("meta timeout: %d is invalid: want seconds <= %d (a year)", m.Timeout, MaxTimeout)
	}
	var errs []error
	seen := map[string]string{}
	for _, s := range m.Sema {
		name, _, err := ParseSema(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("meta sema: %w", err))
			continue
		}
		if prev, dup := seen[name]; dup {
			// it would wait on itself forever
			errs = append(errs, fmt.Errorf("meta sema: %q and %q name one semaphore, %s: name each once", prev, s, name))
			continue
		}
		seen[name] = s
	}
	return errors.Join(errs...)
}

// ParseSema splits "name:count" (count defaults to 1).
func ParseSema(s string) (name string, count int, err error) {
	name, c, found := strings.Cut(s, ":")
	if name == "" {
		return "", 0, fmt.Errorf("%q is invalid: want name or name:count", s)
	}
	if !found {
		return name, 1, nil
	}
	count, err = strconv.Atoi(c)
	if err != nil || count < 1 {
		return "", 0, fmt.Errorf("%q is invalid: count must be a whole number >= 1", s)
	}
	return name, count, nil
}
