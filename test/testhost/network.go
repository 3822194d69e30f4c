package testhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Subnet is the /24 that hosts on a test bridge get their addresses from.
// It exists only inside the namespaces a Network makes: the real machine's
// own network namespace is never changed.
const Subnet = "10.77.0"

const netnsDir = "/run/netns"

func netnsPath(name string) string { return netnsDir + "/" + name }

// Network is a bridge in a network namespace of its own (the switch) and
// one named network namespace per host wired to it by a veth pair. Create
// it with NewNetwork, boot hosts on it with Start, and Close it after
// stopping them.
type Network struct {
	prefix string // of every netns name: mth<pid>-<seq>
	sw     string // the switch's netns
	logger *slog.Logger

	mu     sync.Mutex // guards next, nss, closed
	next   int        // last host number handed out
	nss    []string   // the hosts' netns, in order
	closed bool
}

var netSeq atomic.Int64

var staleNetNS = regexp.MustCompile(`^mth([0-9]+)-[0-9]+-(sw|h[0-9]+)$`)

// NewNetwork makes the switch namespace with its bridge. It first deletes
// namespaces that networks of processes now gone left behind.
func NewNetwork(ctx context.Context, logger *slog.Logger) (*Network, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("%w: the ip command (iproute2)", ErrUnsupported)
	}
	if logger == nil {
		logger = slog.Default()
	}
	sweepNetNS(ctx)
	n := &Network{prefix: fmt.Sprintf("mth%d-%d", os.Getpid(), netSeq.Add(1)), logger: logger}
	n.sw = n.prefix + "-sw"
	if err := ipCmds(ctx,
		[]string{"netns", "add", n.sw},
		[]string{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", n.sw, "link", "set", "br0", "up"},
		[]string{"-n", n.sw, "link", "set", "lo", "up"},
	); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	logger.Debug("test network up", "switch", n.sw)
	return n, nil
}

// NewNetworkT is NewNetwork for a test: it skips or fails like
// RequireTools(tb, "ip") and closes the network in tb.Cleanup (registered
// before the hosts' Stop, so it runs after them).
func NewNetworkT(tb testing.TB) *Network {
	tb.Helper()
	RequireTools(tb, "ip")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := NewNetwork(ctx, TestLogger(tb))
	if err != nil {
		tb.Fatalf("test network: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("closing test network: %v", err)
		}
	})
	return n
}

// AddNetNS makes a host's network namespace: eth0 with the next address
// of Subnet (/24), wired to the bridge, and lo. It returns the namespace's
// name (for Options.NetNS) and the address.
func (n *Network) AddNetNS(ctx context.Context) (netns, addr string, err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return "", "", errors.New("testhost: network closed")
	}
	if n.next >= 254 {
		n.mu.Unlock()
		return "", "", errors.New("testhost: network full")
	}
	n.next++
	i := n.next
	netns = fmt.Sprintf("%s-h%d", n.prefix, i)
	n.nss = append(n.nss, netns)
	n.mu.Unlock()

	addr = Subnet + "." + strconv.Itoa(i)
	port := "p" + strconv.Itoa(i)
	err = ipCmds(ctx,
		[]string{"netns", "add", netns},
		// The pair is made with each end directly in its namespace.
		[]string{"link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port, "netns", n.sw},
		[]string{"-n", n.sw, "link", "set", port, "master", "br0"},
		[]string{"-n", n.sw, "link", "set", port, "up"},
		[]string{"-n", netns, "addr", "add", addr + "/24", "dev", "eth0"},
		[]string{"-n", netns, "link", "set", "eth0", "up"},
		[]string{"-n", netns, "link", "set", "lo", "up"},
	)
	if err != nil {
		return "", "", err
	}
	return netns, addr, nil
}

// Start boots a host in a new network namespace on this network.
func (n *Network) Start(ctx context.Context, opts Options) (*Host, error) {
	ns, addr, err := n.AddNetNS(ctx)
	if err != nil {
		return nil, err
	}
	opts.NetNS, opts.addr = ns, addr
	return Start(ctx, opts)
}

// StartT is StartT for a host on this network.
func (n *Network) StartT(tb testing.TB, opts Options) *Host {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, addr, err := n.AddNetNS(ctx)
	if err != nil {
		tb.Fatalf("test network: %v", err)
	}
	opts.NetNS, opts.addr = ns, addr
	return StartT(tb, opts)
}

// Close deletes the hosts' namespaces and the switch's. A namespace that a
// running host still uses lives on, unnamed, until that host stops.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	nss := append(n.nss, n.sw)
	n.nss = nil
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range nss {
		if _, err := os.Stat(netnsPath(ns)); err != nil {
			continue
		}
		if err := ipCmds(ctx, []string{"netns", "del", ns}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepNetNS deletes the namespaces of networks whose process is gone.
func sweepNetNS(ctx context.Context) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		m := staleNetNS.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		ipCmds(ctx, []string{"netns", "del", e.Name()})
	}
}

func ipCmds(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("testhost: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
