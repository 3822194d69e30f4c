package testrepo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuild builds the default set and checks every .deb with dpkg-deb and
// the index with what dpkg-scanpackages wrote.
func TestBuild(t *testing.T) {
	r := BuildT(t)
	idx, err := os.ReadFile(filepath.Join(r.Dir, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	stanzas := strings.Split(strings.TrimSpace(string(idx)), "\n\n")
	if len(stanzas) != len(Default()) {
		t.Fatalf("Packages has %d stanzas, want %d:\n%s", len(stanzas), len(Default()), idx)
	}
	for _, p := range r.Packages {
		deb := filepath.Join(r.Dir, p.Filename())
		info, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Version", "Depends").Output()
		if err != nil {
			t.Fatalf("dpkg-deb --field %s: %v", deb, err)
		}
		want := "Package: " + p.Name + "\nVersion: " + p.Version + "\n"
		if len(p.Depends) > 0 {
			want += "Depends: " + strings.Join(p.Depends, ", ") + "\n"
		}
		if string(info) != want {
			t.Errorf("%s fields:\n%s\nwant:\n%s", p.Filename(), info, want)
		}
		contents, err := exec.Command("dpkg-deb", "--contents", deb).Output()
		if err != nil {
			t.Fatalf("dpkg-deb --contents %s: %v", deb, err)
		}
		for _, f := range p.Files {
			if !strings.Contains(string(contents), "root/root") || !strings.Contains(string(contents), "."+f.Path+"\n") {
				t.Errorf("%s lacks %s owned by root:\n%s", p.Filename(), f.Path, contents)
			}
		}
		if !strings.Contains(string(idx), "Filename: ./"+p.Filename()+"\n") {
			t.Errorf("Packages does not index %s", p.Filename())
		}
	}
	conf, err := exec.Command("dpkg-deb", "--ctrl-tarfile", filepath.Join(r.Dir, Package{Name: PkgC, Version: "1.0"}.Filename())).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "/etc/mgmt-test-c.conf") {
		t.Errorf("%s: conffiles does not list /etc/mgmt-test-c.conf", PkgC)
	}
}
