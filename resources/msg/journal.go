package msg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/syslog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// journalSocket is journald's native protocol socket; tests point it at
// their own.
var journalSocket = "/run/systemd/journal/socket"

// encodeJournal renders one entry in journald's native format: NAME=value
// lines, and for a value with a newline NAME, a newline, its length as a
// little-endian uint64, the value and a newline.
func encodeJournal(body string, prio int, fields map[string]string) []byte {
	var b bytes.Buffer
	put := func(k, v string) {
		if !strings.Contains(v, "\n") {
			b.WriteString(k + "=" + v + "\n")
			return
		}
		b.WriteString(k + "\n")
		_ = binary.Write(&b, binary.LittleEndian, uint64(len(v)))
		b.WriteString(v + "\n")
	}
	put("MESSAGE", body)
	put("PRIORITY", strconv.Itoa(prio))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		put(k, fields[k])
	}
	return b.Bytes()
}

// sendJournal sends one entry to journald as one datagram; one too large
// for a datagram goes in a sealed memfd passed along instead, as journald
// expects.
func sendJournal(body string, prio int, fields map[string]string) error {
	data := encodeJournal(body, prio, fields)
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: journalSocket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("msg: journal: %w", err)
	}
	defer conn.Close()
	_, err = conn.Write(data)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EMSGSIZE) && !errors.Is(err, unix.ENOBUFS) {
		return fmt.Errorf("msg: journal: %w", err)
	}
	fd, err := unix.MemfdCreate("mgmt-msg", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("msg: journal: a large entry: %w", err)
	}
	defer unix.Close(fd)
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:])
		if err != nil {
			return fmt.Errorf("msg: journal: a large entry: %w", err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("msg: journal: sealing a large entry: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("msg: journal: %w", err)
	}
	var serr error
	if err := raw.Write(func(s uintptr) bool {
		serr = unix.Sendmsg(int(s), nil, unix.UnixRights(fd), nil, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		serr = err
	}
	if serr != nil {
		return fmt.Errorf("msg: journal: a large entry: %w", serr)
	}
	return nil
}

// sendSyslog sends the body to the local syslog socket (/dev/log), facility
// daemon, tag mgmt.
func sendSyslog(body string, prio int) error {
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.Priority(prio), "mgmt")
	if err != nil {
		return fmt.Errorf("msg: syslog: %w", err)
	}
	defer w.Close()
	if _, err := w.Write([]byte(body)); err != nil {
		return fmt.Errorf("msg: syslog: %w", err)
	}
	return nil
}
