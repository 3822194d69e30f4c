// Package group is the group resource: a local group (in /etc/group) kept present with its gid, or absent, through shadow's groupadd, groupmod and groupdel, and repaired as soon as inotify reports a change to /etc/group or /etc/gshadow.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/internal/shadow"
)

func init() {
	engine.Register("group", func() engine.Res { return &Group{} })
}

// States a group can be asked to be in.
const (
	StateExists = "exists"
	StateAbsent = "absent"
)

// Group manages one local group, named by the resource's name.
type Group struct {
	// State is exists (the default) or absent.
	State string `yaml:"state"`
	// GID is the group's number; nil: any (groupadd picks one).
	GID *uint32 `yaml:"gid"`
	// System makes a new group a system group (groupadd -r: its gid is
	// picked from the system range). It does not change an existing group.
	System bool `yaml:"system"`

	name string
	log  *slog.Logger
}

// SetName makes the resource's name the group's name.
func (r *Group) SetName(name string) { r.name = name }

// Validate checks the name, the state and the gid.
func (r *Group) Validate() error {
	var errs []error
	if err := shadow.CheckName("name", r.name); err != nil {
		errs = append(errs, err)
	}
	switch r.State {
	case "", StateExists, StateAbsent:
	default:
		errs = append(errs, fmt.Errorf("state: %q is invalid: want exists (the default) or absent", r.State))
	}
	if r.GID != nil && *r.GID == 1<<32-1 {
		errs = append(errs, errors.New("gid: 4294967295 is (gid_t)-1, not a group: want 0 to 4294967294"))
	}
	return errors.Join(errs...)
}

// Init keeps the logger.
func (r *Group) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *Group) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "group["+r.name+"]")
	}
	return r.log
}

// Watch reports changes to /etc/group and /etc/gshadow.
func (r *Group) Watch(ctx context.Context, ev engine.Events) error {
	return shadow.Watch(ctx, ev, shadow.GroupFile, shadow.GshadowFile)
}

// Close has nothing to release.
func (r *Group) Close() error { return nil }

// CheckApply reads /etc/group and, with apply, runs groupadd, groupmod -g
// or groupdel.
func (r *Group) CheckApply(ctx context.Context, apply bool) (bool, error) {
	g, err := shadow.LookupGroup(r.name)
	exists := err == nil
	if err != nil && !errors.Is(err, shadow.ErrNotFound) {
		return false, err
	}
	var argv []string
	switch {
	case r.State == StateAbsent:
		if !exists {
			return false, nil
		}
		engine.Changed(ctx, engine.Change{Property: "state", From: StateExists, To: StateAbsent, Why: "the group is in " + shadow.GroupFile})
		argv = []string{"groupdel", r.name}
	case !exists:
		c := engine.Change{Property: "state", From: StateAbsent, To: StateExists, Why: "no such group in " + shadow.GroupFile}
		argv = []string{"groupadd"}
		if r.GID != nil {
			argv = append(argv, "-g", strconv.FormatUint(uint64(*r.GID), 10))
			c.To += " (gid " + strconv.FormatUint(uint64(*r.GID), 10) + ")"
		}
		if r.System {
			argv = append(argv, "-r")
		}
		argv = append(argv, r.name)
		engine.Changed(ctx, c)
	case r.GID != nil && g.GID != *r.GID:
		engine.Changed(ctx, engine.Change{Property: "gid", From: strconv.FormatUint(uint64(g.GID), 10), To: strconv.FormatUint(uint64(*r.GID), 10)})
		argv = []string{"groupmod", "-g", strconv.FormatUint(uint64(*r.GID), 10), r.name}
	default:
		return false, nil
	}
	if !apply {
		return true, nil
	}
	if err := shadow.Run(ctx, nil, argv...); err != nil {
		return true, fmt.Errorf("group %s: %w", r.name, err)
	}
	r.logger().Info("group changed", "cmd", argv[0])
	return true, nil
}

// UIDs names the group, for the users and files that belong to it, and its
// gid when given, for users that name their primary group by number.
func (r *Group) UIDs() []engine.UID {
	if r.State == StateAbsent {
		return nil
	}
	uids := []engine.UID{{Kind: "group", Key: r.name}}
	if r.GID != nil {
		uids = append(uids, engine.UID{Kind: "gid", Key: strconv.FormatUint(uint64(*r.GID), 10)})
	}
	return uids
}
