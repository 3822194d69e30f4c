package mount

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts is an absolute mountpoint other than / whose fstab entry is one
// line of six fields, found again by a second edit (idempotent).
func FuzzValidate(f *testing.F) {
	f.Add("/mnt/x", "tmpfs", "tmpfs", "nosuid,size=8m", "", "")
	f.Add("/mnt/x", "", "", "", "absent", "tmpfs /mnt/x tmpfs defaults 0 0\n")
	f.Add("/", "a b", "x\n", ",,", "exists", "#\n")
	f.Fuzz(func(t *testing.T, mp, device, typ, opts, state, fstab string) {
		r := &Mount{Mountpoint: mp, Device: device, Type: typ, State: state}
		for _, o := range strings.Split(opts, ",") {
			r.Options = append(r.Options, o)
		}
		if opts == "" {
			r.Options = nil
		}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		if !filepath.IsAbs(r.mp) || r.mp == "/" || filepath.Clean(r.mp) != r.mp {
			t.Fatalf("accepted mountpoint %q as %q", mp, r.mp)
		}
		if r.state() != StateAbsent && len(strings.Fields(r.fstabLine())) != 6 {
			t.Fatalf("fstab line %q", r.fstabLine())
		}
		edited, c := r.editFstab([]byte(fstab))
		if c == nil {
			return
		}
		if _, again := r.editFstab(edited); again != nil {
			t.Fatalf("fstab %q edited to %q, then again (%+v)", fstab, edited, again)
		}
	})
}
