package group

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		res  Group
		want string
	}{
		{"staff", Group{}, ""},
		{"testgroup", Group{State: "exists", GID: ptr(uint32(1234))}, ""},
		{"staff", Group{State: "absent"}, ""},
		{"", Group{}, "name: missing: want a name, e.g. alice"},
		{"a b", Group{}, `name: "a b" has the character ' ': want 1 to 32 letters, digits, '_', '-' or '.', not starting with '-', e.g. alice`},
		{"staff", Group{State: "gone"}, `state: "gone" is invalid: want exists (the default) or absent`},
		{"staff", Group{GID: ptr(uint32(1<<32 - 1))}, "gid: 4294967295 is (gid_t)-1, not a group: want 0 to 4294967294"},
	}
	for _, tt := range tests {
		r := tt.res
		r.SetName(tt.name)
		got := ""
		if err := r.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Validate(%s %+v) =\n%s\nwant\n%s", tt.name, tt.res, got, tt.want)
		}
	}
}

// Validate never panics, and what it accepts can be a line of /etc/group.
func FuzzValidate(f *testing.F) {
	f.Add("staff", "exists", uint32(50))
	f.Add("a:b", "absent", uint32(1<<32-1))
	f.Fuzz(func(t *testing.T, name, state string, gid uint32) {
		r := &Group{State: state, GID: &gid}
		r.SetName(name)
		if r.Validate() != nil {
			return
		}
		if name == "" || len(name) > 32 || strings.ContainsAny(name, ":,\n\x00 ") || gid == 1<<32-1 {
			t.Fatalf("accepted name %q gid %d", name, gid)
		}
	})
}
