package svc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/mgmtconfig/mgmt/engine"
)

// Errors to match with errors.Is.
var (
	// ErrUnknownUnit: systemd has no such unit, even after a daemon reload.
	ErrUnknownUnit = errors.New("no such unit")
	// ErrMasked: the unit is masked and cannot be started or enabled.
	ErrMasked = errors.New("unit is masked")
	// ErrBadUnit: systemd could not load the unit file.
	ErrBadUnit = errors.New("unit file could not be loaded")
	// ErrCannotEnable: the unit file cannot be enabled or disabled as asked
	// (no [Install] section, an alias, a generated unit...).
	ErrCannotEnable = errors.New("unit cannot be enabled or disabled")
	// ErrCannotReload: refresh is reload, but the unit has no ExecReload.
	ErrCannotReload = errors.New("unit cannot reload")
	// ErrJobFailed: a start, stop, restart or reload job did not succeed.
	ErrJobFailed = errors.New("job failed")
	// ErrJobTimeout: no result came for a job within the time limit.
	ErrJobTimeout = errors.New("job did not finish in time")
)

// UnitError is a problem with the unit itself: unknown, masked, not
// loadable, not enableable.
type UnitError struct {
	Unit   string
	Detail string // what systemd said, if anything
	Err    error  // one of the sentinel errors
}

func (e *UnitError) Error() string {
	if e.Detail == "" {
		return e.Unit + ": " + e.Err.Error()
	}
	return e.Unit + ": " + e.Err.Error() + ": " + e.Detail
}

func (e *UnitError) Unwrap() error { return e.Err }

// JobError is a start, stop, restart or reload that did not succeed, with
// the unit's state afterwards and its last journal lines.
type JobError struct {
	Unit        string
	Op          string // start, stop, restart, try-restart, reload
	Result      string // the job's result (failed, timeout, canceled, dependency...); "" if none came
	ActiveState string // the unit's, after the job
	SubState    string
	UnitResult  string   // why the unit last stopped: exit-code, signal, timeout, start-limit-hit...
	Journal     []string // the unit's last journal lines, when they could be read
	Err         error    // ErrJobFailed, ErrJobTimeout, or the call's error
}

func (e *JobError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %v", e.Op, e.Unit, e.Err)
	if e.Result != "" {
		fmt.Fprintf(&b, " (job result %q)", e.Result)
	}
	if e.ActiveState != "" {
		fmt.Fprintf(&b, "; the unit is %s (%s)", e.ActiveState, e.SubState)
		if e.UnitResult != "" && e.UnitResult != "success" {
			fmt.Fprintf(&b, ", result %s", e.UnitResult)
		}
	}
	if len(e.Journal) > 0 {
		b.WriteString("; last journal lines:\n  ")
		b.WriteString(strings.Join(e.Journal, "\n  "))
	}
	return b.String()
}

func (e *JobError) Unwrap() error { return e.Err }

// status is what CheckApply needs to know of the unit.
type status struct {
	id, load, active, sub string
	needReload, canReload bool
	job                   bool // a job is queued or running for the unit
	loadErr               string
}

func (s status) isActive() bool {
	return s.active == "active" || s.active == "reloading" || s.active == "refreshing"
}

func (r *Svc) status(ctx context.Context, b *bus) (status, error) {
	props, err := b.getAll(ctx, unitPath(r.unit), sdUnit)
	if err != nil {
		return status{}, fmt.Errorf("%s: reading its state: %w", r.unit, err)
	}
	str := func(k string) string { s, _ := props[k].Value().(string); return s }
	bl := func(k string) bool { v, _ := props[k].Value().(bool); return v }
	st := status{
		id: str("Id"), load: str("LoadState"), active: str("ActiveState"), sub: str("SubState"),
		needReload: bl("NeedDaemonReload"), canReload: bl("CanReload"),
	}
	if j, ok := props["Job"].Value().([]any); ok && len(j) == 2 {
		id, _ := j[0].(uint32)
		st.job = id != 0
	}
	if le, ok := props["LoadError"].Value().([]any); ok && len(le) == 2 {
		st.loadErr, _ = le[1].(string)
	}
	return st, nil
}

