package msg

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/resources/timer"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/yamlgraph"
	"golang.org/x/sys/unix"
)

// pkgDir is this package's source directory, which a test host sees at the
// same path (its root is an overlay of the real one), though tests run
// there in /tmp.
var pkgDir = func() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Dir(f)
}()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		res  *Msg
		want string
	}{
		{&Msg{Priority: "loud"}, `priority: "loud" is invalid`},
		{&Msg{Fields: map[string]string{"_PID": "1"}}, `fields: "_PID" is invalid`},
		{&Msg{Fields: map[string]string{"1X": "1"}}, `fields: "1X" is invalid`},
		{&Msg{Fields: map[string]string{"a-b": "1"}}, `fields: "a-b" is invalid`},
		{&Msg{Fields: map[string]string{"message": "x"}}, "is set by body or priority"},
		{&Msg{Fields: map[string]string{"role": "a", "ROLE": "b"}}, `"ROLE" given twice`},
		{&Msg{Body: "a\x00b"}, "NUL"},
	} {
		if err := c.res.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("body %q priority %q fields %v: %v, want an error containing %q", c.res.Body, c.res.Priority, c.res.Fields, err, c.want)
		}
	}
	for name, want := range map[string]int{"": 5, "Emerg": 0, "Err": 3, "Warning": 4, "Info": 6, "debug": 7, "error": 3} {
		r := &Msg{Priority: name, Fields: map[string]string{"role": "x"}}
		must(t, r.Validate())
		if r.prio != want || r.flds["ROLE"] != "x" {
			t.Errorf("priority %q: %d, fields %v; want %d and ROLE", name, r.prio, r.flds, want)
		}
	}
}

// fakeJournal listens where sendJournal sends and decodes each entry,
// datagram or memfd, as journald does.
func fakeJournal(t testing.TB) <-chan map[string]string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	must(t, err)
	must(t, conn.SetReadBuffer(1<<20))
	old := journalSocket
	journalSocket = p
	entries := make(chan map[string]string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 1<<20), make([]byte, 64)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			data := buf[:n]
			if oobn > 0 {
				msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
				fds, _ := unix.ParseUnixRights(&msgs[0])
				f := os.NewFile(uintptr(fds[0]), "memfd")
				st, _ := f.Stat()
				data = make([]byte, st.Size())
				_, _ = f.ReadAt(data, 0)
				f.Close()
			}
			entries <- decode(t, data)
		}
	}()
	t.Cleanup(func() {
		journalSocket = old
		conn.Close()
		<-done
	})
	return entries
}

// decode parses journald's native format.
func decode(t testing.TB, b []byte) map[string]string {
	m := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i < 0 {
			t.Errorf("bad entry tail %q", b)
			return m
		}
		k := string(b[:i])
		if b[i] == '=' {
			j := bytes.IndexByte(b, '\n')
			m[k] = string(b[i+1 : j])
			b = b[j+1:]
			continue
		}
		n := binary.LittleEndian.Uint64(b[i+1:])
		m[k] = string(b[i+9 : i+9+int(n)])
		b = b[i+9+int(n)+1:]
	}
	return m
}

func next(t testing.TB, c <-chan map[string]string) map[string]string {
	t.Helper()
	select {
	case e := <-c:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no journal entry")
		return nil
	}
}

// TestJournalProtocol: entries decode as journald would read them: a
// multi-line body with its length, the priority, the fields upper-cased,
// and an entry too large for a datagram passed as a sealed memfd.
func TestJournalProtocol(t *testing.T) {
	entries := fakeJournal(t)
	r := &Msg{Body: "line one\nline two", Priority: "Warning", Fields: map[string]string{"role": "web", "SYSLOG_IDENTIFIER": "app"}, Journal: true}
	r.SetName("m")
	must(t, r.Validate())
	changed, err := r.Refresh(t.Context())
	must(t, err)
	e := next(t, entries)
	want := map[string]string{"MESSAGE": "line one\nline two", "PRIORITY": "4", "ROLE": "web", "SYSLOG_IDENTIFIER": "app", "MGMT_RESOURCE": "msg[m]"}
	if !changed || len(e) != len(want) {
		t.Fatalf("changed %v, entry %q; want %q", changed, e, want)
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s=%q, want %q", k, e[k], v)
		}
	}

	big := strings.Repeat("x", 600<<10) // more than a unix datagram may carry
	r = &Msg{Body: big, Journal: true}
	must(t, r.Validate())
	_, err = r.Refresh(t.Context())
	must(t, err)
	if e := next(t, entries); e["MESSAGE"] != big || e["PRIORITY"] != "5" {
		t.Fatalf("large entry: %d bytes of MESSAGE, PRIORITY %q", len(e["MESSAGE"]), e["PRIORITY"])
	}
}

type recorder []engine.Change

func (r *recorder) Record(c engine.Change) { *r = append(*r, c) }

