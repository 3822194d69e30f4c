// Package hostname is the hostname resource: the static, pretty and transient hostnames, kept through systemd-hostnamed over D-Bus and watched through its PropertiesChanged signals.
package hostname

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("hostname", func() engine.Res { return &Hostname{} })
}

// D-Bus names of systemd-hostnamed.
const (
	hnDest       = "org.freedesktop.hostname1"
	hnPath       = dbus.ObjectPath("/org/freedesktop/hostname1")
	hnIface      = "org.freedesktop.hostname1"
	propsIface   = "org.freedesktop.DBus.Properties"
	callTimeout  = 10 * time.Second
	maxHostLabel = 64 // the kernel's limit, HOST_NAME_MAX
)

// Hostname keeps the host's names. Empty parameters are not managed.
type Hostname struct {
	// Hostname sets each of the three names not given on its own (the
	// original mgmt's meaning). Without any name, the resource's name is
	// the hostname.
	Hostname string `yaml:"hostname"`
	Static   string `yaml:"static"`
	Pretty   string `yaml:"pretty"`
	Trans    string `yaml:"transient"`

	// The original mgmt's names of the same parameters.
	StaticHostname    string `yaml:"static_hostname"`
	PrettyHostname    string `yaml:"pretty_hostname"`
	TransientHostname string `yaml:"transient_hostname"`

	name string // the resource's name
}

// SetName keeps the resource's name, the hostname when no name is given.
func (r *Hostname) SetName(name string) { r.name = name }

// prop is one managed hostnamed property.
type prop struct {
	name   string // the D-Bus property: Hostname, StaticHostname, PrettyHostname
	param  string // the parameter, for messages and reports
	method string // the setter
	want   string
}

// props lists the managed properties, the original's names and the
// hostname shorthand resolved.
func (r *Hostname) props() []prop {
	pick := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	base := r.Hostname
	if pick(r.Hostname, r.Static, r.StaticHostname, r.Pretty, r.PrettyHostname, r.Trans, r.TransientHostname) == "" {
		base = r.name
	}
	var ps []prop
	if v := pick(r.Static, r.StaticHostname, base); v != "" {
		ps = append(ps, prop{"StaticHostname", "static", "SetStaticHostname", v})
	}
	if v := pick(r.Trans, r.TransientHostname, base); v != "" {
		ps = append(ps, prop{"Hostname", "transient", "SetHostname", v})
	}
	if v := pick(r.Pretty, r.PrettyHostname, base); v != "" {
		ps = append(ps, prop{"PrettyHostname", "pretty", "SetPrettyHostname", v})
	}
	return ps
}

