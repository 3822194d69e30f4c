// Package cron is the cron resource: a command run on a calendar schedule by a systemd timer, as generated mgmt-cron-<name>.timer and .service units kept enabled and started over the systemd bus.
package cron

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
)

func init() {
	engine.Register("cron", func() engine.Res { return &Cron{} })
}

// States a cron can be asked to be in.
const (
	StateExists = "exists"
	StateAbsent = "absent"
)

// unitDir is where the units are written; tests inside a test host use
// the real one.
var unitDir = "/etc/systemd/system"

// Cron runs Command as User whenever Calendar elapses.
type Cron struct {
	Calendar   string  `yaml:"calendar"`    // systemd's OnCalendar, e.g. "*-*-* 03:00:00" or "hourly"
	Command    string  `yaml:"command"`     // run by /bin/sh -c
	User       string  `yaml:"user"`        // default root
	Persistent bool    `yaml:"persistent"`  // run at boot a firing missed while off
	Accuracy   float64 `yaml:"accuracysec"` // seconds; 0: systemd's default (1 min)
	State      string  `yaml:"state"`       // exists (default) or absent

	name string
	log  *slog.Logger
	fsw  *fswatch.Watcher // nil: fswatch.Default()
}

// SetName keeps the resource's name, which names the units.
func (r *Cron) SetName(name string) { r.name = name }

func (r *Cron) absent() bool { return r.State == StateAbsent }

// unit is the base name of the two units.
func (r *Cron) unit() string { return "mgmt-cron-" + r.name }

func (r *Cron) timerUnit() string   { return r.unit() + ".timer" }
func (r *Cron) serviceUnit() string { return r.unit() + ".service" }

// validName: characters systemd takes in a unit name, without '@'
// (templates) and '\'.
func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c)) {
			return false
		}
	}
	return true
}

// Validate checks the parameters; every problem is reported at once.
func (r *Cron) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !validName(r.name) {
		bad("name: %q is invalid: want letters, digits and -_.: (it names the units mgmt-cron-<name>.timer and .service)", r.name)
	}
	switch r.State {
	case "", StateExists:
		if strings.TrimSpace(r.Calendar) == "" {
			bad("calendar: missing: want systemd's OnCalendar, e.g. calendar: \"*-*-* 03:00:00\" or calendar: hourly")
		}
		if strings.TrimSpace(r.Command) == "" {
			bad("command: missing: want the command to run, e.g. command: /usr/local/bin/backup")
		}
	case StateAbsent:
	default:
		bad("state: %q is invalid: want exists (the default) or absent", r.State)
	}
	for p, v := range map[string]string{"calendar": r.Calendar, "command": r.Command, "user": r.User} {
		if strings.ContainsAny(v, "\n\r\x00") {
			bad("%s: %q contains a newline or a NUL byte: want one line", p, v)
		}
	}
	if r.User != "" && (strings.ContainsAny(r.User, " \t%$\\\"'") || strings.HasPrefix(r.User, "-")) {
		bad("user: %q is invalid: want a user name or a number", r.User)
	}
	if r.Accuracy < 0 || r.Accuracy > 1e9 || r.Accuracy != r.Accuracy {
		bad("accuracysec: %v is invalid: want seconds from 0 (systemd's default) to 1e9", r.Accuracy)
	}
	return errors.Join(errs...)
}

// Init keeps the logger.
func (r *Cron) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *Cron) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "cron["+r.name+"]")
	}
	return r.log
}

// UIDs names the two units, so that a svc or file resource of the same
// unit, or two crons of one name, are found.
func (r *Cron) UIDs() []engine.UID {
	return []engine.UID{{Kind: "cron", Key: r.name}, {Kind: "file", Key: filepath.Join(unitDir, r.timerUnit())}, {Kind: "file", Key: filepath.Join(unitDir, r.serviceUnit())}}
}

// AutoEdges puts the cron after the user resource its command runs as.
func (r *Cron) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if r.User == "" || r.absent() {
		return nil, nil
	}
	return []engine.AutoEdge{{UIDs: []engine.UID{{Kind: "user", Key: r.User}}}}, nil
}

// quote renders one argument for an Exec= line: in double quotes, with
// systemd's escapes for backslash and quote, and % and $ doubled so that
// neither specifiers nor variables are expanded.
func quote(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$").Replace(s)
	return `"` + s + `"`
}

// files renders the two units.
func (r *Cron) files() (timer, service []byte) {
	var s bytes.Buffer
	fmt.Fprintf(&s, "# Written by mgmt (cron[%s]): edits are undone.\n[Unit]\nDescription=mgmt cron %s\n\n[Service]\nType=oneshot\n", r.name, r.name)
	if r.User != "" {
		fmt.Fprintf(&s, "User=%s\n", r.User)
	}
	fmt.Fprintf(&s, "ExecStart=/bin/sh -c %s\n", quote(r.Command))
	var t bytes.Buffer
	fmt.Fprintf(&t, "# Written by mgmt (cron[%s]): edits are undone.\n[Unit]\nDescription=mgmt cron %s\n\n[Timer]\nOnCalendar=%s\nPersistent=%v\n", r.name, r.name, strings.ReplaceAll(r.Calendar, "%", "%%"), r.Persistent)
	if r.Accuracy > 0 {
		fmt.Fprintf(&t, "AccuracySec=%sms\n", strconv.FormatInt(int64(r.Accuracy*1000), 10))
	}
	fmt.Fprintf(&t, "Unit=%s\n\n[Install]\nWantedBy=timers.target\n", r.serviceUnit())
	return t.Bytes(), s.Bytes()
}

