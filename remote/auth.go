package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host-key refusals. Both are wrapped in a *HostKeyError naming the host.
var (
	ErrUnknownHostKey = errors.New("host key not in known_hosts (give --remote-accept-new to add it)")
	ErrChangedHostKey = errors.New("HOST KEY CHANGED: known_hosts has another key for this host (someone may be intercepting the connection; if the host was reinstalled, remove its old line)")
)

// HostKeyError is a host key refused against KnownHosts.
type HostKeyError struct {
	Host        string
	Fingerprint string // SHA256:... of the key offered
	File        string // the known_hosts file
	Err         error  // ErrUnknownHostKey or ErrChangedHostKey
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("%s offered %s: %v (%s)", e.Host, e.Fingerprint, e.Err, e.File)
}
func (e *HostKeyError) Unwrap() error { return e.Err }

// Auth is how to log in and whom to trust.
type Auth struct {
	// Keys are private key files. Empty: the SSH agent (SSH_AUTH_SOCK)
	// and ~/.ssh/id_ed25519, id_ecdsa, id_rsa, those that exist.
	Keys []string
	// KnownHosts is the known_hosts file (default ~/.ssh/known_hosts).
	KnownHosts string
	// AcceptNew appends the key of a host not in KnownHosts; a host whose
	// key differs from the one listed is refused whatever this says.
	AcceptNew bool
	Logger    *slog.Logger

	mu sync.Mutex // guards appends to KnownHosts
}

// signers are the keys offered, read once per connection (the agent's
// may change).
func (a *Auth) signers() ([]ssh.Signer, func(), error) {
	closeAgent := func() {}
	var out []ssh.Signer
	keys := a.Keys
	if len(keys) == 0 {
		if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
			if c, err := net.Dial("unix", sock); err == nil {
				if s, err := agent.NewClient(c).Signers(); err == nil {
					out = append(out, s...)
				}
				closeAgent = func() { c.Close() }
			}
		}
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				p := filepath.Join(home, ".ssh", n)
				if _, err := os.Stat(p); err == nil {
					keys = append(keys, p)
				}
			}
		}
	}
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			closeAgent()
			return nil, nil, fmt.Errorf("key: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) && len(a.Keys) == 0 {
			a.log().Debug("skipping a key with a passphrase (load it into ssh-agent)", "key", k)
			continue
		}
		if err != nil {
			closeAgent()
			return nil, nil, fmt.Errorf("key %s: %w (a key with a passphrase must be in ssh-agent)", k, err)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		closeAgent()
		return nil, nil, errors.New("no SSH key: none in ssh-agent or ~/.ssh/id_*; give --remote-key")
	}
	return out, closeAgent, nil
}

func (a *Auth) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func (a *Auth) knownHostsFile() (string, error) {
	if a.KnownHosts != "" {
		return a.KnownHosts, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("known_hosts: %w", err)
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// check is the known_hosts callback of the file as it is now; a missing
// file knows no host.
func (a *Auth) check(file string) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error {
			return &knownhosts.KeyError{}
		}, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return cb, nil
}

// hostKey returns the callback for one connection and the key algorithms
// to ask for: those known_hosts lists for the host, so that a host known
// by its ed25519 key is not asked for its RSA key and refused as changed.
func (a *Auth) hostKey(t Target, checked *bool) (ssh.HostKeyCallback, []string, error) {
	file, err := a.knownHostsFile()
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	cb, err := a.check(file)
	a.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	var algos []string
	if probe, err := probeKey(); err == nil {
		var ke *knownhosts.KeyError
		if errors.As(cb(t.Addr(), &net.TCPAddr{}, probe), &ke) {
			for _, w := range ke.Want {
				algos = append(algos, algorithmsFor(w.Key.Type())...)
			}
		}
	}
	callback := func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			*checked = true
			return nil
		case !errors.As(err, &ke):
			return err // a revoked key
		case len(ke.Want) > 0:
			return &HostKeyError{Host: t.Name(), Fingerprint: ssh.FingerprintSHA256(key), File: file, Err: ErrChangedHostKey}
		case !a.AcceptNew:
			return &HostKeyError{Host: t.Name(), Fingerprint: ssh.FingerprintSHA256(key), File: file, Err: ErrUnknownHostKey}
		}
		if err := a.appendKnown(file, host, remote, key); err != nil {
			return err
		}
		a.log().Warn("added a new host key to known_hosts", "host", t.Name(), "key", ssh.FingerprintSHA256(key), "file", file)
		*checked = true
		return nil
	}
	return callback, algos, nil
}

// appendKnown adds a line for host, unless one was added meanwhile (two
// targets naming the same host).
func (a *Auth) appendKnown(file, host string, remote net.Addr, key ssh.PublicKey) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cb, err := a.check(file); err == nil && cb(host, remote, key) == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(host)}, key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	return nil
}

// probeKey is a key no host has: checking it lists the keys known.
func probeKey() (ssh.PublicKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