// needsUnit: what is asked cannot hold without the unit.
func (r *Svc) needsUnit() bool {
	return r.State == StateRunning || r.Startup == StartupEnabled
}

// CheckApply compares the unit with what is asked and, with apply, acts:
// a daemon reload first if systemd has a changed unit file it has not read
// (or does not know the unit, once), then enable or disable, then start or
// stop, waiting for each job's result.
func (r *Svc) CheckApply(ctx context.Context, apply bool) (changed bool, err error) {
	r.started = false
	b, err := r.bus(ctx)
	if err != nil {
		return false, err
	}
	st, err := r.status(ctx, b)
	if err != nil {
		return false, err
	}
	notFound := st.load == "not-found"
	if st.needReload || notFound && r.needsUnit() {
		switch {
		case !apply:
			changed = st.needReload
			if changed {
				engine.Changed(ctx, engine.Change{Property: "unit file", Why: "changed on disk: systemd would reload its units"})
			}
		case r.reloaded:
			// Reloaded once already for this, in vain: no more, or every
			// svc would reload in a loop on each other's Reloading signal.
		default:
			why := "its unit file changed"
			if notFound {
				why = "it is not found"
			}
			engine.Changed(ctx, engine.Change{Property: "unit file", Why: why + ": systemd reloads its units"})
			if err := r.daemonReload(ctx, b, why); err != nil {
				return false, err
			}
			r.reloaded, changed = true, true
			if st, err = r.status(ctx, b); err != nil {
				return changed, err
			}
			notFound = st.load == "not-found"
		}
	}
	if !st.needReload && !notFound {
		r.reloaded = false
	}

	switch {
	case notFound && r.needsUnit():
		return changed, &UnitError{Unit: r.unit, Err: ErrUnknownUnit,
			Detail: "systemd finds no unit file for it (is it installed? a file or pkg resource can provide it)"}
	case notFound:
		return changed, nil // a unit that does not exist is stopped and disabled
	case st.load == "masked" && r.needsUnit():
		return changed, &UnitError{Unit: r.unit, Err: ErrMasked, Detail: "unmask it (systemctl unmask) to start or enable it"}
	case st.load == "error" || st.load == "bad-setting":
		return changed, &UnitError{Unit: r.unit, Err: ErrBadUnit, Detail: st.loadErr}
	}

	if r.Startup != "" {
		c, err := r.checkStartup(ctx, b, apply)
		changed = changed || c
		if err != nil {
			return changed, err
		}
	}

	if apply && st.job && !r.stateMet(st) {
		if st, err = r.settle(ctx, b, st); err != nil {
			return changed, err
		}
	}
	switch r.State {
	case StateRunning:
		if st.isActive() {
			break
		}
		changed = true
		engine.Changed(ctx, engine.Change{Property: "state", From: st.active + "/" + st.sub, To: StateRunning, Why: "start"})
		if !apply {
			break
		}
		t0 := time.Now()
		if err := r.runJob(ctx, b, "start", b.sd.StartUnitContext); err != nil {
			return changed, err
		}
		after, err := r.status(ctx, b)
		if err != nil {
			return changed, err
		}
		if !after.isActive() && after.active != "activating" {
			if !r.stoppedCleanly(ctx, b) {
				return changed, r.jobError(ctx, b, "start", "", fmt.Errorf("%w: it stopped right after starting", ErrJobFailed))
			}
			// It ran, and a stop job or a clean exit ended it at once:
			// someone stopped it right after the start (make bench's
			// drift loop did, under load). That stop is a change of its
			// own, which the watch reports, and the next check starts
			// the unit again; failing here gave the vertex up for good.
			r.logger().Warn("stopped again right after it started", "state", after.active+"/"+after.sub)
		}
		r.started = true
		r.logger().Info("started", "was", st.active+"/"+st.sub, "took", time.Since(t0).Round(time.Microsecond))
	case StateStopped:
		switch st.active {
		case "active", "reloading", "refreshing", "activating", "deactivating":
		default:
			return changed, nil // inactive or failed: not running
		}
		changed = true
		engine.Changed(ctx, engine.Change{Property: "state", From: st.active + "/" + st.sub, To: StateStopped, Why: "stop"})
		if !apply {
			break
		}
		t0 := time.Now()
		if err := r.runJob(ctx, b, "stop", b.sd.StopUnitContext); err != nil {
			return changed, err
		}
		r.logger().Info("stopped", "was", st.active+"/"+st.sub, "took", time.Since(t0).Round(time.Microsecond))
	}
	return changed, nil
}

