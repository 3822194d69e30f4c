// Package svc is the svc resource: a systemd service kept running or stopped, enabled or disabled, over D-Bus, repaired as soon as systemd signals a change, and restarted or reloaded on a refresh.
package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("svc", func() engine.Res { return &Svc{} })
}

// States, startups and refresh actions a svc can be asked for.
const (
	StateRunning = "running"
	StateStopped = "stopped"

	StartupEnabled  = "enabled"
	StartupDisabled = "disabled"

	RefreshRestart    = "restart"
	RefreshReload     = "reload"
	RefreshTryRestart = "try-restart"
)

// Svc manages one systemd unit, named by the resource's name (".service" is
// added when the name has no unit suffix). Empty fields are not managed.
type Svc struct {
	State     string `yaml:"state"`   // running, stopped, or "": not managed
	Startup   string `yaml:"startup"` // enabled, disabled, or "": not managed
	Session   bool   `yaml:"session"` // the agent's user's systemd instead of the system's
	OnRefresh string `yaml:"refresh"` // what a refresh does: restart (default), reload or try-restart

	unit string // the unit's name, with its suffix; set by SetName

	log *slog.Logger

	mu sync.Mutex // guards b
	b  *bus       // this resource's reference to the shared connection; nil until first used

	// started: the last CheckApply started the unit, so the Refresh right
	// after it has nothing to do. Only the apply goroutine uses it.
	started bool
	// reloaded: CheckApply reloaded systemd for this unit (not found, or a
	// changed unit file) and has not seen it sound since. Only the apply
	// goroutine uses it.
	reloaded bool
}

// unitSuffixes are systemd's unit types; a name ending in none of them is
// a service.
var unitSuffixes = []string{
	".service", ".socket", ".target", ".device", ".mount", ".automount",
	".swap", ".path", ".timer", ".slice", ".scope",
}

// SetName makes the resource's name the unit: "nginx" is nginx.service.
func (r *Svc) SetName(name string) {
	r.unit = unitName(name)
}

func unitName(name string) string {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return name
		}
	}
	return name + ".service"
}

// Unit is the unit's full name, e.g. nginx.service.
func (r *Svc) Unit() string { return r.unit }

// Validate checks the parameters and reports every problem at once.
func (r *Svc) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	base := strings.TrimSuffix(r.unit, ".service")
	badAt := strings.IndexFunc(r.unit, func(c rune) bool { return !validUnitChar(c) })
	switch {
	case r.unit == "":
		bad("name: missing: the resource's name is the unit, e.g. name: nginx (nginx.service)")
	case badAt >= 0:
		bad("name: %q is not a unit name: it contains %q; want letters, digits and :-_.\\@ only, e.g. nginx or getty@tty1", r.unit, []rune(r.unit[badAt:])[0])
	case len(r.unit) > 255:
		bad("name: %q is too long for a unit name (255 bytes at most)", r.unit)
	case base == "" || strings.HasPrefix(r.unit, "."):
		bad("name: %q is not a unit name", r.unit)
	case strings.HasSuffix(base, "@"):
		bad("name: %q is a template: name an instance, e.g. %s%s", r.unit, base, "tty1.service")
	}
	switch r.State {
	case "", StateRunning, StateStopped:
	default:
		bad("state: %q is invalid: want running, stopped, or leave it out to leave the service's state alone", r.State)
	}
	switch r.Startup {
	case "", StartupEnabled, StartupDisabled:
	default:
		bad("startup: %q is invalid: want enabled, disabled, or leave it out to leave it alone", r.Startup)
	}
	switch r.OnRefresh {
	case "", RefreshRestart, RefreshReload, RefreshTryRestart:
	default:
		bad("refresh: %q is invalid: want restart (the default), reload or try-restart", r.OnRefresh)
	}
	return errors.Join(errs...)
}

func validUnitChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(":-_.\\@", c)
}

