package exec

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/mgmtconfig/mgmt/quote"
)

// ErrNoSuchID is wrapped by the error for a user or group that does not exist.
var ErrNoSuchID = errors.New("does not exist")

// account is what a command run as another user needs to know about it.
type account struct {
	uid, gid uint32
	groups   []uint32 // supplementary groups
	env      []string // HOME, USER, LOGNAME when known
}

// parseID reads a numeric uid or gid; ok is false when s is not a number.
// The all-ones value means "unchanged" to the kernel and is refused.
func parseID(s string) (id uint32, ok bool, err error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, true, fmt.Errorf("%s is out of range: want 0 to 4294967294", s)
		}
		return 0, false, nil
	}
	if n == 1<<32-1 {
		return 0, true, fmt.Errorf("%s is reserved: want 0 to 4294967294", s)
	}
	return uint32(n), true, nil
}

// lookupUser resolves a user name or a numeric uid. A numeric uid need not
// have an entry in the user database; a name must.
func lookupUser(spec string) (account, error) {
	id, numeric, err := parseID(spec)
	if err != nil {
		return account{}, err
	}
	var u *user.User
	if numeric {
		u, err = user.LookupId(spec)
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			// Any uid is valid to the kernel; run with its own gid.
			return account{uid: id, gid: id, groups: []uint32{}}, nil
		}
	} else {
		u, err = user.Lookup(spec)
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return account{}, fmt.Errorf("%s %w: want an existing user name or a numeric uid", quote.String(spec), ErrNoSuchID)
		}
	}
	if err != nil {
		return account{}, fmt.Errorf("looking up user %s: %w", quote.String(spec), err)
	}
	a := account{env: []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("user %s has a non-numeric uid %s", quote.String(spec), quote.String(u.Uid))
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("user %s has a non-numeric gid %s", quote.String(spec), quote.String(u.Gid))
	}
	a.uid, a.gid = uint32(uid), uint32(gid)
	a.groups = []uint32{} // an empty list drops the agent's groups
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				a.groups = append(a.groups, uint32(g))
			}
		}
	}
	return a, nil
}

// lookupGroup resolves a group name or a numeric gid.
func lookupGroup(spec string) (uint32, error) {
	id, numeric, err := parseID(spec)
	if err != nil {
		return 0, err
	}
	if numeric {
		return id, nil
	}
	g, err := user.LookupGroup(spec)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("%s %w: want an existing group name or a numeric gid", quote.String(spec), ErrNoSuchID)
	}
	if err != nil {
		return 0, fmt.Errorf("looking up group %s: %w", quote.String(spec), err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %s has a non-numeric gid %s", quote.String(spec), quote.String(g.Gid))
	}
	return uint32(gid), nil
}

// credential returns the identity to run as, and the environment that goes
// with it, for the user and group specs (either may be empty). Both empty:
// nil, the agent's own identity.
func credential(userSpec, groupSpec string) (*syscall.Credential, []string, error) {
	if userSpec == "" && groupSpec == "" {
		return nil, nil, nil
	}
	if strings.ContainsRune(userSpec+groupSpec, 0) { // the C lookup would stop at the NUL
		return nil, nil, errors.New("user or group contains a NUL byte")
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	var env []string
	if userSpec != "" {
		a, err := lookupUser(userSpec)
		if err != nil {
			return nil, nil, fmt.Errorf("user: %w", err)
		}
		cred.Uid, cred.Gid, cred.Groups, env = a.uid, a.gid, a.groups, a.env
	}
	if groupSpec != "" {
		gid, err := lookupGroup(groupSpec)
		if err != nil {
			return nil, nil, fmt.Errorf("group: %w", err)
		}
		cred.Gid = gid
	}
	return cred, env, nil
}
