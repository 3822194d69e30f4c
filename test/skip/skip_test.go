package skip

import (
	"fmt"
	"strings"
	"testing"
)

// fakeTB records what OrFail does instead of ending the test.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }
func (f *fakeTB) Skip(args ...any)                  { f.skip = args[0].(string) }

func TestOrFail(t *testing.T) {
	for _, tt := range []struct {
		env        string
		fail, skip bool
	}{
		{"", false, true},
		{"0", false, true},
		{"1", true, false},
	} {
		t.Setenv(Env, tt.env)
		f := &fakeTB{}
		OrFail(f, "no %s", "dot")
		if (f.fatal != "") != tt.fail || (f.skip != "") != tt.skip {
			t.Errorf("%s=%q: fatal %q, skip %q; want fail %v, skip %v", Env, tt.env, f.fatal, f.skip, tt.fail, tt.skip)
		}
		if tt.skip && f.skip != "no dot" {
			t.Errorf("skip message %q, want %q", f.skip, "no dot")
		}
		if tt.fail && !strings.Contains(f.fatal, Env) {
			t.Errorf("failure %q does not name %s", f.fatal, Env)
		}
	}
}