// Init keeps the logger.
func (r *Svc) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *Svc) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "svc["+strings.TrimSuffix(r.unit, ".service")+"]")
	}
	return r.log
}

// address is the bus of the systemd this resource talks to.
func (r *Svc) address() string {
	if r.Session {
		return sessionAddress()
	}
	return systemAddress()
}

// bus returns the shared connection, acquiring it on first use and again
// after it was lost.
func (r *Svc) bus(ctx context.Context) (*bus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b != nil && !r.b.isLost() {
		return r.b, nil
	}
	if r.b != nil {
		r.b.release()
		r.b = nil
	}
	b, err := acquire(ctx, r.address())
	if err != nil {
		return nil, err
	}
	r.b = b
	return b, nil
}

// Watch marks the vertex dirty on every change of the unit's state that
// systemd signals (its ActiveState, SubState, load state...), on every
// daemon reload and on every change of unit files (enable, disable). It
// never polls. When the bus connection is lost it connects again, with a
// growing delay, and marks the vertex dirty once it is back.
func (r *Svc) Watch(ctx context.Context, ev engine.Events) error {
	running := false
	delay := 50 * time.Millisecond
	for {
		err := r.watchOnce(ctx, ev, func() {
			if !running {
				running = true
				ev.Running()
			} else {
				ev.Dirty() // reconnected: anything may have happened meanwhile
			}
			delay = 50 * time.Millisecond
		})
		if ctx.Err() != nil {
			return nil
		}
		if !running {
			return err // the first connection failed: the engine retries per meta
		}
		r.logger().Warn("lost the connection to systemd; connecting again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// watchOnce watches on one connection until ctx ends or the connection is
// lost; ready is called once the watch is in place.
func (r *Svc) watchOnce(ctx context.Context, ev engine.Events, ready func()) error {
	b, err := r.bus(ctx)
	if err != nil {
		return err
	}
	paths := []dbus.ObjectPath{unitPath(r.unit)}
	// Signals name a unit by its canonical name; the name may be an alias.
	var id string
	if err := b.getProp(ctx, paths[0], sdUnit, "Id", &id); err != nil {
		return fmt.Errorf("%s: reading its canonical name: %w", r.unit, err)
	}
	if id != "" && id != r.unit {
		paths = append(paths, unitPath(id))
	}
	w, err := b.addWatch(ctx, ev.Dirty, paths...)
	if err != nil {
		return err
	}
	defer b.removeWatch(w)
	ready()
	select {
	case <-ctx.Done():
		return nil
	case <-b.lost:
		return ErrBusLost
	}
}

// Close gives back the connection.
func (r *Svc) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b != nil {
		r.b.release()
		r.b = nil
	}
	return nil
}

// UIDs names the unit: a pkg that ships it asks for an edge to it.
func (r *Svc) UIDs() []engine.UID {
	if r.unit == "" {
		return nil
	}
	return []engine.UID{{Kind: "svc", Key: r.unit}}
}

// unitDirs are where unit files are looked for, first to last.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// userUnitDirs are where a user's systemd looks for unit files, first to
// last, for the user the agent runs as.
func userUnitDirs() []string {
	var dirs []string
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		dirs = append(dirs, filepath.Join(home, ".config/systemd/user"))
	}
	return append(dirs, "/etc/systemd/user", "/run/systemd/user", "/usr/lib/systemd/user")
}

// AutoEdges asks for an edge from the file resource that manages the unit's
// file, so that the file is written before the unit is started.
func (r *Svc) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if r.unit == "" {
		return nil, nil
	}
	dirs := unitDirs
	if r.Session {
		dirs = userUnitDirs()
	}
	uids := make([]engine.UID, len(dirs))
	for i, d := range dirs {
		uids[i] = engine.UID{Kind: "file", Key: d + "/" + r.unit}
	}
	return []engine.AutoEdge{{UIDs: uids}}, nil
}
