package user

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
)

// mgmtBin is the mgmt binary, built once for the package's tests into a
// directory TestMain removes.
var mgmtBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mgmtBin.dir != "" {
		os.RemoveAll(mgmtBin.dir)
	}
	os.Exit(code)
}

func buildMgmt() (string, error) {
	mgmtBin.once.Do(func() {
		if mgmtBin.dir, mgmtBin.err = os.MkdirTemp("", "mgmt-user-test-"); mgmtBin.err != nil {
			return
		}
		mgmtBin.path = filepath.Join(mgmtBin.dir, "mgmt")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", mgmtBin.path, testhost.MgmtPackage).CombinedOutput(); err != nil {
			mgmtBin.err = fmt.Errorf("go build %s: %w\n%s", testhost.MgmtPackage, err, out)
		}
	})
	return mgmtBin.path, mgmtBin.err
}

// runMgmt runs the mgmt binary inside a new host on the graph until it
// converges (--converged-timeout=1) and returns the host and mgmt's log.
// mgmt must exit 0: every resource converged, none failed.
func runMgmt(t *testing.T, graph []byte) (*testhost.Host, string) {
	t.Helper()
	h := testhost.StartT(t, testhost.Options{})
	bin, err := buildMgmt()
	if err != nil {
		t.Fatal(err)
	}
	mgmt, err := h.InstallBinary(bin, "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile("/root/graph.yaml", graph, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := h.Run(ctx, mgmt, "run", "--file", "/root/graph.yaml", "--converged-timeout", "1")
	if err != nil {
		t.Fatalf("mgmt: %v\n%s", err, out)
	}
	return h, string(out)
}

func getent(t *testing.T, h *testhost.Host, db, key string) string {
	t.Helper()
	out, err := h.Run(context.Background(), "getent", db, key)
	if err != nil {
		t.Fatalf("getent %s %s: %v", db, key, err)
	}
	return strings.TrimSpace(string(out))
}

// The examples, among them the original mgmt's (a user with uid and gid, a
// group with a gid), run unchanged by the mgmt binary inside a host and
// converge.
func TestExamples(t *testing.T) {
	testhost.Require(t)
	want := map[string][]string{
		"user1.yaml":          {"passwd testuser testuser:x:1002:100::/home/testuser:/bin/sh"},
		"group1.yaml":         {"group testgroup testgroup:x:1234:"},
		"user2-accounts.yaml": {"passwd alice alice:x:2001:2001:Alice Example:/home/alice:/bin/bash", "group deploy deploy:x:", "group developers developers:x:2001:"},
	}
	for name, lines := range want {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../../examples", name))
			if err != nil {
				t.Fatal(err)
			}
			h, _ := runMgmt(t, data)
			for _, l := range lines {
				f := strings.SplitN(l, " ", 3)
				if got := getent(t, h, f[0], f[1]); !strings.HasPrefix(got, f[2]) {
					t.Errorf("getent %s %s = %q, want %q...", f[0], f[1], got, f[2])
				}
			}
		})
	}
}

// A graph that creates a user and a file it owns converges in one run:
// the file's owner is resolved when it is applied, after the user (an
// automatic edge), not refused when the graph is parsed, and no check
// fails on the way.
func TestUserAndOwnedFileOneRun(t *testing.T) {
	testhost.Require(t)
	data, err := os.ReadFile("../../examples/user2-accounts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h, log := runMgmt(t, data)
	if strings.Contains(log, "unknown on this host") || strings.Contains(log, "level=ERROR") {
		t.Errorf("a check failed on the way:\n%s", log)
	}
	out, err := h.Run(context.Background(), "stat", "-c", "%U:%G %a", "/home/alice/notes.txt", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "alice:developers 640\nalice:developers 700\nalice:developers 600\n"; got != want {
		t.Errorf("owners and modes:\n%s\nwant\n%s\nmgmt's log:\n%s", got, want, log)
	}
	// alice and ci are added side by side: the order of the members is
	// theirs, the set is the graph's.
	got := strings.TrimSpace(getent(t, h, "group", "deploy"))
	members := strings.Split(got[strings.LastIndex(got, ":")+1:], ",")
	slices.Sort(members)
	if strings.Join(members, ",") != "alice,ci" {
		t.Errorf("deploy = %q, want members alice and ci", got)
	}
}
