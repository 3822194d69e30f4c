//go:build mgmt_gendocs

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gendocs writes a page for every command users see, from the flag
// definitions themselves, and leaves itself (hidden) out.
func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if code, out := capture(t, "gendocs", "--dir", dir); code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, name := range []string{"mgmt", "mgmt-run", "mgmt-validate", "mgmt-facts", "mgmt-deploy", "mgmt-completion-bash"} {
		if _, err := os.Stat(filepath.Join(dir, name+".1")); err != nil {
			t.Errorf("no page for %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mgmt-gendocs.1")); err == nil {
		t.Error("a page for the hidden gendocs command")
	}
	page, err := os.ReadFile(filepath.Join(dir, "mgmt-run.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"converged-timeout", "exit once the graph has been converged", `"Nov 2023"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("mgmt-run.1 lacks %q", want)
		}
	}
	if strings.Contains(string(page), "Auto generated") {
		t.Error("mgmt-run.1 has cobra's dated auto-generated line")
	}
}
