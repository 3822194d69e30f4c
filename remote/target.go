// Package remote runs mgmt on hosts reached over SSH: it copies the binary
// and a bundle there, runs `mgmt run` on the target, streams its log back,
// fetches the report and removes what it copied.
package remote

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// ErrTarget is a --remote address or hosts-file line that cannot be used.
var ErrTarget = errors.New("bad remote target")

// Target is one host to run on: ssh://user@host[:port].
type Target struct {
	User string
	Host string
	Port int
}

// Name is how the host is named in log prefixes, report files and the
// summary: the host as given, with the port when it is not 22.
func (t Target) Name() string {
	if t.Port == 22 {
		return t.Host
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// Addr is the host:port to dial.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t Target) String() string { return "ssh://" + t.User + "@" + t.Addr() }

// ParseTarget reads ssh://user@host[:port]; "user@host" and "host" are
// taken too. The user defaults to defUser.
func ParseTarget(s, defUser string) (Target, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		raw = "ssh://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %w", ErrTarget, s, err)
	}
	if u.Scheme != "ssh" {
		return Target{}, fmt.Errorf("%w: %q: want ssh://user@host[:port]", ErrTarget, s)
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return Target{}, fmt.Errorf("%w: %q: want ssh://user@host[:port]", ErrTarget, s)
	}
	if _, set := u.User.Password(); set {
		return Target{}, fmt.Errorf("%w: %q: passwords are not taken: use a key", ErrTarget, s)
	}
	t := Target{User: u.User.Username(), Host: u.Hostname(), Port: 22}
	if t.User == "" {
		t.User = defUser
	}
	if t.User == "" {
		return Target{}, fmt.Errorf("%w: %q: no user", ErrTarget, s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("%w: %q: bad port", ErrTarget, s)
		}
		t.Port = n
	}
	return t, nil
}

// ReadHostsFile reads one target a line; blank lines and lines starting
// with # are skipped. Errors name the file and line.
func ReadHostsFile(file, defUser string) ([]Target, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	var out []Target
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, err := ParseTarget(line, defUser)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out = append(out, t)
	}
	return out, sc.Err()
}
