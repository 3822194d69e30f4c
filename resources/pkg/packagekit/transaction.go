package packagekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Package is one package as a transaction reported it (a Package signal).
type Package struct {
	Info    Info
	ID      string // name;version;arch;data
	Summary string
}

// Name is the package's name, from its ID.
func (p Package) Name() string { return idField(p.ID, 0) }

// Version is the package's version, from its ID.
func (p Package) Version() string { return idField(p.ID, 1) }

// Arch is the package's architecture, from its ID.
func (p Package) Arch() string { return idField(p.ID, 2) }

// Data is the ID's data field: for an installed package "installed" (or
// "auto:..."/"manual:..." on some backends), else the repository.
func (p Package) Data() string { return idField(p.ID, 3) }

func idField(id string, i int) string {
	f := strings.SplitN(id, ";", 4)
	if i < len(f) {
		return f[i]
	}
	return ""
}

// WithVersion returns the package ID id with its version replaced.
func WithVersion(id, version string) string {
	f := strings.SplitN(id, ";", 4)
	if len(f) != 4 {
		return id
	}
	f[1] = version
	return strings.Join(f, ";")
}

// Result is what one transaction reported.
type Result struct {
	Path     dbus.ObjectPath     // the transaction's object path
	Packages []Package           // from Package (and Packages) signals, in order
	Files    map[string][]string // package ID -> files, from Files signals
	Runtime  time.Duration       // as reported by Finished
	Role     Role                // as the transaction's properties announced it
}

// Error is a transaction that failed: PackageKit's own error code and
// message (from its ErrorCode signal), and how it finished. It unwraps to
// its ErrorCode, so errors.Is(err, ErrPackageNotFound) works.
type Error struct {
	Method  string // Resolve, InstallPackages, ...
	Code    ErrorCode
	HasCode bool // an ErrorCode signal was received
	Details string
	Exit    Exit
}

func (e *Error) Error() string {
	if e.HasCode {
		return fmt.Sprintf("packagekit: %s: %s: %s", e.Method, e.Code.String(), e.Details)
	}
	return fmt.Sprintf("packagekit: %s: the transaction ended with %s", e.Method, e.Exit)
}

// Unwrap returns the ErrorCode, if PackageKit sent one.
func (e *Error) Unwrap() error {
	if !e.HasCode {
		return nil
	}
	return e.Code
}

// Resolve asks which packages the names stand for.
func (c *Client) Resolve(ctx context.Context, filter Filter, names []string) ([]Package, error) {
	r, err := c.Transact(ctx, "Resolve", uint64(filter), names)
	if err != nil {
		return nil, err
	}
	return r.Packages, nil
}

// InstallPackages installs the packages with the given IDs (and what they
// depend on) in one transaction.
func (c *Client) InstallPackages(ctx context.Context, flags Flags, ids []string) (*Result, error) {
	return c.Transact(ctx, "InstallPackages", uint64(flags), ids)
}

// RemovePackages removes the packages with the given IDs in one
// transaction. With allowDeps, packages that depend on them are removed
// too; with autoremove, so are the dependencies nothing else needs.
func (c *Client) RemovePackages(ctx context.Context, flags Flags, ids []string, allowDeps, autoremove bool) (*Result, error) {
	return c.Transact(ctx, "RemovePackages", uint64(flags), ids, allowDeps, autoremove)
}

// UpdatePackages updates the packages to the versions named by the IDs in
// one transaction.
func (c *Client) UpdatePackages(ctx context.Context, flags Flags, ids []string) (*Result, error) {
	return c.Transact(ctx, "UpdatePackages", uint64(flags), ids)
}

// GetFiles lists the files each package ships, by package ID.
func (c *Client) GetFiles(ctx context.Context, ids []string) (map[string][]string, error) {
	r, err := c.Transact(ctx, "GetFiles", ids)
	if err != nil {
		return nil, err
	}
	return r.Files, nil
}