// Watch follows the two unit files through the process's one inotify
// instance and the timer's properties (active, enabled) through the
// systemd bus's PropertiesChanged signals.
func (r *Cron) Watch(ctx context.Context, ev engine.Events) error {
	w := r.fsw
	if w == nil {
		var err error
		if w, err = fswatch.Default(); err != nil {
			return err
		}
	}
	for _, u := range []string{r.timerUnit(), r.serviceUnit()} {
		cancel, err := w.Watch(filepath.Join(unitDir, u), ev.Dirty)
		if err != nil {
			return err
		}
		defer cancel()
	}
	b, err := acquire()
	if err != nil {
		return err
	}
	defer release(b)
	stop, err := b.watchUnit(ctx, unitPath(r.timerUnit()), ev.Dirty)
	if err != nil {
		return err
	}
	defer stop()
	ev.Running()
	select {
	case <-ctx.Done():
		return nil
	case <-b.lost:
		return fmt.Errorf("cron: %w", errBusLost)
	}
}

// Close has nothing to release: Watch drops its watches when it returns.
func (r *Cron) Close() error { return nil }

// CheckApply writes the unit files that differ (then reloads systemd),
// enables the timer and starts it; absent stops and disables it and
// removes the files. Each difference is reported.
func (r *Cron) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	b, err := acquire()
	if err != nil {
		return false, err
	}
	defer release(b)
	var changes []engine.Change
	wantTimer, wantService := r.files()
	var want map[string][]byte
	if !r.absent() {
		want = map[string][]byte{r.timerUnit(): wantTimer, r.serviceUnit(): wantService}
	}
	var writes []string
	for _, u := range []string{r.timerUnit(), r.serviceUnit()} {
		p := filepath.Join(unitDir, u)
		cur, err := os.ReadFile(p)
		missing := errors.Is(err, os.ErrNotExist)
		if err != nil && !missing {
			return false, fmt.Errorf("cron: %w", err)
		}
		w, wanted := want[u]
		switch {
		case wanted && missing:
			changes = append(changes, engine.Change{Property: u, From: "(absent)", To: "(written)", Why: "the unit file is missing"})
		case wanted && !bytes.Equal(cur, w):
			changes = append(changes, engine.Change{Property: u, From: string(cur), To: string(w), Why: "the unit file differs"})
		case !wanted && !missing:
			changes = append(changes, engine.Change{Property: u, From: "(present)", To: "(absent)", Why: "state absent"})
		default:
			continue
		}
		writes = append(writes, u)
	}
	tpath := unitPath(r.timerUnit())
	var active, enabled string
	if err := b.prop(ctx, tpath, "ActiveState", &active); err != nil {
		return false, err
	}
	if err := b.prop(ctx, tpath, "UnitFileState", &enabled); err != nil {
		return false, err
	}
	isActive := active == "active" || active == "activating" || active == "reloading"
	wantUp := !r.absent()
	if wantUp && enabled != "enabled" || !wantUp && enabled == "enabled" {
		changes = append(changes, engine.Change{Property: "enabled", From: orNone(enabled), To: map[bool]string{true: "enabled", false: "disabled"}[wantUp], Why: r.timerUnit()})
	}
	if wantUp != isActive || wantUp && len(writes) > 0 {
		to := map[bool]string{true: "active", false: "inactive"}[wantUp]
		why := r.timerUnit()
		if wantUp && isActive {
			to, why = "restarted", "its unit files changed"
		}
		changes = append(changes, engine.Change{Property: "timer", From: active, To: to, Why: why})
	}
	if len(changes) == 0 {
		return false, nil
	}
	engine.Changed(ctx, changes...)
	for _, c := range changes {
		msg := "changed"
		if !apply {
			msg = "would change (noop)"
		}
		r.logger().Info(msg, "property", c.Property, "to", c.To, "why", c.Why)
	}
	if !apply {
		return true, nil
	}
	if r.absent() {
		if isActive {
			if err := b.job(ctx, "StopUnit", r.timerUnit()); err != nil {
				return false, err
			}
		}
		if enabled == "enabled" {
			if err := b.call(ctx, "DisableUnitFiles", nil, []string{r.timerUnit()}, false); err != nil {
				return false, err
			}
		}
	}
	for _, u := range writes {
		p := filepath.Join(unitDir, u)
		if w, ok := want[u]; ok {
			if err := writeFile(p, w); err != nil {
				return false, err
			}
		} else if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("cron: %w", err)
		}
	}
	if len(writes) > 0 {
		if err := b.call(ctx, "Reload", nil); err != nil {
			return false, err
		}
	}
	if !wantUp {
		return true, nil
	}
	if enabled != "enabled" {
		var carries bool
		var ch [][]any
		if err := b.call(ctx, "EnableUnitFiles", []any{&carries, &ch}, []string{r.timerUnit()}, false, true); err != nil {
			return false, err
		}
		// as systemctl enable does: the manager reads the new links
		if err := b.call(ctx, "Reload", nil); err != nil {
			return false, err
		}
	}
	method := "StartUnit"
	if isActive && len(writes) > 0 {
		method = "RestartUnit"
	}
	if !isActive || len(writes) > 0 {
		if err := b.job(ctx, method, r.timerUnit()); err != nil {
			return false, err
		}
	}
	return true, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// writeFile replaces p with content at once (a temporary file renamed over
// it), mode 0644.
func writeFile(p string, content []byte) error {
	tmp := p + ".mgmt-new"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return fmt.Errorf("cron: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cron: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cron: %w", err)
	}
	return nil
}

// jobWait bounds the wait for a timer's start or stop job.
const jobWait = 30 * time.Second