// stateMet: the unit is in the state asked for (or none is asked for).
func (r *Svc) stateMet(st status) bool {
	switch r.State {
	case StateRunning:
		return st.isActive()
	case StateStopped:
		return st.active == "inactive" || st.active == "failed"
	}
	return true
}

// settle waits for the job already queued or running for the unit (a
// `systemctl stop` by hand, say) to finish, so that ours does not cancel
// it, and returns the unit's status then. The wait is bounded like a job's.
func (r *Svc) settle(ctx context.Context, b *bus, st status) (status, error) {
	t := time.NewTimer(jobTimeout)
	defer t.Stop()
	for st.job {
		done, stop := b.jobRemoved(st.id)
		st2, err := r.status(ctx, b) // the job may have ended before the wait began
		if err != nil || !st2.job {
			stop()
			return st2, err
		}
		select {
		case <-done:
		case <-t.C:
			stop()
			return st, r.jobError(ctx, b, "wait for the pending job of", "", fmt.Errorf("%w: another job on the unit still runs after %v", ErrJobTimeout, jobTimeout))
		case <-b.lost:
			stop()
			return st, ErrBusLost
		case <-ctx.Done():
			stop()
			return st, ctx.Err()
		}
		if st, err = r.status(ctx, b); err != nil {
			return st, err
		}
	}
	return st, nil
}