// TestConformance: the shared suite with the journal's entries as the
// state: noop sends nothing and reports the message, the first apply
// sends it once, later checks have nothing to do. Then each refresh sends
// it again and reports it.
func TestConformance(t *testing.T) {
	entries := fakeJournal(t)
	var got []string
	state := func(t *testing.T) string {
		for {
			select {
			case e := <-entries:
				got = append(got, e["MESSAGE"])
			case <-time.After(50 * time.Millisecond):
				return strings.Join(got, "|")
			}
		}
	}
	r := &Msg{Body: "hello", Journal: true}
	restest.Run(t, restest.Case{
		Kind:  "msg",
		Res:   func(t *testing.T) engine.Res { return r },
		State: state,
	})
	var rec recorder
	for i := range 2 {
		changed, err := r.Refresh(engine.WithRecorder(t.Context(), &rec))
		must(t, err)
		if !changed {
			t.Fatal("Refresh reported no change")
		}
		if s := state(t); s != strings.Repeat("hello|", i+1)+"hello" {
			t.Fatalf("after refresh %d the journal has %q", i+1, s)
		}
	}
	want := engine.Change{Property: "message", To: "hello", Why: "refreshed by an edge: to journal+log"}
	if len(rec) != 2 || rec[0] != want {
		t.Fatalf("reported %+v, want twice %+v", rec, want)
	}
	if changed, err := r.CheckApply(t.Context(), true); err != nil || changed {
		t.Fatalf("CheckApply after refreshes: %v, %v: want nothing to do", changed, err)
	}
}

// journalEntries reads the host's journal entries of a resource.
func journalEntries(t testing.TB, res string) []map[string]any {
	t.Helper()
	out, err := exec.Command("journalctl", "--no-pager", "-o", "json", "MGMT_RESOURCE="+res).Output()
	must(t, err)
	var es []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		var e map[string]any
		must(t, json.Unmarshal([]byte(l), &e))
		es = append(es, e)
	}
	return es
}

// waitEntries waits until the journal holds at least n entries of res.
func waitEntries(t testing.TB, res string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		es := journalEntries(t, res)
		if len(es) >= n {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d journal entries of %s, want %d", len(es), res, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// observer counts the timer's firings that reached the msg: a check of the
// msg after the timer changed.
type observer struct {
	fired  atomic.Int32 // timer checks that reported a change
	msgged chan int32   // the firings counted when a msg check ended
}

func (o *observer) Checked(kind string, changed bool, err error, took time.Duration) {
	switch kind {
	case "timer":
		if changed {
			o.fired.Add(1)
		}
	case "msg":
		select {
		case o.msgged <- o.fired.Load():
		default:
		}
	}
}

func (o *observer) Converged(bool) {}

// waitFirings waits until the msg has been checked after n firings.
func (o *observer) waitFirings(t testing.TB, n int32) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case f := <-o.msgged:
			if f >= n {
				return
			}
		case <-deadline:
			t.Fatalf("the msg was not checked after %d firings of the timer", n)
		}
	}
}

// runGraph runs a graph file in the engine until ctx ends, the timer's
// interval shortened.
func runGraph(t *testing.T, ctx context.Context, path string, interval float64, o *observer) (done <-chan error) {
	t.Helper()
	yg, err := yamlgraph.ParseFile(path)
	must(t, err)
	for _, v := range yg.Vertices {
		if tr, ok := v.Res.(*timer.Timer); ok {
			tr.Interval = interval
		}
	}
	g, err := engine.Compile(ctx, &yg.Decl, restest.Logger(t))
	must(t, err)
	e := engine.New(engine.Config{Hostname: "h", Prefix: t.TempDir(), Logger: restest.Logger(t), ConvergedTimeout: -1, Observer: o})
	c := make(chan error, 1)
	go func() { c <- e.Run(ctx, g) }()
	return c
}

// TestInHost: inside a test host, the example graph (a timer notifying a
// msg) puts its message, with its fields, in the host's real journal once
// at start and at each firing, and through syslog (/dev/log, journald's
// syslog socket there); the original's graph shape sends once.
func TestInHost(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := runGraph(t, ctx, filepath.Join(pkgDir, "../../examples/msg1.yaml"), 0.5, &observer{msgged: make(chan int32, 1)})
	es := waitEntries(t, "msg[heartbeat]", 3)
	cancel()
	must(t, <-done)
	e := es[0]
	for k, v := range map[string]string{"MESSAGE": "mgmt is alive on this host", "PRIORITY": "6", "MGMT_ROLE": "heartbeat", "SITE": "lab", "SYSLOG_IDENTIFIER": "mgmt"} {
		if e[k] != v {
			t.Errorf("journal entry %s=%v, want %q", k, e[k], v)
		}
	}
	out, err := exec.Command("journalctl", "--no-pager", "-o", "cat", "SYSLOG_FACILITY=3", "SYSLOG_IDENTIFIER=mgmt").Output()
	must(t, err)
	if n := strings.Count(string(out), "mgmt is alive on this host"); n < 1 {
		t.Errorf("no syslog message in the journal:\n%s", out)
	}

	ctx, cancel = context.WithCancel(t.Context())
	o := &observer{msgged: make(chan int32, 1)}
	done = runGraph(t, ctx, filepath.Join(pkgDir, "testdata/original-shape.yaml"), 0.2, o)
	waitEntries(t, "msg[m]", 1)
	o.waitFirings(t, 3) // the msg checked after three firings: none may send (no notify edge)
	cancel()
	must(t, <-done)
	if es := journalEntries(t, "msg[m]"); len(es) != 1 || es[0]["MESSAGE"] != "the original's msg graph ran" {
		t.Errorf("the original's graph: %d entries: %v", len(es), es)
	}
}

// BenchmarkRefreshLatency: a msg has no drift to repair; what it has is
// the time from a refresh to its entry at the journal socket.
func BenchmarkRefreshLatency(b *testing.B) {
	entries := fakeJournal(b)
	r := &Msg{Body: "bench", Journal: true, Fields: map[string]string{"ROLE": "bench"}}
	must(b, r.Validate())
	var lat []time.Duration
	for b.Loop() {
		at := time.Now()
		_, err := r.Refresh(context.Background())
		must(b, err)
		next(b, entries)
		lat = append(lat, time.Since(at))
	}
	restest.ReportLatency(b, lat)
}
