package logjournal

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeJournal listens where the handler sends and returns each entry's
// fields, reading the memfd of a large one as journald does.
func fakeJournal(t *testing.T) (string, func() map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	next := func() map[string]string {
		t.Helper()
		buf, oob := make([]byte, 1<<20), make([]byte, 64)
		for {
			l.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, oobn, _, _, err := l.ReadMsgUnix(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			data := buf[:n]
			if oobn > 0 {
				data = readMemfd(t, oob[:oobn])
			}
			if len(data) == 0 {
				continue // New's probe
			}
			return parse(t, data)
		}
	}
	return path, next
}

func readMemfd(t *testing.T, oob []byte) []byte {
	t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control message: %v %d", err, len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v %v", err, fds)
	}
	f := os.NewFile(uintptr(fds[0]), "memfd")
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 {
		t.Fatalf("memfd not sealed: %#x %v", seals, err)
	}
	// From the start, as journald maps it: the sender's writes left the
	// shared offset at the end.
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// parse reads the native format, both of its forms.
func parse(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i < 0 {
			t.Fatalf("truncated entry: %q", b)
		}
		key := string(b[:i])
		if b[i] == '=' {
			end := bytes.IndexByte(b, '\n')
			m[key] = string(b[i+1 : end])
			b = b[end+1:]
			continue
		}
		n := binary.LittleEndian.Uint64(b[i+1 : i+9])
		m[key] = string(b[i+9 : i+9+int(n)])
		if b[i+9+int(n)] != '\n' {
			t.Fatalf("field %s not ended by a newline", key)
		}
		b = b[i+10+int(n):]
	}
	return m
}

func TestFields(t *testing.T) {
	path, next := fakeJournal(t)
	var fallback bytes.Buffer
	h, err := New(path, &fallback, &slog.HandlerOptions{Level: slog.LevelInfo})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h)

	log.With("res", "file[motd]").Info("file written", "path", "/etc/motd")
	e := next()
	if want := `msg="file written" res=file[motd] path=/etc/motd`; e["MESSAGE"] != want {
		t.Errorf("MESSAGE %q, want %q", e["MESSAGE"], want)
	}
	if e["RES"] != "file[motd]" || e["PRIORITY"] != "6" || e["SYSLOG_IDENTIFIER"] != "mgmt" {
		t.Errorf("fields %v", e)
	}

	// res in the record itself; a multi-line value (the binary form).
	log.Error("failed", "res", "exec[x]", "out", "line 1\nline 2")
	e = next()
	if e["RES"] != "exec[x]" || e["PRIORITY"] != "3" || !strings.Contains(e["MESSAGE"], `out="line 1\nline 2"`) {
		t.Errorf("fields %v", e)
	}
	// A newline in the message itself takes the binary form.
	log.Warn("two\nlines")
	if e = next(); e["MESSAGE"] != `msg="two\nlines"` || e["PRIORITY"] != "4" {
		t.Errorf("fields %v", e)
	}
	if _, ok := e["RES"]; ok {
		t.Errorf("RES without a resource: %v", e)
	}

	// res inside a group is not the resource.
	log.WithGroup("g").With("res", "nope").Info("grouped")
	if e = next(); e["RES"] != "" || e["MESSAGE"] != `msg=grouped g.res=nope` {
		t.Errorf("grouped: %v", e)
	}

	log.Debug("not logged")
	log.Info("after")
	if e = next(); e["MESSAGE"] != "msg=after" {
		t.Errorf("debug record sent: %v", e)
	}

	// Larger than a datagram may be: through a memfd.
	big := strings.Repeat("x", 4<<20)
	log.Info("big", "res", "exec[big]", "out", big)
	if e = next(); e["RES"] != "exec[big]" || len(e["MESSAGE"]) < len(big) {
		t.Errorf("big entry: RES %q, MESSAGE of %d bytes", e["RES"], len(e["MESSAGE"]))
	}
	if fallback.Len() != 0 {
		t.Errorf("fallback used: %q", fallback.String())
	}
}

// A record journald does not take goes to the fallback, whole.
func TestFallback(t *testing.T) {
	path, _ := fakeJournal(t)
	var fallback bytes.Buffer
	h, err := New(path, &fallback, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path) // journald gone
	slog.New(h).Info("lost?", "res", "file[f]")
	if got, want := fallback.String(), "level=INFO msg=lost? res=file[f]\n"; got != want {
		t.Errorf("fallback %q, want %q", got, want)
	}
}

func TestNewWithoutJournal(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "none"), os.Stderr, nil); err == nil {
		t.Fatal("New succeeded with no socket")
	}
}

func TestIsJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	dev, ino := strconv.FormatUint(uint64(st.Dev), 10), strconv.FormatUint(st.Ino, 10)
	for env, want := range map[string]bool{
		dev + ":" + ino: true,
		dev + ":" + strconv.FormatUint(st.Ino+1, 10): false, // inherited, stderr elsewhere
		"":    false,
		"1:x": false,
	} {
		if got := isJournal(env, f); got != want {
			t.Errorf("isJournal(%q) = %v, want %v", env, got, want)
		}
	}
}
