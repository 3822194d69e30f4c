package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Time limits of the D-Bus traffic.
const (
	// callTimeout bounds every single D-Bus call, but a daemon reload.
	callTimeout = 10 * time.Second
	// reloadTimeout bounds a daemon reload, which re-reads every unit file.
	reloadTimeout = 60 * time.Second
	// dialTimeout bounds connecting, authenticating and subscribing.
	dialTimeout = 10 * time.Second
)

// jobTimeout bounds the wait for the result of a start, stop, restart or
// reload job. systemd's own start and stop timeouts (90 s by default) end
// most jobs well before. A variable so that tests can shorten it.
var jobTimeout = 5 * time.Minute

// D-Bus names of systemd's manager.
const (
	sdDest       = "org.freedesktop.systemd1"
	sdPath       = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManager    = "org.freedesktop.systemd1.Manager"
	sdUnit       = "org.freedesktop.systemd1.Unit"
	sdUnitPrefix = "/org/freedesktop/systemd1/unit/"
	propsIface   = "org.freedesktop.DBus.Properties"
	propsChanged = propsIface + ".PropertiesChanged"
	sigReloading = sdManager + ".Reloading"
	sigFilesChgd = sdManager + ".UnitFilesChanged"
	sigJobRemovd = sdManager + ".JobRemoved"
)

// ErrBusLost is returned (wrapped) by calls made on a connection that has
// been closed under them: the bus daemon went away.
var ErrBusLost = errors.New("D-Bus connection lost")

// systemAddress is the system bus the svc resources talk to:
// DBUS_SYSTEM_BUS_ADDRESS when set (tests point it at a test host's bus),
// else the standard socket.
func systemAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return "unix:path=/run/dbus/system_bus_socket"
}

// sessionAddress is the bus of the user's own systemd instance (the user
// the agent runs as): DBUS_SESSION_BUS_ADDRESS when set, else the socket
// that dbus-user-session puts in the user's runtime directory.
func sessionAddress() string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = "/run/user/" + strconv.Itoa(os.Getuid())
	}
	return "unix:path=" + dir + "/bus"
}

// bus is one connection to one bus, shared by every svc resource of the
// process that talks to the systemd on it. The one godbus connection serves
// go-systemd's method calls and job results and the signals this package
// subscribes to, which a dispatcher hands to the interested resources.
type bus struct {
	addr string
	conn *dbus.Conn
	sd   *sddbus.Conn
	lost chan struct{} // closed when the connection is gone

	refs int // guarded by busesMu

	mu      sync.Mutex // guards watches, all, matches, jobWaits
	watches map[dbus.ObjectPath]map[*watch]struct{}
	all     map[*watch]struct{} // every watch, whatever its unit
	matches map[dbus.ObjectPath]int
	// jobWaits are closed at the next JobRemoved of their unit, by the
	// unit's canonical name.
	jobWaits map[string][]chan struct{}
}

// watch is one resource's interest in its unit's signals.
type watch struct {
	dirty func()
	paths []dbus.ObjectPath
	seen  map[string]any // last values of watchedProps signalled; guarded by the bus's mu
}

// watchedProps are the properties of a unit whose change marks its
// resource dirty. Other changes (time stamps, a Result rewritten with the
// same state) do not: a start that systemd refuses (the start rate limit)
// leaves a failed unit failed, and must not wake the resource to try again
// at once, in a loop; its retries are the engine's business.
var watchedProps = []string{"ActiveState", "SubState", "LoadState", "NeedDaemonReload", "UnitFileState"}

// changedLocked records the signalled values and reports whether one of
// watchedProps changed (or was invalidated).
func (w *watch) changedLocked(props map[string]dbus.Variant, invalidated []string) bool {
	changed := false
	for _, k := range watchedProps {
		v, ok := props[k]
		if !ok {
			continue
		}
		if old, had := w.seen[k]; !had || old != v.Value() {
			w.seen[k] = v.Value()
			changed = true
		}
	}
	for _, k := range invalidated {
		if slices.Contains(watchedProps, k) {
			delete(w.seen, k)
			changed = true
		}
	}
	return changed
}

var (
	busesMu sync.Mutex          // guards buses and every bus's refs
	buses   = map[string]*bus{} // by address
)

// acquire returns the process's connection to the bus at addr, dialling it
// if there is none or it was lost. Each acquire is paired with a release.
func acquire(ctx context.Context, addr string) (*bus, error) {
	busesMu.Lock()
	defer busesMu.Unlock()
	if b := buses[addr]; b != nil && !b.isLost() {
		b.refs++
		return b, nil
	}
	b, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	b.refs = 1
	buses[addr] = b
	return b, nil
}

