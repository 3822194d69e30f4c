package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
)

// runReport is the JSON summary --report writes at exit.
type runReport struct {
	Host     string    `json:"host"`
	File     string    `json:"file"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Seconds  float64   `json:"seconds"`
	Result   string    `json:"result"` // ok, failed, or invalid (nothing applied)
	Error    string    `json:"error,omitempty"`
	Changed  int       `json:"changed"` // resources that changed something
	// Noop: the run applied nothing (--noop); Pending counts the resources
	// that would change something (each lists its properties).
	Noop    bool `json:"noop,omitempty"`
	Pending int  `json:"pending"`
	Failed  int  `json:"failed"`
	// Held counts the resources not in their desired state because
	// they wait on a failed one (each says which: held_by).
	Held int             `json:"held"`
	Res  []engine.Report `json:"resources"`
}

// WriteFailedReport writes the report of a run that ended before Run
// (a bad flag): nothing ran. An *InvalidError is reported as "invalid",
// anything else as "failed".
func WriteFailedReport(cfg Config, started time.Time, err error) error {
	if abs, aerr := filepath.Abs(cfg.File); aerr == nil && cfg.File != "" {
		cfg.File = abs
	}
	return writeReport(cfg, nil, started, err)
}

// writeReport writes the run's summary atomically (temporary file, then
// rename), so a reader never sees half a report.
func writeReport(cfg Config, eng *engine.Engine, started time.Time, runErr error) error {
	now := time.Now()
	rep := runReport{
		Host: cfg.Hostname, File: cfg.File, Started: started, Finished: now,
		Seconds: now.Sub(started).Seconds(), Result: "ok", Res: []engine.Report{}, Noop: cfg.Noop,
	}
	if eng != nil {
		rep.Res = eng.Reports()
	}
	var inv *InvalidError
	switch {
	case errors.As(runErr, &inv):
		rep.Result, rep.Error = "invalid", runErr.Error()
	case runErr != nil:
		rep.Result, rep.Error = "failed", runErr.Error()
	}
	for _, r := range rep.Res { // a group counts its members
		rep.Changed += r.Count(r.Changed, r.MembersChanged)
		rep.Pending += r.Count(r.Pending, r.MembersChanged)
		rep.Failed += r.Count(r.Failed, r.MembersFailed)
		rep.Held += r.Count(r.Held, 0) // each member has its own report
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(cfg.Report), ".mgmt-report-*")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), cfg.Report)
}
