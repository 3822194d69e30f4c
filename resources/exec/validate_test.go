package exec

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestValidate(t *testing.T) {
	const badSeconds = " is invalid: want seconds from 0.001 to 1e+09, or 0 for none"
	tests := []struct {
		name string
		x    *Exec
		want string // "" means valid
	}{
		{"plain", &Exec{Cmd: "sleep 10s"}, ""},
		{"legacy empty fields", &Exec{Cmd: "sleep 10s", State: "present"}, ""},
		{"shell syntax through a shell", &Exec{Cmd: "echo a | wc -l > /dev/null", Shell: "/bin/sh"}, ""},
		{"shell with options", &Exec{Cmd: "true", Shell: "/bin/bash -e -o pipefail"}, ""},
		{"everything", &Exec{
			Cmd: "touch /tmp/x", Cwd: "/", Env: map[string]string{"A": "1", "B": ""}, Timeout: 10,
			IfCmd: "test -d /tmp", Creates: "/tmp/x", WatchCmd: "cat", PollInt: 0.5,
			User: "nobody", Group: "nogroup",
		}, ""},
		{"shells for ifcmd and watchcmd", &Exec{Cmd: "true", IfCmd: "test -n \"$X\"", IfShell: "/bin/sh", WatchCmd: "tail -F /x | cat", WatchShell: "sh"}, ""},
		{"numeric ids", &Exec{Cmd: "true", User: "65534", Group: "0"}, ""},
		{"numeric uid with no entry", &Exec{Cmd: "true", User: "123456"}, ""},

		{"no cmd", &Exec{}, "cmd: missing: want the command to run, e.g. cmd: sleep 10s"},
		{"blank cmd", &Exec{Cmd: " \t"}, "cmd: blank: want the command to run"},
		{"empty program", &Exec{Cmd: "''"}, `cmd: the program to run is "", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"empty program, double quotes", &Exec{Cmd: `"" -x`}, `cmd: the program to run is "", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"blank program", &Exec{Cmd: `' ' arg`}, `cmd: the program to run is " ", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"escaped blank program", &Exec{Cmd: `\ `}, `cmd: the program to run is " ", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"no-break space program", &Exec{Cmd: "\u00a0 x"}, `cmd: the program to run is "\u00a0", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"invisible program", &Exec{Cmd: "ls\u200b -l"}, `cmd: the program to run, "ls\u200b", holds U+200B, an invisible character: want a visible program name`},
		{"empty ifcmd program", &Exec{Cmd: "true", IfCmd: `""`}, `ifcmd: the program to run is "", empty once its quotes are removed: want the command to run, e.g. cmd: sleep 10s`},
		{"empty shell program", &Exec{Cmd: "true", Shell: "'' -e"}, `shell: the program to run is "", empty once its quotes are removed: want a shell such as /bin/sh`},
		{"command too long", &Exec{Cmd: "echo " + strings.Repeat("x", maxArgLen)}, "cmd: 131077 bytes long: want at most 131072 (the kernel's MAX_ARG_STRLEN); write a script and run it"},
		{"bidi override in cwd", &Exec{Cmd: "true", Cwd: "tmp\u202e"}, `cwd: "tmp\u202e" is invalid: want an absolute path`},
		{"pipe without shell", &Exec{Cmd: "echo a | wc"}, `cmd: "|" at offset 7 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"variable without shell", &Exec{Cmd: "echo $HOME"}, `cmd: "$" at offset 5 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"open quote", &Exec{Cmd: "echo 'a"}, `cmd: unterminated quote ' opened at offset 5: close it`},
		{"NUL through a shell", &Exec{Cmd: "echo \x00", Shell: "/bin/sh"}, "cmd: contains a NUL byte"},
		{"blank shell", &Exec{Cmd: "true", Shell: "  "}, "shell: blank: want a shell such as /bin/sh"},
		{"bad shell quoting", &Exec{Cmd: "true", Shell: `/bin/sh "-e`}, `shell: unterminated quote " opened at offset 8: close it`},
		{"ifshell alone", &Exec{Cmd: "true", IfShell: "/bin/sh"}, "ifshell: set without ifcmd: set ifcmd too, or remove ifshell"},
		{"ifcmd needs a shell", &Exec{Cmd: "true", IfCmd: "test -e $X"}, `ifcmd: "$" at offset 8 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"watchshell alone", &Exec{Cmd: "true", WatchShell: "/bin/sh"}, "watchshell: set without watchcmd: set watchcmd too, or remove watchshell"},
		{"watchcmd needs a shell", &Exec{Cmd: "true", WatchCmd: "tail -F x | grep y"}, `watchcmd: "|" at offset 10 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"negative timeout", &Exec{Cmd: "true", Timeout: -1}, "timeout: -1" + badSeconds},
		{"NaN timeout", &Exec{Cmd: "true", Timeout: math.NaN()}, "timeout: NaN" + badSeconds},
		{"infinite timeout", &Exec{Cmd: "true", Timeout: math.Inf(1)}, "timeout: +Inf" + badSeconds},
		{"tiny pollint", &Exec{Cmd: "true", PollInt: 0.0001}, "pollint: 0.0001" + badSeconds},
		{"huge pollint", &Exec{Cmd: "true", PollInt: 2e9}, "pollint: 2e+09" + badSeconds},
		{"relative cwd", &Exec{Cmd: "true", Cwd: "tmp"}, `cwd: "tmp" is invalid: want an absolute path`},
		{"relative creates", &Exec{Cmd: "true", Creates: "done"}, `creates: "done" is invalid: want an absolute path`},
		{"empty env name", &Exec{Cmd: "true", Env: map[string]string{"": "x"}}, `env: "" is invalid: want a name without '=' or NUL, and a value without NUL`},
		{"env name with =", &Exec{Cmd: "true", Env: map[string]string{"A=B": "x"}}, `env: "A=B" is invalid: want a name without '=' or NUL, and a value without NUL`},
		{"env value with NUL", &Exec{Cmd: "true", Env: map[string]string{"A": "x\x00"}}, `env: "A" is invalid: want a name without '=' or NUL, and a value without NUL`},
		{"state absent", &Exec{Cmd: "true", State: "absent"}, `state: "absent" is invalid: want present or nothing (exec has no state on disk)`},
		{"state running", &Exec{Cmd: "true", State: "running"}, `state: "running" is invalid: want present or nothing (exec has no state on disk)`},
		{"unknown user", &Exec{Cmd: "true", User: "no-such-user-mgmt"}, `user: "no-such-user-mgmt" does not exist: want an existing user name or a numeric uid`},
		{"reserved uid", &Exec{Cmd: "true", User: "4294967295"}, "user: 4294967295 is reserved: want 0 to 4294967294"},
		{"uid out of range", &Exec{Cmd: "true", User: "99999999999"}, "user: 99999999999 is out of range: want 0 to 4294967294"},
		{"unknown group", &Exec{Cmd: "true", Group: "no-such-group-mgmt"}, `group: "no-such-group-mgmt" does not exist: want an existing group name or a numeric gid`},
		{"several problems", &Exec{Cmd: "true", State: "absent", Timeout: -2}, "timeout: -2" + badSeconds + "\n" +
			`state: "absent" is invalid: want present or nothing (exec has no state on disk)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := tt.x.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Graphs written for the original mgmt spell every unset field out as ”
// or 0; they decode strictly and are valid.
func TestDecodeLegacy(t *testing.T) {
	const src = `
cmd: echo hello world
shell: ''
timeout: 0
watchcmd: ''
watchshell: ''
ifcmd: ''
ifshell: ''
pollint: 0
state: present
`
	d := yaml.NewDecoder(bytes.NewBufferString(src))
	d.KnownFields(true)
	var x Exec
	if err := d.Decode(&x); err != nil {
		t.Fatal(err)
	}
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
	if x.Cmd != "echo hello world" || x.State != "present" || x.Timeout != 0 || x.PollInt != 0 {
		t.Fatalf("decoded %+v", &x)
	}

	const newer = `
cmd: touch done
cwd: /tmp
env: {LANG: C, EMPTY: ''}
timeout: 2.5
creates: /tmp/done
user: nobody
group: nogroup
`
	d = yaml.NewDecoder(bytes.NewBufferString(newer))
	d.KnownFields(true)
	x = Exec{}
	if err := d.Decode(&x); err != nil {
		t.Fatal(err)
	}
	if x.Timeout != 2.5 || x.Env["LANG"] != "C" || x.User != "nobody" || x.Cwd != "/tmp" {
		t.Fatalf("decoded %+v", &x)
	}

	d = yaml.NewDecoder(bytes.NewBufferString("cmd: true\nifcommand: true\n"))
	d.KnownFields(true)
	if err := d.Decode(&Exec{}); err == nil {
		t.Fatal("a misspelled field decoded without error")
	}
}

// What Validate accepts, the run can build: argv for every command and the
// identity to run as.
func FuzzValidate(f *testing.F) {
	f.Add("sleep 10s", "", "", "", 0.0, "", "")
	f.Add("echo a | wc", "/bin/sh", "test -d /tmp", "", 5.0, "/tmp", "nobody")
	f.Add("true", "", "false", "/bin/sh -e", 0.5, "/", "65534")
	f.Add("echo 'x", "", "", "", -1.0, "rel", "no-such-user")
	f.Fuzz(func(t *testing.T, cmd, shell, ifcmd, ifshell string, timeout float64, cwd, usr string) {
		x := &Exec{Cmd: cmd, Shell: shell, IfCmd: ifcmd, IfShell: ifshell, Timeout: timeout, Cwd: cwd, User: usr}
		if x.Validate() != nil {
			return
		}
		if _, err := x.proc(x.Cmd, x.Shell, x.Timeout); err != nil {
			t.Fatalf("valid %+v, but cmd cannot be built: %v", x, err)
		}
		if x.IfCmd != "" {
			if _, err := x.proc(x.IfCmd, x.IfShell, x.Timeout); err != nil {
				t.Fatalf("valid %+v, but ifcmd cannot be built: %v", x, err)
			}
		}
		if d := seconds(x.Timeout); d < 0 {
			t.Fatalf("valid timeout %v gives a negative duration", x.Timeout)
		}
	})
}
