package user

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		res  User
		want string // "" valid
	}{
		{"alice", User{}, ""},
		{"alice", User{UID: ptr(uint32(1002)), GID: ptr(uint32(100)), State: "exists"}, ""},
		{"alice", User{Group: "staff", Groups: []string{"adm", "sudo"}, HomeDir: "/srv/alice", Shell: "/bin/zsh", Password: ptr(hashA)}, ""},
		{"", User{}, "name: missing: want a name, e.g. alice"},
		{"1234", User{}, `name: "1234" is all digits: it would read as an id: want 1 to 32 letters, digits, '_', '-' or '.', not starting with '-', e.g. alice`},
		{"-x", User{}, `name: "-x" starts with '-': want 1 to 32 letters, digits, '_', '-' or '.', not starting with '-', e.g. alice`},
		{"a:b", User{}, `name: "a:b" has the character ':': want 1 to 32 letters, digits, '_', '-' or '.', not starting with '-', e.g. alice`},
		{"alice", User{State: "present"}, `state: "present" is invalid: want exists (the default) or absent`},
		{"alice", User{UID: ptr(uint32(1<<32 - 1))}, "uid: 4294967295 is (uid_t)-1, not a user: want 0 to 4294967294"},
		{"alice", User{GID: ptr(uint32(1)), Group: "x"}, "gid and group: give only one: both name the primary group"},
		{"alice", User{Groups: []string{"a", "a"}}, `groups[1]: "a" is listed twice`},
		{"alice", User{Home: "/a", HomeDir: "/b"}, `home and homedir: "/a" and "/b" differ: give one (homedir is the original mgmt's name for home)`},
		{"alice", User{Home: "home"}, `home: "home" is relative: want an absolute path, e.g. /home/alice`},
		{"alice", User{Shell: "/bin/sh\n"}, `shell: has the character '\n', which the account databases cannot hold`},
		{"alice", User{Comment: "a:b"}, `comment: has the character ':', which the account databases cannot hold`},
		{"alice", User{Password: ptr("hunter2 x")}, "password: has a space: want a crypt(3) hash (mkpasswd -m yescrypt), not a clear-text password"},
		{"alice", User{Password: ptr("secret:x")}, `password: has the character ':', which the account databases cannot hold`},
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

// A user comes after the groups it names, by name or (from a group that
// sets it) by gid.
func TestAutoEdges(t *testing.T) {
	r := &User{Group: "staff", Groups: []string{"adm", "sudo"}}
	r.SetName("alice")
	edges, _ := r.AutoEdges(context.Background())
	var got []engine.UID
	for _, e := range edges {
		if e.Before {
			t.Errorf("edge %+v: a user comes after its groups", e)
		}
		got = append(got, e.UIDs...)
	}
	want := []engine.UID{{Kind: "group", Key: "staff"}, {Kind: "group", Key: "adm"}, {Kind: "group", Key: "sudo"}}
	if !slices.Equal(got, want) {
		t.Errorf("AutoEdges = %v, want %v", got, want)
	}
	r = &User{GID: ptr(uint32(100))}
	edges, _ = r.AutoEdges(context.Background())
	if len(edges) != 1 || edges[0].UIDs[0] != (engine.UID{Kind: "gid", Key: "100"}) {
		t.Errorf("AutoEdges with a gid = %v", edges)
	}
	if uids := r.UIDs(); len(uids) != 1 || uids[0] != (engine.UID{Kind: "user", Key: ""}) {
		t.Errorf("UIDs = %v", uids)
	}
}

// Validate never panics, and what it accepts can be written into the
// databases: no field holds a colon or a line break, and no secret is
// quoted in its messages.
func FuzzValidate(f *testing.F) {
	f.Add("alice", "staff", "adm,sudo", "/home/alice", "/bin/bash", "Alice", hashA, uint32(1000))
	f.Add("a:b", "", "", "rel", "", "x\ny", "pw:pw", uint32(1<<32-1))
	f.Fuzz(func(t *testing.T, name, group, groups, home, shell, comment, pw string, uid uint32) {
		r := &User{UID: &uid, Group: group, Home: home, Shell: shell, Comment: comment, Password: &pw}
		if groups != "" {
			r.Groups = strings.Split(groups, ",")
		}
		r.SetName(name)
		err := r.Validate()
		if err != nil {
			if len(pw) > 3 && strings.Contains(err.Error(), pw) && !strings.Contains(name+group+groups+home+shell+comment, pw) {
				t.Fatalf("the password is quoted in %v", err)
			}
			return
		}
		for _, v := range append([]string{name, group, home, shell, comment, pw}, r.Groups...) {
			if strings.ContainsAny(v, ":\n\x00") {
				t.Fatalf("accepted %q", v)
			}
		}
		if uid == 1<<32-1 {
			t.Fatal("accepted uid -1")
		}
	})
}
