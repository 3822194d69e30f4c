// Package logjournal is a log/slog handler that writes each record to the
// systemd journal through its native socket, with the resource (res=) as
// a field of its own, when standard error is the journal.
package logjournal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Socket is where journald receives native-protocol datagrams.
const Socket = "/run/systemd/journal/socket"

// Identifier is the SYSLOG_IDENTIFIER of every entry (journalctl -t mgmt).
const Identifier = "mgmt"

// Stderr returns the handler for the agent's log: a journal Handler when
// standard error is connected to the journal (systemd says so in
// JOURNAL_STREAM) and its socket can be reached, else slog's text handler
// on standard error.
func Stderr(opts *slog.HandlerOptions) slog.Handler {
	if isJournal(os.Getenv("JOURNAL_STREAM"), os.Stderr) {
		if h, err := New(Socket, os.Stderr, opts); err == nil {
			return h
		}
	}
	return slog.NewTextHandler(os.Stderr, opts)
}

// isJournal: JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd
// connected to the service's stdout and stderr; it is inherited by
// children whose stderr may be elsewhere, hence the comparison.
func isJournal(env string, f *os.File) bool {
	devS, inoS, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Handler sends records to journald. MESSAGE holds the record as slog's
// text handler would write it, without time and level (the journal has
// both: its timestamp and PRIORITY); RES holds the top-level "res"
// attribute, so that `journalctl RES=file[motd]` finds one resource's
// lines.
type Handler struct {
	c    *conn
	text slog.Handler // formats MESSAGE into c.buf
	res  string       // "res" given to WithAttrs, if any
	// grouped: a WithGroup came first, so later attributes are not
	// top-level and none of them is the resource.
	grouped bool
}

// conn is shared by a Handler and those derived from it.
type conn struct {
	fd       int
	addr     *unix.SockaddrUnix
	fallback io.Writer // where a record goes when journald cannot take it

	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

// New returns a Handler sending to the journal socket at path (Socket);
// a record that cannot be sent is written as a text line to fallback.
func New(path string, fallback io.Writer, opts *slog.HandlerOptions) (*Handler, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("logjournal: socket: %w", err)
	}
	c := &conn{fd: fd, addr: &unix.SockaddrUnix{Name: path}, fallback: fallback}
	// Probe once, so that Stderr falls back to text where there is no
	// journald (an empty datagram is ignored by it).
	if err := unix.Sendmsg(fd, nil, nil, c.addr, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("logjournal: %s: %w", path, err)
	}
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	user := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		if user != nil {
			return user(groups, a)
		}
		return a
	}
	return &Handler{c: c, text: slog.NewTextHandler(&c.buf, &o)}, nil
}

// Enabled reports whether the level is logged.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

// WithAttrs returns a Handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.text = h.text.WithAttrs(attrs)
	if !h.grouped {
		if r, ok := findRes(attrs); ok {
			h2.res = r
		}
	}
	return &h2
}

// WithGroup returns a Handler that puts later attributes in a group.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.text = h.text.WithGroup(name)
	h2.grouped = true
	return &h2
}

func findRes(attrs []slog.Attr) (string, bool) {
	for _, a := range attrs {
		if a.Key == "res" {
			return a.Value.Resolve().String(), true
		}
	}
	return "", false
}

// Handle sends one record as one journal entry.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	res := h.res
	if !h.grouped {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "res" {
				res = a.Value.Resolve().String()
				return false
			}
			return true
		})
	}
	c := h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Reset()
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	line := c.buf.Bytes()
	msg := bytes.TrimSuffix(line, []byte("\n"))
	var e []byte
	e = field(e, "MESSAGE", msg)
	e = field(e, "PRIORITY", []byte(strconv.Itoa(priority(r.Level))))
	e = field(e, "SYSLOG_IDENTIFIER", []byte(Identifier))
	if res != "" {
		e = field(e, "RES", []byte(res))
	}
	if err := c.send(e); err != nil {
		// Lose no line: standard error is the journal's stream anyway.
		_, werr := fmt.Fprintf(c.fallback, "level=%s %s", r.Level, line)
		return errors.Join(err, werr)
	}
	return nil
}

// field appends one field in the native format: KEY=VALUE\n, or, for a
// value with a newline, KEY\n, its length as 64-bit little endian, the
// value and \n.
func field(b []byte, key string, val []byte) []byte {
	if bytes.IndexByte(val, '\n') < 0 {
		b = append(b, key...)
		b = append(b, '=')
		b = append(b, val...)
		return append(b, '\n')
	}
	b = append(b, key...)
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(val)))
	b = append(b, val...)
	return append(b, '\n')
}

// priority maps slog levels to syslog priorities.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	default:
		return 7 // debug
	}
}

// send writes an entry as one datagram, or, when it is larger than a
// datagram may be, through a sealed memfd passed over the socket (as
// journald requires for large entries).
func (c *conn) send(e []byte) error {
	err := unix.Sendmsg(c.fd, e, nil, c.addr, 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EMSGSIZE) && !errors.Is(err, unix.ENOBUFS) {
		return fmt.Errorf("logjournal: send: %w", err)
	}
	fd, err := unix.MemfdCreate("mgmt-journal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("logjournal: memfd: %w", err)
	}
	defer unix.Close(fd)
	for rest := e; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			return fmt.Errorf("logjournal: memfd: %w", err)
		}
		rest = rest[n:]
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("logjournal: memfd seals: %w", err)
	}
	if err := unix.Sendmsg(c.fd, nil, unix.UnixRights(fd), c.addr, 0); err != nil {
		return fmt.Errorf("logjournal: send memfd: %w", err)
	}
	return nil
}
