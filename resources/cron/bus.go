package cron

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of systemd's manager.
const (
	sdDest       = "org.freedesktop.systemd1"
	sdPath       = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManager    = "org.freedesktop.systemd1.Manager"
	sdUnit       = "org.freedesktop.systemd1.Unit"
	propsIface   = "org.freedesktop.DBus.Properties"
	callTimeout  = 60 * time.Second // a daemon reload re-reads every unit
	jobPollEvery = 10 * time.Millisecond
)

var errBusLost = errors.New("systemd bus connection lost")

// systemAddress is the system bus: DBUS_SYSTEM_BUS_ADDRESS when set, else
// the standard socket.
func systemAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return "unix:path=/run/dbus/system_bus_socket"
}

// unitPath is systemd's object path of a unit: bytes other than letters
// and digits escaped as _xx.
func unitPath(name string) dbus.ObjectPath {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + b.String())
}

// bus is the process's one connection to systemd for cron resources, as
// the svc kind keeps one for its own: subscribed once, its signals handed
// by one dispatcher goroutine to the watches of the units they concern.
type bus struct {
	conn *dbus.Conn
	lost chan struct{} // closed when the connection ends
	done chan struct{} // closed when the dispatcher has returned

	mu      sync.Mutex // guards watches
	watches map[dbus.ObjectPath]map[*func()]bool
}

// shared holds the bus while some resource uses it.
var shared struct {
	mu   sync.Mutex // guards b, refs
	b    *bus
	refs int
}

func acquire() (*bus, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.b != nil {
		select {
		case <-shared.b.lost:
			shared.b.conn.Close()
			<-shared.b.done
			shared.b = nil
		default:
		}
	}
	if shared.b == nil {
		b, err := dial()
		if err != nil {
			return nil, err
		}
		shared.b, shared.refs = b, 0
	}
	shared.refs++
	return shared.b, nil
}

func release(b *bus) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if b != shared.b {
		return // replaced after it was lost; closed then
	}
	if shared.refs--; shared.refs == 0 {
		b.conn.Close()
		<-b.done
		shared.b = nil
	}
}

func dial() (*bus, error) {
	conn, err := dbus.Connect(systemAddress())
	if err != nil {
		return nil, fmt.Errorf("cron: system bus: %w", err)
	}
	b := &bus{conn: conn, lost: make(chan struct{}), done: make(chan struct{}), watches: map[dbus.ObjectPath]map[*func()]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	rule := []dbus.MatchOption{dbus.WithMatchInterface(propsIface), dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace("/org/freedesktop/systemd1/unit")}
	if err := conn.AddMatchSignalContext(ctx, rule...); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cron: subscribing to PropertiesChanged: %w", err)
	}
	// systemd sends unit signals only to subscribed clients.
	if err := conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".Subscribe", 0).Err; err != nil {
		conn.Close()
		return nil, fmt.Errorf("cron: systemd Subscribe: %w", err)
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	go b.dispatch(sigs)
	return b, nil
}

// dispatch hands each PropertiesChanged to the watches of its unit until
// the connection closes (godbus then closes sigs).
func (b *bus) dispatch(sigs <-chan *dbus.Signal) {
	defer close(b.done)
	defer close(b.lost)
	for s := range sigs {
		if s.Name != propsIface+".PropertiesChanged" {
			continue
		}
		b.mu.Lock()
		for f := range b.watches[s.Path] {
			(*f)()
		}
		b.mu.Unlock()
	}
}

// watchUnit calls dirty for every change of the unit's properties until
// the returned stop is called.
func (b *bus) watchUnit(ctx context.Context, path dbus.ObjectPath, dirty func()) (stop func(), err error) {
	// Loading the unit gives it an object that emits signals.
	var p dbus.ObjectPath
	if err := b.call(ctx, "LoadUnit", []any{&p}, path2name(path)); err != nil {
		return nil, err
	}
	f := &dirty
	b.mu.Lock()
	if b.watches[path] == nil {
		b.watches[path] = map[*func()]bool{}
	}
	b.watches[path][f] = true
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.watches[path], f)
		if len(b.watches[path]) == 0 {
			delete(b.watches, path)
		}
		b.mu.Unlock()
	}, nil
}

// path2name undoes unitPath.
func path2name(p dbus.ObjectPath) string {
	s := strings.TrimPrefix(string(p), "/org/freedesktop/systemd1/unit/")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			var c byte
			fmt.Sscanf(s[i+1:i+3], "%02x", &c)
			b.WriteByte(c)
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// call calls a manager method, storing its results in out.
func (b *bus) call(ctx context.Context, method string, out []any, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c := b.conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+"."+method, 0, args...)
	if c.Err != nil {
		return fmt.Errorf("cron: systemd %s: %w", method, c.Err)
	}
	if len(out) > 0 {
		if err := c.Store(out...); err != nil {
			return fmt.Errorf("cron: systemd %s: %w", method, err)
		}
	}
	return nil
}

// prop reads a unit property (LoadUnit first, so that an unknown unit
// reads as inactive, not an error).
func (b *bus) prop(ctx context.Context, path dbus.ObjectPath, name string, out any) error {
	var p dbus.ObjectPath
	if err := b.call(ctx, "LoadUnit", []any{&p}, path2name(path)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := b.conn.Object(sdDest, p).CallWithContext(ctx, propsIface+".Get", 0, sdUnit, name).Store(out); err != nil {
		return fmt.Errorf("cron: %s of %s: %w", name, path2name(path), err)
	}
	return nil
}

// job runs StartUnit, StopUnit or RestartUnit on unit and waits until the
// job has finished (its object is gone).
func (b *bus) job(ctx context.Context, method, unit string) error {
	var job dbus.ObjectPath
	if err := b.call(ctx, method, []any{&job}, unit, "replace"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, jobWait)
	defer cancel()
	t := time.NewTicker(jobPollEvery)
	defer t.Stop()
	for {
		var v dbus.Variant
		if err := b.conn.Object(sdDest, job).CallWithContext(ctx, propsIface+".Get", 0, "org.freedesktop.systemd1.Job", "State").Store(&v); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("cron: %s %s: the job did not finish: %w", method, unit, ctx.Err())
			}
			return nil // the job is gone: done
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cron: %s %s: the job did not finish: %w", method, unit, ctx.Err())
		case <-t.C:
		}
	}
}
