package file

import (
	"strings"
	"testing"
)

// A NUL byte would end the name the system lookup sees: "root\x00x" must
// not pass as root.
func TestOwnerWithNULRefused(t *testing.T) {
	for _, r := range []*File{
		{Path: "/tmp/x", Owner: "root\x00x"},
		{Path: "/tmp/x", GroupName: "root\x00x"},
	} {
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "NUL") {
			t.Fatalf("owner %q group %q: %v", r.Owner, r.GroupName, err)
		}
	}
}
