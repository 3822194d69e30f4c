package facts

import (
	"errors"
	"strings"
	"testing"
)

func TestParseLabel(t *testing.T) {
	for _, tc := range []struct {
		arg, key, value, err string
	}{
		{"role=web", "role", "web", ""},
		{"app.kubernetes.io/name=my app", "app.kubernetes.io/name", "my app", ""},
		{"a=b=c", "a", "b=c", ""},
		{"empty=", "empty", "", ""},
		{"Zone_2=eu-west-1", "Zone_2", "eu-west-1", ""},
		{"x=héllo wörld", "x", "héllo wörld", ""},
		{strings.Repeat("k", 63) + "=v", strings.Repeat("k", 63), "v", ""},
		{"k=" + strings.Repeat("v", 255), "k", strings.Repeat("v", 255), ""},

		{"role", "", "", `label "role": want KEY=VALUE, e.g. role=web`},
		{"=web", "", "", `label "=web": empty key; a key is 1 to 63`},
		{"ro le=web", "", "", `label "ro le=web": key has ' ' at byte 2;`},
		{"rôle=web", "", "", `label "rôle=web": key has 'ô' at byte 1;`},
		{"-role=web", "", "", `key starts with '-';`},
		{"role.=web", "", "", `key ends with '.';`},
		{strings.Repeat("k", 64) + "=v", "", "", `key is 64 bytes;`},
		{"k=" + strings.Repeat("v", 256), "", "", `value is 256 bytes; at most 255`},
		{"k=a\tb", "", "", `value has unprintable U+0009 at byte 1`},
		{"k=a\nb", "", "", `value has unprintable U+000A at byte 1`},
		{"k=\xff", "", "", `value is not valid UTF-8`},
	} {
		k, v, err := ParseLabel(tc.arg)
		if tc.err == "" {
			if err != nil || k != tc.key || v != tc.value {
				t.Errorf("ParseLabel(%q) = %q, %q, %v; want %q, %q", tc.arg, k, v, err, tc.key, tc.value)
			}
			continue
		}
		var le *LabelError
		if !errors.As(err, &le) || le.Arg != tc.arg || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseLabel(%q): err %v; want a *LabelError with %q", tc.arg, err, tc.err)
		}
	}
}

func TestParseLabels(t *testing.T) {
	m, err := ParseLabels([]string{"role=web", "zone=eu", "note=a,b"})
	if err != nil || len(m) != 3 || m["role"] != "web" || m["zone"] != "eu" || m["note"] != "a,b" {
		t.Errorf("got %v, %v", m, err)
	}
	if m, err := ParseLabels(nil); err != nil || m == nil || len(m) != 0 {
		t.Errorf("none: %v, %v; want an empty map", m, err)
	}
	_, err = ParseLabels([]string{"role=web", "zone=eu", "role=db"})
	const want = `label "role=db": role given twice (first role=web)`
	if err == nil || err.Error() != want {
		t.Errorf("duplicate: %v; want %s", err, want)
	}
	if _, err := ParseLabels([]string{"role=web", "role=web"}); err == nil {
		t.Error("the same pair twice: accepted")
	}
}
