package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
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
}

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
	case m.Poll < 0:
		return fmt.Errorf("meta poll: %d is invalid: want seconds >= 0", m.Poll)
	case m.Limit < 0 || math.IsNaN(m.Limit):
		return fmt.Errorf("meta limit: %v is invalid: want a rate >= 0 (0: unlimited)", m.Limit)
	case m.Burst < 0:
		return fmt.Errorf("meta burst: %d is invalid: want a count >= 0", m.Burst)
	case m.Timeout < 0:
		return fmt.Errorf("meta timeout: %d is invalid: want seconds >= 0", m.Timeout)
	}
	for _, s := range m.Sema {
		if _, _, err := ParseSema(s); err != nil {
			return fmt.Errorf("meta sema: %w", err)
		}
	}
	return nil
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