// validName is a hostname as hostnamed accepts it: dot-separated labels
// of letters, digits and - (not at either end), at most 64 characters.
func validName(s string) bool {
	if s == "" || len(s) > maxHostLabel {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Validate checks the names; every problem is reported at once.
func (r *Hostname) Validate() error {
	var errs []error
	both := func(a, b, an, bn string) {
		if a != "" && b != "" && a != b {
			errs = append(errs, fmt.Errorf("%s and %s: give one (%s is the original mgmt's name of %s)", an, bn, bn, an))
		}
	}
	both(r.Static, r.StaticHostname, "static", "static_hostname")
	both(r.Pretty, r.PrettyHostname, "pretty", "pretty_hostname")
	both(r.Trans, r.TransientHostname, "transient", "transient_hostname")
	ps := r.props()
	if len(ps) == 0 {
		errs = append(errs, errors.New("hostname: missing: want at least one of hostname, static, transient, pretty, e.g. hostname: web1"))
	}
	for _, p := range ps {
		switch {
		case p.param == "pretty" && (strings.ContainsAny(p.want, "\n\x00") || len(p.want) > 255):
			errs = append(errs, fmt.Errorf("pretty: %q is invalid: want one line of free text", p.want))
		case p.param != "pretty" && !validName(p.want):
			errs = append(errs, fmt.Errorf("%s: %q is invalid: want dot-separated labels of letters, digits and - (at most %d characters), e.g. web1.example.com", p.param, p.want, maxHostLabel))
		}
	}
	return errors.Join(errs...)
}

// Init has nothing to prepare: the engine logs the changes CheckApply
// reports (engine.Changed).
func (r *Hostname) Init(engine.Env) error { return nil }

// UIDs: a host has one set of names; two hostname resources are refused.
func (r *Hostname) UIDs() []engine.UID {
	return []engine.UID{{Kind: "hostname", Key: "hostname"}}
}

// systemAddress is the system bus: DBUS_SYSTEM_BUS_ADDRESS when set (tests
// point it at a test host's bus), else the standard socket.
func systemAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return "unix:path=/run/dbus/system_bus_socket"
}

// shared is the process's one connection to the system bus for hostname
// resources, opened by the first user and closed by the last.
var shared struct {
	mu   sync.Mutex // guards conn, refs
	conn *dbus.Conn
	refs int
}

func acquire() (*dbus.Conn, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.conn == nil || !shared.conn.Connected() {
		c, err := dbus.Connect(systemAddress())
		if err != nil {
			return nil, fmt.Errorf("hostname: system bus: %w", err)
		}
		shared.conn, shared.refs = c, 0
	}
	shared.refs++
	return shared.conn, nil
}

func release(c *dbus.Conn) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c != shared.conn {
		c.Close()
		return
	}
	if shared.refs--; shared.refs == 0 {
		shared.conn.Close()
		shared.conn = nil
	}
}

// Watch subscribes to hostnamed's PropertiesChanged signals (and to its
// name changing owner: hostnamed exits when idle and is activated again)
// and marks the vertex dirty on each.
func (r *Hostname) Watch(ctx context.Context, ev engine.Events) error {
	conn, err := acquire()
	if err != nil {
		return err
	}
	defer release(conn)
	rules := []dbus.MatchOption{
		dbus.WithMatchObjectPath(hnPath), dbus.WithMatchInterface(propsIface), dbus.WithMatchMember("PropertiesChanged"),
	}
	if err := conn.AddMatchSignalContext(ctx, rules...); err != nil {
		return fmt.Errorf("hostname: subscribing to PropertiesChanged: %w", err)
	}
	defer conn.RemoveMatchSignal(rules...)
	ch := make(chan *dbus.Signal, 16)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	ev.Running()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-ch:
			if !ok {
				return fmt.Errorf("hostname: system bus connection lost")
			}
			if s.Path == hnPath && s.Name == propsIface+".PropertiesChanged" {
				ev.Dirty()
			}
		}
	}
}

// Close has nothing to release: Watch drops its connection when it returns.
func (r *Hostname) Close() error { return nil }

// CheckApply reads the managed properties from hostnamed (activating it)
// and, with apply, sets those that differ.
func (r *Hostname) CheckApply(ctx context.Context, apply bool) (bool, error) {
	conn, err := acquire()
	if err != nil {
		return false, err
	}
	defer release(conn)
	obj := conn.Object(hnDest, hnPath)
	// Every name is read before any is set: setting the static name also
	// sets the transient one when it followed it, and the transient change
	// is reported (in noop and real runs alike) all the same.
	var todo []prop
	for _, p := range r.props() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		var cur string
		err := obj.CallWithContext(cctx, propsIface+".Get", 0, hnIface, p.name).Store(&cur)
		cancel()
		if err != nil {
			return false, fmt.Errorf("hostname: reading %s from hostnamed: %w", p.name, err)
		}
		if cur == p.want {
			continue
		}
		engine.Changed(ctx, engine.Change{Property: p.param, From: cur, To: p.want, Why: "hostnamed's " + p.name})
		todo = append(todo, p)
	}
	if !apply {
		return len(todo) > 0, nil
	}
	for _, p := range todo {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := obj.CallWithContext(cctx, hnIface+"."+p.method, 0, p.want, false).Err
		cancel()
		if err != nil {
			return true, fmt.Errorf("hostname: %s %q: %w", p.method, p.want, err)
		}
	}
	return len(todo) > 0, nil
}