// release gives back a reference; the last one closes the connection.
func (b *bus) release() {
	busesMu.Lock()
	defer busesMu.Unlock()
	b.refs--
	if b.refs > 0 {
		return
	}
	if buses[b.addr] == b {
		delete(buses, b.addr)
	}
	b.conn.Close() // ends the dispatcher, go-systemd's and godbus's goroutines
}

func (b *bus) isLost() bool {
	select {
	case <-b.lost:
		return true
	default:
		return false
	}
}

// dial connects, authenticates, and asks systemd to send unit signals
// (Subscribe); every step is bounded by dialTimeout and ctx.
func dial(ctx context.Context, addr string) (b *bus, err error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := dbus.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the bus %s: %w", addr, err)
	}
	// Auth, Hello and go-systemd's set-up take no context: closing the
	// connection when ctx ends unblocks them.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		if !stop() && err == nil {
			err = ctx.Err()
		}
		if err != nil {
			conn.Close()
			if ctx.Err() != nil {
				err = fmt.Errorf("connecting to the bus %s: %w", addr, errors.Join(err, ctx.Err()))
			}
		}
	}()
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		return nil, fmt.Errorf("authenticating on the bus %s: %w", addr, err)
	}
	if err := conn.Hello(); err != nil {
		return nil, fmt.Errorf("hello on the bus %s: %w", addr, err)
	}
	b = &bus{
		addr:     addr,
		conn:     conn,
		lost:     make(chan struct{}),
		watches:  map[dbus.ObjectPath]map[*watch]struct{}{},
		all:      map[*watch]struct{}{},
		matches:  map[dbus.ObjectPath]int{},
		jobWaits: map[string][]chan struct{}{},
	}
	// go-systemd asks for two connections, one for calls and one for
	// signals; godbus serves both on one, so it gets the same one twice.
	b.sd, err = sddbus.NewConnection(func() (*dbus.Conn, error) { return conn, nil })
	if err != nil {
		return nil, fmt.Errorf("systemd on the bus %s: %w", addr, err)
	}
	sigs := make(chan *dbus.Signal, 256)
	conn.Signal(sigs)
	for _, member := range []string{"Reloading", "UnitFilesChanged"} {
		if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(sdDest), dbus.WithMatchObjectPath(sdPath),
			dbus.WithMatchInterface(sdManager), dbus.WithMatchMember(member)); err != nil {
			return nil, fmt.Errorf("subscribing to systemd's %s signal: %w", member, err)
		}
	}
	// systemd emits unit signals only while some client is subscribed;
	// the subscription ends with the connection.
	if err := conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".Subscribe", 0).Err; err != nil {
		return nil, fmt.Errorf("subscribing to systemd on the bus %s: %w", addr, err)
	}
	go b.dispatch(sigs)
	return b, nil
}

// dispatch hands each signal to the watches it concerns until the
// connection closes. Dirty never blocks, so neither does dispatch.
func (b *bus) dispatch(sigs <-chan *dbus.Signal) {
	defer close(b.lost)
	for s := range sigs {
		switch s.Name {
		case propsChanged:
			if len(s.Body) != 3 || s.Body[0] != sdUnit {
				continue
			}
			props, _ := s.Body[1].(map[string]dbus.Variant)
			invalidated, _ := s.Body[2].([]string)
			b.mu.Lock()
			for w := range b.watches[s.Path] {
				if w.changedLocked(props, invalidated) {
					w.dirty()
				}
			}
			b.mu.Unlock()
		case sigReloading:
			if len(s.Body) == 1 && s.Body[0] == true {
				continue // reloading began; its end is what counts
			}
			b.dirtyAll()
		case sigFilesChgd:
			b.dirtyAll()
		case sigJobRemovd: // go-systemd has the match rule for it
			if len(s.Body) != 4 {
				continue
			}
			unit, _ := s.Body[2].(string)
			b.mu.Lock()
			for _, ch := range b.jobWaits[unit] {
				close(ch)
			}
			delete(b.jobWaits, unit)
			b.mu.Unlock()
		}
	}
}

func (b *bus) dirtyAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.all {
		w.dirty()
	}
}

// unitPath is the object path of a unit named name.
func unitPath(name string) dbus.ObjectPath {
	return dbus.ObjectPath(sdUnitPrefix + sddbus.PathBusEscape(name))
}

