package hostname

import (
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts sets at least one name, each a valid hostname but the pretty one,
// which is one line.
func FuzzValidate(f *testing.F) {
	f.Add("web1", "", "", "", "Web One", "")
	f.Add("", "a.example.com", "", "b", "", "")
	f.Add("-x", "a..b", "a", "", "x\ny", "")
	f.Fuzz(func(t *testing.T, hostname, static, staticOrig, trans, pretty, name string) {
		r := &Hostname{Hostname: hostname, Static: static, StaticHostname: staticOrig, Trans: trans, PrettyHostname: pretty}
		r.SetName(name)
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		ps := r.props()
		if len(ps) == 0 {
			t.Fatal("accepted with nothing to manage")
		}
		for _, p := range ps {
			if p.param != "pretty" && !validName(p.want) || strings.ContainsAny(p.want, "\n\x00") {
				t.Fatalf("accepted %s %q", p.param, p.want)
			}
		}
	})
}
