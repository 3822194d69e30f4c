// Package packagekit is a small client of PackageKit's D-Bus API: transactions whose signals are collected until Finished under a deadline, and one shared system bus connection per bus address.
package packagekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	busName     = "org.freedesktop.PackageKit"
	daemonPath  = dbus.ObjectPath("/org/freedesktop/PackageKit")
	ifaceDaemon = "org.freedesktop.PackageKit"
	ifaceTx     = "org.freedesktop.PackageKit.Transaction"
	ifaceProps  = "org.freedesktop.DBus.Properties"
)

// Time limits. They are variables so that tests can shorten them.
var (
	// CallTimeout bounds every single D-Bus call (and the connection's
	// handshake) whose context has a later deadline or none.
	CallTimeout = 10 * time.Second
	// TransactionTimeout bounds a whole transaction whose context has no
	// deadline of its own.
	TransactionTimeout = 15 * time.Minute
	// ProgressInterval is the least time between two progress lines of one
	// transaction.
	ProgressInterval = 3 * time.Second
)

// ErrClosed is returned for transactions under way when the connection
// closes, and by calls made after.
var ErrClosed = errors.New("packagekit: bus connection closed")

// ErrDaemonExited is returned for transactions under way when the
// PackageKit daemon leaves the bus (it crashed or was stopped).
var ErrDaemonExited = errors.New("packagekit: the PackageKit daemon left the bus")

// Event is a change PackageKit announces on its daemon object.
type Event int

// Events passed to Subscribe's callbacks.
const (
	// UpdatesChanged: PackageKit's UpdatesChanged signal (packages were
	// installed, removed or updated through it, or its cache refreshed).
	UpdatesChanged Event = iota + 1
	// RepoListChanged: PackageKit's RepoListChanged signal.
	RepoListChanged
	// TransactionDone: a transaction this connection did not start, whose
	// role changes packages or repositories (installs, removals, updates,
	// cache refreshes...), left PackageKit's transaction list (from
	// TransactionListChanged, and the Role its PropertiesChanged signals
	// announced). Queries of other clients are not reported: two agents
	// reacting to each other's Resolve would never rest.
	TransactionDone
)

func (e Event) String() string {
	switch e {
	case UpdatesChanged:
		return "updates-changed"
	case RepoListChanged:
		return "repo-list-changed"
	case TransactionDone:
		return "transaction-done"
	}
	return fmt.Sprintf("event(%d)", int(e))
}

// Client talks to PackageKit over one bus connection. Clients made by
// WithLogger share their parent's connection. Its methods are safe for
// concurrent use.
type Client struct {
	b   *bus
	log *slog.Logger
}

// bus is one connection to a system bus and the dispatch of the signals it
// receives to the transactions and subscribers waiting for them.
type bus struct {
	addr string
	conn *dbus.Conn

	mu     sync.Mutex                   // guards the fields below
	closed bool                         //
	txs    map[dbus.ObjectPath]*mailbox // transactions under way, by path
	mine   map[dbus.ObjectPath]bool     // transactions this connection created, until they leave the list
	listed map[dbus.ObjectPath]bool     // PackageKit's transaction list, as last announced
	roles  map[dbus.ObjectPath]Role     // roles of transactions, from their PropertiesChanged signals
	subs   map[*func(Event)]struct{}    // Subscribe's callbacks
}

// SystemBusAddress is the address of the system bus: DBUS_SYSTEM_BUS_ADDRESS
// when set, else the standard socket.
func SystemBusAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return "unix:path=/run/dbus/system_bus_socket"
}

// Dial connects to the bus at addr ("" for SystemBusAddress), authenticates,
// and subscribes to PackageKit's signals. ctx bounds the set-up only (and
// at most CallTimeout); the caller closes the client.
func Dial(ctx context.Context, addr string) (*Client, error) {
	if addr == "" {
		addr = SystemBusAddress()
	}
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	b := &bus{
		addr:   addr,
		txs:    map[dbus.ObjectPath]*mailbox{},
		mine:   map[dbus.ObjectPath]bool{},
		listed: map[dbus.ObjectPath]bool{},
		roles:  map[dbus.ObjectPath]Role{},
		subs:   map[*func(Event)]struct{}{},
	}
	conn, err := dbus.Dial(addr, dbus.WithSignalHandler(b))
	if err != nil {
		return nil, fmt.Errorf("packagekit: dial %s: %w", addr, err)
	}
	b.conn = conn
	// Auth and Hello take no context: closing the connection unblocks them.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = conn.Auth(nil)
	if err == nil {
		err = conn.Hello()
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("packagekit: %s: bus handshake: %w", addr, errors.Join(err, ctx.Err()))
	}
	// Every signal PackageKit sends (its daemon object's and every
	// transaction's), and its comings and goings on the bus: one rule
	// each for the connection's lifetime, none per transaction.
	for _, rule := range [][]dbus.MatchOption{
		{dbus.WithMatchSender(busName)},
		{
			dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, busName),
		},
	} {
		if err := conn.AddMatchSignalContext(ctx, rule...); err != nil {
			conn.Close()
			return nil, fmt.Errorf("packagekit: %s: subscribing to signals: %w", addr, err)
		}
	}
	return &Client{b: b, log: slog.Default()}, nil
}

// WithLogger returns a client on the same connection whose transactions log
// their progress to log.
func (c *Client) WithLogger(log *slog.Logger) *Client {
	return &Client{b: c.b, log: log}
}

