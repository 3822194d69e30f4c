package testhost

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
)

// InsideEnv is set, to a token, in the environment of a test binary that
// InHost runs inside a host; the same token is in the host's InsideMarker.
const InsideEnv = "MGMT_TESTHOST_INSIDE"

// InsideMarker is the file, in the host's own /run, that proves to the
// test binary it runs inside a host InHost started.
const InsideMarker = "/run/mgmt-testhost-inside"

// insideTimeout bounds one test's run inside a host.
const insideTimeout = 10 * time.Minute

// InHost runs the calling test or benchmark inside a test host, for code
// that must act on a machine's own files and tools (users and groups,
// mounts): every change it makes lands in the host's overlay.
//
// Outside a host it boots one, installs the running test binary in it,
// runs that one test (or benchmark, with the same b.N) there with -test.v,
// logs its output, passes on its failure, skip and benchmark metrics, and
// returns false: the caller returns at once. Inside it returns true, after
// checking that the token in its environment matches the host's
// InsideMarker, so that a stray MGMT_TESTHOST_INSIDE can never make a test
// change the real machine; the caller goes on with the test's body.
//
//	func TestUser(t *testing.T) {
//		if !testhost.InHost(t, testhost.Options{}) {
//			return
//		}
//		... // runs inside the host
//	}
func InHost(tb testing.TB, opts Options) bool {
	tb.Helper()
	if token := os.Getenv(InsideEnv); token != "" {
		b, err := os.ReadFile(InsideMarker)
		if err != nil || strings.TrimSpace(string(b)) != token || os.Getenv("container") != "mgmt-testhost" {
			tb.Fatalf("%s is set, but this is not a test host InHost started (%s: %v): refusing to run a test that changes the machine", InsideEnv, InsideMarker, err)
		}
		return true
	}
	h := StartT(tb, opts)
	exe, err := os.Executable()
	if err != nil {
		tb.Fatalf("testhost: InHost: the test binary: %v", err)
	}
	bin, err := h.InstallBinary(exe, filepath.Base(exe))
	if err != nil {
		tb.Fatal(err)
	}
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	if err := h.WriteFile(InsideMarker, []byte(token+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}

	argv := []string{bin, "-test.v", "-test.count=1", "-test.timeout=" + insideTimeout.String()}
	pattern := namePattern(tb.Name())
	b, isBench := tb.(*testing.B)
	if isBench {
		argv = append(argv, "-test.run=^$", "-test.bench="+pattern, "-test.benchmem", "-test.benchtime="+strconv.Itoa(b.N)+"x")
	} else {
		argv = append(argv, "-test.run="+pattern)
	}
	if testing.Short() {
		argv = append(argv, "-test.short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), insideTimeout+time.Minute)
	defer cancel()
	cmd := h.Command(ctx, argv...)
	cmd.Env = append(cmd.Env, InsideEnv+"="+token, "TMPDIR=/tmp")
	if v, ok := os.LookupEnv(skip.Env); ok {
		cmd.Env = append(cmd.Env, skip.Env+"="+v)
	}
	cmd.Dir = "/tmp"
	if isBench {
		b.StopTimer()
	}
	out, runErr := cmd.CombinedOutput()
	if isBench {
		b.StartTimer()
	}
	tb.Logf("inside host %s: %s\n%s", h.Name(), strings.Join(argv, " "), out)
	var ee *exec.ExitError
	switch {
	case runErr != nil && !errors.As(runErr, &ee):
		tb.Fatalf("testhost: InHost: running the test inside %s: %v", h.Name(), runErr)
	case runErr != nil:
		tb.Fatalf("the test failed inside host %s (%v)", h.Name(), runErr)
	}
	last := tb.Name()[strings.LastIndex(tb.Name(), "/")+1:]
	switch {
	case isBench:
		if !reportMetrics(b, out) {
			tb.Fatalf("no result line for %s in the output from inside the host", tb.Name())
		}
	case strings.Contains(string(out), "--- SKIP: "+tb.Name()):
		tb.Skipf("skipped inside host %s", h.Name())
	case !strings.Contains(string(out), "--- PASS: "+tb.Name()) && !strings.Contains(string(out), "--- PASS: "+last):
		tb.Fatalf("%s did not run inside host %s", tb.Name(), h.Name())
	}
	return false
}

// namePattern is the -test.run (or -test.bench) pattern that selects
// exactly the test name, subtests included.
func namePattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// reportMetrics finds the benchmark's result line ("BenchmarkX-2  3
// 1234 ns/op  5.0 repair-ms ...") and reports each of its metrics as the
// outer benchmark's, so that its ns/op is the inner one's, not the host's
// boot time.
func reportMetrics(b *testing.B, out []byte) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(b.Name()) + `(-\d+)?\s+\d+\s+(.*)$`)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			b.ReportMetric(v, f[i+1])
		}
		found = true
	}
	return found
}
