package exec

import (
	"strings"
	"testing"
)

// A NUL byte would end the name the system lookup sees: "root\x00x" must
// not pass as root.
func TestUserWithNULRefused(t *testing.T) {
	for _, x := range []*Exec{
		{Cmd: "true", User: "root\x00x"},
		{Cmd: "true", Group: "root\x00x"},
	} {
		if err := x.Validate(); err == nil || !strings.Contains(err.Error(), "NUL") {
			t.Fatalf("user %q group %q: %v", x.User, x.Group, err)
		}
	}
}
