// Package msg is the msg resource: a message sent to the journal (over its native socket protocol) and to syslog when the resource starts and each time a notify edge refreshes it.
package msg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("msg", func() engine.Res { return &Msg{} })
}

// Msg sends Body at Priority. It is sent on its first check (the original
// mgmt's behaviour: a message when the graph starts) and again each time a
// notify edge refreshes it; nothing on the machine drifts, so Watch only
// waits.
type Msg struct {
	Body     string            `yaml:"body"`
	Priority string            `yaml:"priority"` // emerg .. debug (the original's Emerg .. Debug too); default notice
	Fields   map[string]string `yaml:"fields"`   // extra journal fields: NAME: value
	Journal  bool              `yaml:"journal"`  // send to the journal
	Syslog   bool              `yaml:"syslog"`   // send to syslog (/dev/log)

	log  *slog.Logger
	name string
	prio int               // 0 (emerg) .. 7 (debug), set by Validate
	flds map[string]string // Fields with upper-case names, set by Validate

	mu   sync.Mutex // guards sent
	sent bool       // the first check's message has been sent
}

// priorities are the journal's (syslog's) levels, by name.
var priorities = map[string]int{
	"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3,
	"warning": 4, "warn": 4, "notice": 5, "info": 6, "debug": 7,
}

// defaultPriority is the original's fallback.
const defaultPriority = 5

// maxField is journald's limit on a field name's length.
const maxField = 64

// SetName keeps the resource's name, for SYSLOG_IDENTIFIER's default and
// messages.
func (r *Msg) SetName(name string) { r.name = name }

// validField reports whether name (upper-cased) is a journal field a
// client may set: letters, digits and _, not starting with _ or a digit.
func validField(name string) bool {
	if name == "" || len(name) > maxField || name[0] == '_' || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, c := range name {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Validate checks the priority and the field names; every problem is
// reported at once.
func (r *Msg) Validate() error {
	var errs []error
	r.prio = defaultPriority
	if r.Priority != "" {
		p, ok := priorities[strings.ToLower(r.Priority)]
		if !ok {
			errs = append(errs, fmt.Errorf("priority: %q is invalid: want one of emerg, alert, crit, err, warning, notice, info, debug", r.Priority))
		}
		r.prio = p
	}
	if strings.ContainsRune(r.Body, 0) {
		errs = append(errs, fmt.Errorf("body: contains a NUL byte"))
	}
	r.flds = map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
		up := strings.ToUpper(k)
		switch {
		case !validField(up):
			errs = append(errs, fmt.Errorf("fields: %q is invalid: want letters, digits and _ (not first), at most %d, e.g. UNIT_ROLE", k, maxField))
		case up == "MESSAGE" || up == "PRIORITY":
			errs = append(errs, fmt.Errorf("fields: %q is set by body or priority: give it there", k))
		default:
			if _, dup := r.flds[up]; dup {
				errs = append(errs, fmt.Errorf("fields: %q given twice (names are upper-cased)", up))
			}
			r.flds[up] = r.Fields[k]
		}
	}
	return errors.Join(errs...)
}

// Init keeps the logger.
func (r *Msg) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *Msg) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "msg["+r.name+"]")
	}
	return r.log
}

// Watch has nothing to watch: it waits for its context to end.
func (r *Msg) Watch(ctx context.Context, ev engine.Events) error {
	ev.Running()
	<-ctx.Done()
	return nil
}

// Close has nothing to release.
func (r *Msg) Close() error { return nil }

// CheckApply sends the message the first time it is called with apply
// (reporting it first, in noop too); later checks have nothing to do.
func (r *Msg) CheckApply(ctx context.Context, apply bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent {
		return false, nil
	}
	if !apply {
		r.report(ctx, "not sent since the resource started", false)
		return true, nil
	}
	if err := r.send(ctx, "not sent since the resource started"); err != nil {
		return false, err
	}
	r.sent = true
	return true, nil
}

// Refresh sends the message again: a notify edge's parent changed.
func (r *Msg) Refresh(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.send(ctx, "refreshed by an edge"); err != nil {
		return false, err
	}
	r.sent = true
	return true, nil
}

// sinks names where the message goes, for reports.
func (r *Msg) sinks() string {
	var s []string
	if r.Journal {
		s = append(s, "journal")
	}
	if r.Syslog {
		s = append(s, "syslog")
	}
	s = append(s, "log")
	return strings.Join(s, "+")
}

func (r *Msg) report(ctx context.Context, why string, sent bool) {
	engine.Changed(ctx, engine.Change{Property: "message", To: r.Body, Why: why + ": to " + r.sinks()})
	msg := "would send (noop)"
	if sent {
		msg = "sent"
	}
	r.logger().Info(msg, "body", r.Body, "priority", r.prio, "to", r.sinks(), "why", why)
}

// send writes the message to each sink asked for and to the agent's log.
func (r *Msg) send(ctx context.Context, why string) error {
	if r.Journal {
		f := maps.Clone(r.flds)
		if _, ok := f["SYSLOG_IDENTIFIER"]; !ok {
			f["SYSLOG_IDENTIFIER"] = "mgmt"
		}
		f["MGMT_RESOURCE"] = "msg[" + r.name + "]"
		if err := sendJournal(r.Body, r.prio, f); err != nil {
			return err
		}
	}
	if r.Syslog {
		if err := sendSyslog(r.Body, r.prio); err != nil {
			return err
		}
	}
	r.report(ctx, why, true)
	return nil
}
