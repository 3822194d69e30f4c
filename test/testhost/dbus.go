package testhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// callTimeout bounds every single D-Bus call the harness makes.
const callTimeout = 5 * time.Second

// DialBus connects to the host's system bus from the real machine
// (godbus: Dial, Auth EXTERNAL as uid 0, Hello). ctx bounds the connection
// set-up only; the caller closes the connection.
func (h *Host) DialBus(ctx context.Context) (*dbus.Conn, error) {
	if !h.running() {
		return nil, ErrNotRunning
	}
	conn, err := dbus.Dial(h.SystemBusAddress())
	if err != nil {
		return nil, fmt.Errorf("testhost: %s: dial system bus: %w", h.name, err)
	}
	// Auth and Hello have no context of their own: closing the connection
	// unblocks them when ctx ends first.
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	err = conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))})
	if err == nil {
		err = conn.Hello()
	}
	close(done)
	<-stopped
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("testhost: %s: system bus handshake: %w", h.name, err)
	}
	return conn, nil
}

// Systemd connects go-systemd to the host's systemd, through its system
// bus. ctx bounds the connection set-up only; the caller closes it.
func (h *Host) Systemd(ctx context.Context) (*sddbus.Conn, error) {
	return sddbus.NewConnection(func() (*dbus.Conn, error) { return h.DialBus(ctx) })
}

// WaitReady waits until the host's systemd is on its system bus and has
// finished booting (SystemState running, or degraded, which is logged
// with the failed units). It returns at once once it has succeeded.
func (h *Host) WaitReady(ctx context.Context) error {
	if h.ready.Load() {
		return nil
	}
	var last error
	for {
		if !h.running() {
			return fmt.Errorf("%w: %s exited while booting: %s", ErrNotRunning, h.name, h.consoleTail())
		}
		state, err := h.systemState(ctx)
		if err == nil {
			switch state {
			case "running":
				h.ready.Store(true)
				return nil
			case "degraded":
				h.logger.Warn("host booted degraded", "failed", h.failedUnits(ctx))
				h.ready.Store(true)
				return nil
			}
			err = fmt.Errorf("system state %q", state)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("testhost: %s not ready (last: %v): %w", h.name, last, ctx.Err())
		case <-h.exited:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// systemState asks the host's systemd, over the system bus, for its
// SystemState; an error means the bus or systemd1 is not there yet.
func (h *Host) systemState(ctx context.Context) (string, error) {
	if _, err := os.Stat(filepath.Join(h.Root(), "run/dbus/system_bus_socket")); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := h.DialBus(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.systemd1").Store(&has); err != nil {
		return "", err
	}
	if !has {
		return "", errors.New("org.freedesktop.systemd1 not on the bus")
	}
	var v dbus.Variant
	err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").CallWithContext(ctx,
		"org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "SystemState").Store(&v)
	if err != nil {
		return "", err
	}
	s, _ := v.Value().(string)
	return s, nil
}

func (h *Host) failedUnits(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := h.Run(ctx, "systemctl", "--failed", "--no-legend", "--plain")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

func (h *Host) consoleTail() string {
	var b strings.Builder
	for _, f := range []string{"boot.log", "console.log"} {
		data, err := os.ReadFile(filepath.Join(h.dir, f))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", f, data)
	}
	return b.String()
}