// checkStartup enables or disables the unit file as asked, from its state
// on disk (Manager.GetUnitFileState, which systemd does not cache).
func (r *Svc) checkStartup(ctx context.Context, b *bus, apply bool) (bool, error) {
	state, err := r.unitFileState(ctx, b)
	if err != nil {
		return false, err
	}
	enabled := state == "enabled" || state == "enabled-runtime"
	switch r.Startup {
	case StartupEnabled:
		if state == "enabled" {
			return false, nil
		}
		switch state {
		case "static", "generated", "transient", "alias", "bad", "masked", "masked-runtime":
			return false, &UnitError{Unit: r.unit, Err: ErrCannotEnable, Detail: enableHint(state)}
		}
		engine.Changed(ctx, engine.Change{Property: "startup", From: state, To: StartupEnabled, Why: "enable"})
		if !apply {
			return true, nil
		}
		carries, changes, err := r.enable(ctx, b)
		if err != nil {
			return false, err
		}
		if !carries {
			return false, &UnitError{Unit: r.unit, Err: ErrCannotEnable, Detail: enableHint("static")}
		}
		if err := r.afterFileChange(ctx, b, len(changes) > 0, "enabled"); err != nil {
			return true, err
		}
	case StartupDisabled:
		if !enabled {
			return false, nil
		}
		engine.Changed(ctx, engine.Change{Property: "startup", From: state, To: StartupDisabled, Why: "disable"})
		if !apply {
			return true, nil
		}
		var changes []sddbus.DisableUnitFileChange
		err := b.call(ctx, func(ctx context.Context) error {
			var err error
			changes, err = b.sd.DisableUnitFilesContext(ctx, []string{r.unit}, state == "enabled-runtime")
			return err
		})
		if err != nil {
			return false, fmt.Errorf("%s: disable: %w", r.unit, err)
		}
		if err := r.afterFileChange(ctx, b, len(changes) > 0, "disabled"); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (r *Svc) enable(ctx context.Context, b *bus) (carries bool, changes []sddbus.EnableUnitFileChange, err error) {
	err = b.call(ctx, func(ctx context.Context) error {
		var err error
		carries, changes, err = b.sd.EnableUnitFilesContext(ctx, []string{r.unit}, false, false)
		return err
	})
	if err != nil {
		return false, nil, fmt.Errorf("%s: enable: %w", r.unit, err)
	}
	return carries, changes, nil
}

// afterFileChange reloads systemd when links changed, and checks that the
// unit file state is now what was asked.
func (r *Svc) afterFileChange(ctx context.Context, b *bus, linksChanged bool, want string) error {
	if linksChanged {
		if err := r.daemonReload(ctx, b, "its links changed"); err != nil {
			return err
		}
	}
	state, err := r.unitFileState(ctx, b)
	if err != nil {
		return err
	}
	ok := state == "enabled"
	if want == StartupDisabled {
		ok = state != "enabled" && state != "enabled-runtime"
	}
	if !ok {
		return &UnitError{Unit: r.unit, Err: ErrCannotEnable,
			Detail: fmt.Sprintf("%s, but its unit file state is still %q: %s", want, state, enableHint(state))}
	}
	r.logger().Info(want, "unit_file_state", state)
	return nil
}

func enableHint(state string) string {
	switch state {
	case "static":
		return "it has no [Install] section: it is started by the units that need it, not enabled"
	case "generated":
		return "a generator made it: it cannot be enabled by hand"
	case "transient":
		return "it is transient: it lives until it stops and cannot be enabled"
	case "alias":
		return "the name is an alias: name the unit it points to"
	case "masked", "masked-runtime":
		return "it is masked: unmask it first (systemctl unmask)"
	case "indirect":
		return "it is enabled only through another unit (Also= or a template)"
	}
	return "unit file state " + state
}

func (r *Svc) unitFileState(ctx context.Context, b *bus) (string, error) {
	var state string
	if err := b.managerCall(ctx, callTimeout, "GetUnitFileState", []any{&state}, r.unit); err != nil {
		return "", fmt.Errorf("%s: reading its unit file state: %w", r.unit, err)
	}
	return state, nil
}

func (r *Svc) daemonReload(ctx context.Context, b *bus, why string) error {
	t0 := time.Now()
	if err := b.managerCall(ctx, reloadTimeout, "Reload", nil); err != nil {
		return fmt.Errorf("daemon reload (%s: %s): %w", r.unit, why, err)
	}
	r.logger().Info("daemon reloaded", "why", why, "took", time.Since(t0).Round(time.Microsecond))
	return nil
}

// jobCall queues a job (go-systemd's StartUnitContext and friends); the
// job's result is sent on ch.
type jobCall func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// runJob queues a job for the unit and waits for its result: nil when it is
// "done" (or "skipped": nothing to do), else a *JobError.
func (r *Svc) runJob(ctx context.Context, b *bus, op string, call jobCall) error {
	ch := make(chan string, 1) // go-systemd sends the result once, holding a lock: never block it
	err := b.call(ctx, func(ctx context.Context) error {
		_, err := call(ctx, r.unit, "replace", ch)
		return err
	})
	if err != nil {
		return &JobError{Unit: r.unit, Op: op, Err: err}
	}
	t := time.NewTimer(jobTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		if res == "done" || res == "skipped" {
			return nil
		}
		err := ErrJobFailed
		if res == "timeout" {
			err = ErrJobTimeout
		}
		return r.jobError(ctx, b, op, res, err)
	case <-t.C:
		return r.jobError(ctx, b, op, "", fmt.Errorf("%w: no result after %v", ErrJobTimeout, jobTimeout))
	case <-b.lost:
		return &JobError{Unit: r.unit, Op: op, Err: ErrBusLost}
	case <-ctx.Done():
		return &JobError{Unit: r.unit, Op: op, Err: ctx.Err()}
	}
}

// stoppedCleanly reports whether the unit's last run ended without a
// failure of its own (its Result is "success": a stop job, or an exit the
// unit counts as clean), as opposed to a crash (exit-code, signal...). A
// oneshot service always ends so, and never runs: that is not counted.
func (r *Svc) stoppedCleanly(ctx context.Context, b *bus) bool {
	iface := typeInterface(r.unit)
	if iface == "" {
		return false
	}
	var result, typ string
	if err := b.getProp(ctx, unitPath(r.unit), iface, "Result", &result); err != nil || result != "success" {
		return false
	}
	if strings.HasSuffix(r.unit, ".service") {
		if err := b.getProp(ctx, unitPath(r.unit), iface, "Type", &typ); err != nil || typ == "oneshot" {
			return false
		}
	}
	return true
}

// jobError describes a failed job with the unit's state now and its last
// journal lines, as far as they can be had quickly.
func (r *Svc) jobError(ctx context.Context, b *bus, op, result string, err error) *JobError {
	e := &JobError{Unit: r.unit, Op: op, Result: result, Err: err}
	if st, err := r.status(ctx, b); err == nil {
		e.ActiveState, e.SubState = st.active, st.sub
	}
	if iface := typeInterface(r.unit); iface != "" {
		b.getProp(ctx, unitPath(r.unit), iface, "Result", &e.UnitResult) // best effort
	}
	e.Journal = r.journal(ctx, b.addr)
	return e
}

// typeInterface is the D-Bus interface of the unit's type, which carries
// its Result: org.freedesktop.systemd1.Service for a .service.
func typeInterface(unit string) string {
	i := strings.LastIndexByte(unit, '.')
	if i < 0 || i == len(unit)-1 {
		return ""
	}
	t := unit[i+1:]
	switch t {
	case "service", "socket", "mount", "swap", "timer", "path", "automount":
		return "org.freedesktop.systemd1." + strings.ToUpper(t[:1]) + t[1:]
	}
	return ""
}

// journalLines and journalTimeout bound what a failure message carries
// from the journal, and how long reading it may take.
const (
	journalLines   = 10
	journalTimeout = 2 * time.Second
)

// procRoot finds a /proc/PID/root prefix in a bus address: the bus of a
// container or test host seen from outside, whose journal is below it.
var procRoot = regexp.MustCompile(`^unix:path=(/proc/[0-9]+/root)/`)

// journal returns the unit's last journal lines, read with journalctl on
// this machine (or below the root of the host whose bus this is), or nil
// when they cannot be read quickly. It never fails.
func (r *Svc) journal(ctx context.Context, addr string) []string {
	bin, err := exec.LookPath("journalctl")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, journalTimeout)
	defer cancel()
	args := []string{"--no-pager", "--quiet", "-o", "short", "-n", fmt.Sprint(journalLines)}
	if m := procRoot.FindStringSubmatch(addr); m != nil {
		args = append(args, "--root="+m[1])
	} else if !strings.HasPrefix(addr, "unix:path=/run/") && !strings.HasPrefix(addr, "unix:path=/var/run/") {
		return nil // some other machine's bus: this machine's journal would mislead
	}
	if r.Session {
		args = append(args, "--user-unit="+r.unit)
	} else {
		args = append(args, "--unit="+r.unit)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	if cmd.Run() != nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// Refresh restarts the unit (or reloads it, or try-restarts it, per the
// refresh parameter), once, after the CheckApply that preceded it. It does
// nothing when that CheckApply has just started the unit (it already runs
// with what changed), when state is stopped, or when the unit is not
// running: a refresh never starts a stopped service.
func (r *Svc) Refresh(ctx context.Context) (bool, error) {
	if r.started {
		r.started = false
		r.logger().Info("refresh: just started, so already up to date: not restarting")
		return false, nil
	}
	if r.State == StateStopped {
		return false, nil
	}
	b, err := r.bus(ctx)
	if err != nil {
		return false, err
	}
	st, err := r.status(ctx, b)
	if err != nil {
		return false, err
	}
	if !st.isActive() && st.active != "activating" {
		r.logger().Info("refresh: not running, nothing to restart", "state", st.active)
		return false, nil
	}
	op := r.OnRefresh
	if op == "" {
		op = RefreshRestart
	}
	var call jobCall
	switch op {
	case RefreshRestart:
		call = b.sd.RestartUnitContext
	case RefreshTryRestart:
		call = b.sd.TryRestartUnitContext
	case RefreshReload:
		if !st.canReload {
			return false, &UnitError{Unit: r.unit, Err: ErrCannotReload, Detail: "it has no ExecReload=: use refresh: restart"}
		}
		call = b.sd.ReloadUnitContext
	}
	t0 := time.Now()
	if err := r.runJob(ctx, b, op, call); err != nil {
		return false, err
	}
	done := map[string]string{RefreshRestart: "restarted", RefreshTryRestart: "restarted", RefreshReload: "reloaded"}[op]
	engine.Changed(ctx, engine.Change{Property: "state", From: st.active + "/" + st.sub, To: done, Why: op + " on refresh"})
	r.logger().Info(done, "why", "refresh", "action", op, "took", time.Since(t0).Round(time.Microsecond))
	return true, nil
}