// Addr is the bus address the client is connected to.
func (c *Client) Addr() string { return c.b.addr }

// Close closes the connection: transactions under way fail with ErrClosed.
func (c *Client) Close() error { return c.b.conn.Close() }

// Done is closed when the connection has closed (by Close, or because the
// bus went away).
func (c *Client) Done() <-chan struct{} { return c.b.conn.Context().Done() }

// Subscribe calls fn for each Event until cancel is called. fn is called
// from the connection's reading goroutine: it must not block (mark
// something dirty and return).
func (c *Client) Subscribe(fn func(Event)) (cancel func()) {
	p := &fn
	c.b.mu.Lock()
	c.b.subs[p] = struct{}{}
	c.b.mu.Unlock()
	return func() {
		c.b.mu.Lock()
		delete(c.b.subs, p)
		c.b.mu.Unlock()
	}
}

// DeliverSignal implements dbus.SignalHandler. It runs on godbus's reading
// goroutine and never blocks.
func (b *bus) DeliverSignal(iface, member string, s *dbus.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	switch {
	case iface == "org.freedesktop.DBus" && member == "NameOwnerChanged":
		var name, oldOwner, newOwner string
		if dbus.Store(s.Body, &name, &oldOwner, &newOwner) != nil || name != busName || oldOwner == "" {
			return
		}
		for _, box := range b.txs {
			box.fail(ErrDaemonExited)
		}
		clear(b.listed)
		clear(b.mine)
		clear(b.roles)
	case s.Path == daemonPath && iface == ifaceDaemon:
		switch member {
		case "UpdatesChanged":
			b.notifyLocked(UpdatesChanged)
		case "RepoListChanged":
			b.notifyLocked(RepoListChanged)
		case "TransactionListChanged":
			var list []string
			if dbus.Store(s.Body, &list) != nil {
				return
			}
			now := make(map[dbus.ObjectPath]bool, len(list))
			for _, p := range list {
				now[dbus.ObjectPath(p)] = true
			}
			foreign := false
			for p := range b.listed {
				if now[p] {
					continue
				}
				if b.mine[p] {
					delete(b.mine, p)
				} else if r, ok := b.roles[p]; !ok || r.changes() {
					foreign = true // a role never announced counts as a change
				}
				delete(b.roles, p)
			}
			b.listed = now
			if foreign {
				b.notifyLocked(TransactionDone)
			}
		}
	default:
		if box := b.txs[s.Path]; box != nil {
			box.put(s)
			return
		}
		if iface == ifaceProps && member == "PropertiesChanged" {
			var name string
			var props map[string]dbus.Variant
			var inv []string
			if dbus.Store(s.Body, &name, &props, &inv) != nil || name != ifaceTx {
				return
			}
			if v, ok := props["Role"]; ok {
				if r, ok := v.Value().(uint32); ok && r != 0 {
					if len(b.roles) >= maxRoles {
						clear(b.roles) // announced but never listed: forget them
					}
					b.roles[s.Path] = Role(r)
				}
			}
		}
	}
}

// maxRoles bounds the roles remembered for transactions of other clients.
const maxRoles = 1024

func (b *bus) notifyLocked(ev Event) {
	for fn := range b.subs {
		(*fn)(ev)
	}
}

// Terminate implements dbus.Terminator: godbus calls it when the
// connection closes.
func (b *bus) Terminate() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, box := range b.txs {
		box.fail(ErrClosed)
	}
}

// register makes the signals of the transaction at path go to a new mailbox.
func (b *bus) register(path dbus.ObjectPath) (*mailbox, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	box := &mailbox{wake: make(chan struct{}, 1)}
	b.txs[path] = box
	b.mine[path] = true
	return box, nil
}

func (b *bus) unregister(path dbus.ObjectPath) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.txs, path)
	if !b.listed[path] {
		delete(b.mine, path) // never listed, or already gone from the list
	}
}

// mailbox queues the signals of one transaction: the reading goroutine
// never waits for the transaction's goroutine.
type mailbox struct {
	mu   sync.Mutex // guards sigs, err
	sigs []*dbus.Signal
	err  error
	wake chan struct{} // one slot: something was queued
}

func (m *mailbox) put(s *dbus.Signal) {
	m.mu.Lock()
	m.sigs = append(m.sigs, s)
	m.mu.Unlock()
	m.poke()
}

func (m *mailbox) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
	m.poke()
}

func (m *mailbox) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() ([]*dbus.Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sigs := m.sigs
	m.sigs = nil
	return sigs, m.err
}

var shared struct {
	mu      sync.Mutex         // guards clients
	clients map[string]*Client // by bus address
}

// Shared returns the process's client for the system bus at
// SystemBusAddress(), dialing it on first use or when the previous
// connection to that address has closed. Every caller in the process gets
// the same connection; it is never closed except by CloseShared.
func Shared(ctx context.Context) (*Client, error) {
	addr := SystemBusAddress()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c := shared.clients[addr]; c != nil {
		select {
		case <-c.Done():
		default:
			return c, nil
		}
	}
	c, err := Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if shared.clients == nil {
		shared.clients = map[string]*Client{}
	}
	shared.clients[addr] = c
	return c, nil
}

// CloseShared closes every connection Shared made (for tests that check
// that nothing is left running).
func CloseShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var errs []error
	for addr, c := range shared.clients {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("packagekit: closing %s: %w", addr, err))
		}
		delete(shared.clients, addr)
	}
	return errors.Join(errs...)
}
