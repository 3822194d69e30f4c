package cron

import (
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts renders units of which every directive is one line, with the
// command passed to ExecStart as one quoted argument.
func FuzzValidate(f *testing.F) {
	f.Add("backup", "*-*-* 03:00:00", `tar czf /b.tgz "$HOME" 100%`, "root", "", 0.5)
	f.Add("a b", "", "x\ny", "-u", "gone", -1.0)
	f.Fuzz(func(t *testing.T, name, calendar, command, user, state string, acc float64) {
		r := &Cron{Calendar: calendar, Command: command, User: user, State: state, Accuracy: acc}
		r.SetName(name)
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		timer, service := r.files()
		for _, u := range [][]byte{timer, service} {
			for _, l := range strings.Split(strings.TrimSuffix(string(u), "\n"), "\n") {
				if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "[") && !strings.Contains(l, "=") {
					t.Fatalf("unit line %q from %q", l, u)
				}
			}
		}
		if r.absent() {
			return
		}
		q := strings.TrimPrefix(string(service[strings.Index(string(service), "ExecStart=/bin/sh -c "):]), "ExecStart=/bin/sh -c ")
		q = strings.TrimSuffix(q, "\n")
		if got := unquote(q); got != command {
			t.Fatalf("command %q quoted as %s, read back as %q", command, q, got)
		}
	})
}

// unquote reads one argument as systemd does: a double-quoted word with
// \\ and \" escapes, %% and $$ for % and $.
func unquote(q string) string {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "(not quoted)"
	}
	q = q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		switch {
		case q[i] == '\\' && i+1 < len(q):
			i++
		case (q[i] == '%' || q[i] == '$') && i+1 < len(q) && q[i+1] == q[i]:
			i++
		case q[i] == '"' || q[i] == '%' || q[i] == '$' || q[i] == '\\':
			return "(unescaped " + string(q[i]) + ")"
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
