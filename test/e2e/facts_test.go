package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestFactsCommand: `mgmt facts` prints the host's facts as indented JSON
// with every object's keys sorted, labels and --hostname included.
func TestFactsCommand(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "facts", "--hostname", "web1", "--label", "role=web", "--label", "note=a,b c")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mgmt facts: %v: %s", err, stderr.Bytes())
	}
	if !bytes.HasPrefix(out, []byte("{\n  \"addresses\": {\n")) || !bytes.HasSuffix(out, []byte("\n}\n")) {
		t.Errorf("not indented JSON, addresses first:\n%s", out)
	}
	checkSortedKeys(t, out)
	var f struct {
		Hostname    string
		CPUs        int    `json:"cpus"`
		MemoryBytes uint64 `json:"memory_bytes"`
		Version     string
		Labels      map[string]string
		OS          struct{ ID string }
	}
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	ver, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	wantVer := strings.TrimSpace(strings.TrimPrefix(string(ver), "mgmt version "))
	if f.Hostname != "web1" || f.CPUs != runtime.NumCPU() || f.MemoryBytes == 0 || f.OS.ID == "" || f.Version != wantVer ||
		len(f.Labels) != 2 || f.Labels["role"] != "web" || f.Labels["note"] != "a,b c" {
		t.Errorf("facts %+v; want hostname web1, %d cpus, memory, an OS id, version %q, the two labels", f, runtime.NumCPU(), wantVer)
	}

	out, err = exec.Command(bin, "facts").Output()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if err := json.Unmarshal(out, &f); err != nil || f.Hostname != host {
		t.Errorf("without --hostname: hostname %q, %v; want %q", f.Hostname, err, host)
	}
}

// checkSortedKeys fails unless every JSON object in doc has its keys in
// sorted order: the output is the same from run to run.
func checkSortedKeys(t *testing.T, doc []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			var keys []string
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, k.(string))
				if err := walk(); err != nil {
					return err
				}
			}
			if !slices.IsSorted(keys) {
				return fmt.Errorf("keys not sorted: %q", keys)
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil {
		t.Errorf("%v:\n%s", err, doc)
	}
}

// TestBadLabelsExit2: a bad or repeated --label is refused with exit 2 and
// a message naming it, by facts, validate and run alike (nothing is run).
func TestBadLabelsExit2(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, fmt.Sprintf("resources:\n  file:\n  - name: f\n    path: %s/should-not-exist\n    content: x\n", dir))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"facts", "--label", "role"}, `mgmt: --label: label "role": want KEY=VALUE, e.g. role=web`},
		{[]string{"facts", "--label", "ro le=web"}, `mgmt: --label: label "ro le=web": key has ' ' at byte 2;`},
		{[]string{"facts", "--label", "role=web", "--label", "role=db"}, `mgmt: --label: label "role=db": role given twice (first role=web)`},
		{[]string{"validate", "--file", g, "--label", "=web"}, `mgmt: --label: label "=web": empty key;`},
		{[]string{"run", "--file", g, "--converged-timeout=0", "--label", "x=\x01"}, `mgmt: --label: label "x=\x01": value has unprintable U+0001`},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if code := exitCode(err); code != 2 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("mgmt %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
	if _, err := os.Stat(dir + "/should-not-exist"); err == nil {
		t.Error("run applied a graph despite a bad --label")
	}
	// Good labels are accepted by validate and run.
	if out, err := exec.Command(bin, "validate", "--file", g, "--label", "role=web").CombinedOutput(); err != nil {
		t.Errorf("validate --label role=web: %v: %s", err, out)
	}
	if out, err := exec.Command(bin, "run", "--file", g, "--converged-timeout=0", "--prefix", dir, "--label", "role=web").CombinedOutput(); err != nil {
		t.Errorf("run --label role=web: %v: %s", err, out)
	}
}
