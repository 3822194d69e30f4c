// Package sysctl is the sysctl resource: a kernel parameter under /proc/sys kept at its value, polled (procfs cannot be watched), and optionally persisted to a file under /etc/sysctl.d/.
package sysctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
)

func init() {
	engine.Register("sysctl", func() engine.Res { return &Sysctl{} })
}

// DefaultInterval is how often the value is read back when interval is
// not given: /proc/sys sends no inotify events, so drift is found by
// polling.
const DefaultInterval = 5 * time.Second

// Where the kernel's parameters and the persist files live.
const (
	procSys    = "/proc/sys"
	sysctlDir  = "/etc/sysctl.d"
	filePrefix = "90-mgmt-"
)

// nameRE is a sysctl name: dot-separated parts of letters, digits, _ and -
// (the forms sysctl(8) takes; a "/" form is turned into dots).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// Sysctl keeps one kernel parameter at its value.
type Sysctl struct {
	Name     string  `yaml:"name"`     // e.g. net.ipv4.ip_forward; default: the resource's name
	Value    string  `yaml:"value"`    // as sysctl(8) prints it; runs of blanks compare equal
	Persist  bool    `yaml:"persist"`  // also write it to a file under /etc/sysctl.d/
	File     string  `yaml:"file"`     // the persist file; default /etc/sysctl.d/90-mgmt-NAME.conf
	Interval float64 `yaml:"interval"` // seconds between reads of the value; default 5

	fsw *fswatch.Watcher // nil: fswatch.Default()
}

// SetName makes the resource's name the parameter's when name is not given.
func (r *Sysctl) SetName(name string) {
	if r.Name == "" {
		r.Name = name
	}
}

func (r *Sysctl) key() string { return strings.ReplaceAll(strings.Trim(r.Name, "/"), "/", ".") }

// Validate checks the parameters; every problem is reported at once.
func (r *Sysctl) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if k := r.key(); !nameRE.MatchString(k) {
		bad("name: %q is invalid: want a parameter under /proc/sys, e.g. net.ipv4.ip_forward", r.Name)
	}
	if strings.TrimSpace(r.Value) == "" || strings.ContainsAny(r.Value, "\n\x00") {
		bad("value: %q is invalid: want the value on one line, e.g. value: \"1\"", r.Value)
	}
	if r.File != "" {
		switch {
		case !r.Persist:
			bad("file: needs persist: true: it names the file the value is persisted to")
		case strings.ContainsRune(r.File, 0) || !filepath.IsAbs(r.File) || strings.HasSuffix(r.File, "/"):
			bad("file: %q is invalid: want an absolute file path, e.g. /etc/sysctl.d/60-net.conf", r.File)
		}
	}
	if r.Interval != 0 && (math.IsNaN(r.Interval) || r.Interval < 0.01 || r.Interval > 86400) {
		bad("interval: %v is invalid: want seconds from 0.01 to 86400 (default %v)", r.Interval, DefaultInterval.Seconds())
	}
	return errors.Join(errs...)
}

func (r *Sysctl) interval() time.Duration {
	if r.Interval == 0 {
		return DefaultInterval
	}
	return time.Duration(r.Interval * float64(time.Second))
}

// procPath is the parameter's file under /proc/sys.
func (r *Sysctl) procPath() string {
	return filepath.Join(procSys, strings.ReplaceAll(r.key(), ".", "/"))
}

// persistPath is the persist file, or "" without persist.
func (r *Sysctl) persistPath() string {
	switch {
	case !r.Persist:
		return ""
	case r.File != "":
		return filepath.Clean(r.File)
	}
	return filepath.Join(sysctlDir, filePrefix+r.key()+".conf")
}

// Init has nothing to prepare: the engine logs the changes CheckApply
// reports (engine.Changed).
func (r *Sysctl) Init(engine.Env) error { return nil }

// UIDs names the parameter, and the persist file (so that a file resource
// for the same path is refused).
func (r *Sysctl) UIDs() []engine.UID {
	uids := []engine.UID{{Kind: "sysctl", Key: r.key()}}
	if p := r.persistPath(); p != "" {
		uids = append(uids, engine.UID{Kind: "file", Key: p})
	}
	return uids
}

// Watch reads the value every interval and marks the vertex dirty when it
// differs; the persist file, if any, is watched through inotify.
func (r *Sysctl) Watch(ctx context.Context, ev engine.Events) error {
	if p := r.persistPath(); p != "" {
		w := r.fsw
		if w == nil {
			var err error
			if w, err = fswatch.Default(); err != nil {
				return err
			}
		}
		cancel, err := w.Watch(p, ev.Dirty)
		if err != nil {
			return err
		}
		defer cancel()
	}
	tick := time.NewTicker(r.interval())
	defer tick.Stop()
	ev.Running()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := r.read()
		if err != nil || cur != normalize(r.Value) {
			ev.Dirty() // CheckApply reports the error, or repairs
		}
	}
}

// Close has nothing to release.
func (r *Sysctl) Close() error { return nil }

// normalize makes values that sysctl(8) treats alike equal: the kernel
// prints vectors separated by tabs, people write spaces.
func normalize(v string) string { return strings.Join(strings.Fields(v), " ") }

func (r *Sysctl) read() (string, error) {
	b, err := os.ReadFile(r.procPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("sysctl: %s: no such parameter in this kernel (or network namespace): %w", r.key(), err)
		}
		return "", fmt.Errorf("sysctl: %w", err)
	}
	return normalize(string(b)), nil
}

// persistText is the persist file's whole content.
func (r *Sysctl) persistText() []byte {
	return fmt.Appendf(nil, "# managed by mgmt: sysctl[%s]\n%s = %s\n", r.Name, r.key(), normalize(r.Value))
}

// CheckApply compares the running value (and the persist file) with the
// wanted one and, with apply, writes them.
func (r *Sysctl) CheckApply(ctx context.Context, apply bool) (bool, error) {
	cur, err := r.read()
	if err != nil {
		return false, err
	}
	want := normalize(r.Value)
	var changes []engine.Change
	if cur != want {
		changes = append(changes, engine.Change{Property: "value", From: cur, To: want, Why: "running value of " + r.procPath()})
	}
	p := r.persistPath()
	if p != "" {
		old, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("sysctl: %w", err)
		}
		if !bytes.Equal(old, r.persistText()) {
			why := "persist file differs"
			if err != nil {
				why = "persist file missing"
			}
			changes = append(changes, engine.Change{Property: "persist", From: strings.TrimSpace(string(old)), To: strings.TrimSpace(string(r.persistText())), Why: why + ": " + p})
		}
	}
	if len(changes) == 0 {
		return false, nil
	}
	engine.Changed(ctx, changes...)
	for _, c := range changes {
		if !apply {
			continue
		}
		switch c.Property {
		case "value":
			if err := os.WriteFile(r.procPath(), []byte(want+"\n"), 0); err != nil {
				return false, fmt.Errorf("sysctl: writing %s: %w", r.key(), err)
			}
			if got, err := r.read(); err != nil || got != want {
				return false, fmt.Errorf("sysctl: %s: wrote %q, the kernel kept %q (an invalid value?) %v", r.key(), want, got, err)
			}
		case "persist":
			if err := writeFile(p, r.persistText()); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// writeFile writes data to a temporary file beside path, syncs it and
// renames it over path (mode 0644).
func writeFile(path string, data []byte) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+hex.EncodeToString(rnd[:])+".mgmt-sysctl")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("sysctl: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sysctl: writing %s: %w", path, err)
	}
	return nil
}