// Transact runs one transaction: CreateTransaction, SetHints (never
// interactive), then method with args on it, collecting its signals until
// Finished. A context without a deadline gets TransactionTimeout; when ctx
// ends first the transaction is cancelled and ctx's error returned.
func (c *Client) Transact(ctx context.Context, method string, args ...any) (*Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, TransactionTimeout)
		defer cancel()
	}
	t0 := time.Now()
	var path dbus.ObjectPath
	if err := c.call(ctx, c.b.conn.Object(busName, daemonPath), ifaceDaemon+".CreateTransaction").Store(&path); err != nil {
		return nil, c.fail(method, err)
	}
	box, err := c.b.register(path)
	if err != nil {
		return nil, c.fail(method, err)
	}
	defer c.b.unregister(path)
	tx := c.b.conn.Object(busName, path)
	if err := c.call(ctx, tx, ifaceTx+".SetHints", []string{"interactive=false"}).Err; err != nil {
		return nil, c.fail(method, err)
	}
	if err := c.call(ctx, tx, ifaceTx+"."+method, args...).Err; err != nil {
		return nil, c.fail(method, err)
	}
	called := time.Since(t0)

	res := &Result{Path: path}
	var pkErr *Error
	prog := progress{log: c.log, method: method, path: path, start: time.Now()}
	tick := time.NewTicker(ProgressInterval)
	defer tick.Stop()
	for {
		sigs, ferr := box.take()
		for _, s := range sigs {
			switch s.Name {
			case ifaceTx + ".Package":
				var p Package
				if dbus.Store(s.Body, (*uint32)(&p.Info), &p.ID, &p.Summary) == nil {
					res.Packages = append(res.Packages, p)
				}
			case ifaceTx + ".Packages":
				var ps []struct {
					Info    uint32
					ID      string
					Summary string
				}
				if dbus.Store(s.Body, &ps) == nil {
					for _, p := range ps {
						res.Packages = append(res.Packages, Package{Info(p.Info), p.ID, p.Summary})
					}
				}
			case ifaceTx + ".Files":
				var id string
				var files []string
				if dbus.Store(s.Body, &id, &files) == nil {
					if res.Files == nil {
						res.Files = map[string][]string{}
					}
					res.Files[id] = append(res.Files[id], files...)
				}
			case ifaceTx + ".ErrorCode":
				var code uint32
				var details string
				if dbus.Store(s.Body, &code, &details) == nil && pkErr == nil {
					pkErr = &Error{Method: method, Code: ErrorCode(code), HasCode: true, Details: details}
				}
			case ifaceTx + ".ItemProgress":
				var id string
				var st, pct uint32
				if dbus.Store(s.Body, &id, &st, &pct) == nil {
					prog.item = fmt.Sprintf("%s %s %d%%", id, Status(st), pct)
				}
			case ifaceProps + ".PropertiesChanged":
				prog.changed(s)
			case ifaceTx + ".Finished":
				var exit, runtime uint32
				if err := dbus.Store(s.Body, &exit, &runtime); err != nil {
					return nil, c.fail(method, fmt.Errorf("malformed Finished signal: %w", err))
				}
				res.Runtime = time.Duration(runtime) * time.Millisecond
				res.Role = prog.role
				c.log.Debug("packagekit transaction", "method", method, "tx", string(path),
					"took", time.Since(t0).Round(100*time.Microsecond), "calls", called.Round(100*time.Microsecond),
					"runtime", res.Runtime, "exit", Exit(exit).String())
				if pkErr == nil && Exit(exit) != ExitSuccess {
					pkErr = &Error{Method: method}
				}
				if pkErr != nil {
					pkErr.Exit = Exit(exit)
					return nil, pkErr
				}
				return res, nil
			}
		}
		if ferr != nil {
			return nil, c.fail(method, ferr)
		}
		select {
		case <-box.wake:
		case <-tick.C:
			prog.maybeLog()
		case <-ctx.Done():
			c.cancel(tx)
			return nil, fmt.Errorf("packagekit: %s: no result after %v (last status %s): %w",
				method, time.Since(prog.start).Round(time.Millisecond), prog.status, ctx.Err())
		}
	}
}

// call makes one method call, bounded by ctx and by CallTimeout.
func (c *Client) call(ctx context.Context, obj dbus.BusObject, method string, args ...any) *dbus.Call {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	return obj.CallWithContext(ctx, method, 0, args...)
}

// cancel asks PackageKit to cancel a transaction its caller gave up on,
// without waiting for an answer: a daemon that does not answer must not
// hold the caller back.
func (c *Client) cancel(tx dbus.BusObject) {
	if call := tx.Go(ifaceTx+".Cancel", dbus.FlagNoReplyExpected, nil); call.Err != nil {
		c.log.Debug("cancelling a transaction", "tx", tx.Path(), "err", call.Err)
	}
}

func (c *Client) fail(method string, err error) error {
	if c.b.conn.Context().Err() != nil && !errors.Is(err, ErrClosed) {
		err = errors.Join(err, ErrClosed)
	}
	return fmt.Errorf("packagekit: %s: %w", method, err)
}

// progress logs a transaction's status and percentage, at most one line
// per ProgressInterval, and none for a transaction shorter than that.
type progress struct {
	log    *slog.Logger
	method string
	path   dbus.ObjectPath
	start  time.Time
	last   time.Time // of the last line
	status Status
	pct    uint32
	role   Role
	item   string // the last ItemProgress
}

func (p *progress) changed(s *dbus.Signal) {
	var iface string
	var props map[string]dbus.Variant
	var invalidated []string
	if dbus.Store(s.Body, &iface, &props, &invalidated) != nil || iface != ifaceTx {
		return
	}
	if v, ok := props["Status"]; ok {
		if u, ok := v.Value().(uint32); ok {
			p.status = Status(u)
		}
	}
	if v, ok := props["Role"]; ok {
		if u, ok := v.Value().(uint32); ok {
			p.role = Role(u)
		}
	}
	if v, ok := props["Percentage"]; ok {
		if u, ok := v.Value().(uint32); ok {
			p.pct = u
		}
	}
	p.maybeLog()
}

// maybeLog logs where the transaction is, unless it is younger than
// ProgressInterval or the last line is.
func (p *progress) maybeLog() {
	now := time.Now()
	if now.Sub(p.start) < ProgressInterval || now.Sub(p.last) < ProgressInterval {
		return
	}
	p.last = now
	attrs := []any{"method", p.method, "tx", string(p.path), "status", p.status.String(), "elapsed", now.Sub(p.start).Round(time.Second)}
	if p.pct <= 100 { // 101: unknown
		attrs = append(attrs, "percent", p.pct)
	}
	if p.item != "" {
		attrs = append(attrs, "item", p.item)
	}
	p.log.Info("packagekit progress", attrs...)
}