// addWatch calls dirty on every PropertiesChanged signal of the Unit
// interface of the objects at paths (a unit's name and its canonical name,
// when the name is an alias), and on every daemon reload and unit file
// change. The match rules are added on the bus once per path.
func (b *bus) addWatch(ctx context.Context, dirty func(), paths ...dbus.ObjectPath) (*watch, error) {
	w := &watch{dirty: dirty, seen: map[string]any{}}
	for _, p := range paths {
		b.mu.Lock()
		first := b.matches[p] == 0
		b.matches[p]++
		b.mu.Unlock()
		if first {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := b.conn.AddMatchSignalContext(cctx, propsMatch(p)...)
			cancel()
			if err != nil {
				b.mu.Lock()
				b.matches[p]--
				b.mu.Unlock()
				b.removeWatch(w)
				return nil, fmt.Errorf("subscribing to the signals of %s: %w", p, err)
			}
		}
		w.paths = append(w.paths, p)
		b.mu.Lock()
		if b.watches[p] == nil {
			b.watches[p] = map[*watch]struct{}{}
		}
		b.watches[p][w] = struct{}{}
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.all[w] = struct{}{}
	b.mu.Unlock()
	return w, nil
}

// removeWatch undoes addWatch; the last watch of a path removes its match
// rule from the bus.
func (b *bus) removeWatch(w *watch) {
	var drop []dbus.ObjectPath
	b.mu.Lock()
	delete(b.all, w)
	for _, p := range w.paths {
		delete(b.watches[p], w)
		if len(b.watches[p]) == 0 {
			delete(b.watches, p)
		}
		if b.matches[p]--; b.matches[p] == 0 {
			delete(b.matches, p)
			drop = append(drop, p)
		}
	}
	b.mu.Unlock()
	if b.isLost() {
		return
	}
	for _, p := range drop {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		b.conn.RemoveMatchSignalContext(ctx, propsMatch(p)...) // best effort: the rule only costs the bus a little
		cancel()
	}
}

func propsMatch(p dbus.ObjectPath) []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(sdDest), dbus.WithMatchObjectPath(p),
		dbus.WithMatchInterface(propsIface), dbus.WithMatchMember("PropertiesChanged"),
	}
}

// call runs f with a context bounded by callTimeout, and says so when the
// connection was lost.
func (b *bus) call(ctx context.Context, f func(ctx context.Context) error) error {
	return b.callTimeout(ctx, callTimeout, f)
}

func (b *bus) callTimeout(ctx context.Context, d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := f(ctx)
	if err != nil && b.isLost() {
		err = fmt.Errorf("%w: %w", ErrBusLost, err)
	}
	return err
}

// getProp reads one property into out (a pointer).
func (b *bus) getProp(ctx context.Context, path dbus.ObjectPath, iface, name string, out any) error {
	return b.call(ctx, func(ctx context.Context) error {
		var v dbus.Variant
		if err := b.conn.Object(sdDest, path).CallWithContext(ctx, propsIface+".Get", 0, iface, name).Store(&v); err != nil {
			return err
		}
		return dbus.Store([]any{v.Value()}, out)
	})
}

// getAll reads all properties of one interface.
func (b *bus) getAll(ctx context.Context, path dbus.ObjectPath, iface string) (map[string]dbus.Variant, error) {
	var props map[string]dbus.Variant
	err := b.call(ctx, func(ctx context.Context) error {
		return b.conn.Object(sdDest, path).CallWithContext(ctx, propsIface+".GetAll", 0, iface).Store(&props)
	})
	return props, err
}

// managerCall calls a method of systemd's manager.
func (b *bus) managerCall(ctx context.Context, d time.Duration, method string, out []any, args ...any) error {
	return b.callTimeout(ctx, d, func(ctx context.Context) error {
		return b.conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+"."+method, 0, args...).Store(out...)
	})
}

// jobRemoved returns a channel closed at the next JobRemoved signal of the
// unit (by its canonical name), and a function to call when no longer
// waiting.
func (b *bus) jobRemoved(unit string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	b.mu.Lock()
	b.jobWaits[unit] = append(b.jobWaits[unit], ch)
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		w := b.jobWaits[unit]
		if i := slices.Index(w, ch); i >= 0 {
			b.jobWaits[unit] = slices.Delete(w, i, i+1)
			if len(b.jobWaits[unit]) == 0 {
				delete(b.jobWaits, unit)
			}
		}
	}
}
