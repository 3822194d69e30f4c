package etcd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv(memberEnv) != "" {
		runMemberProcess() // never returns
	}
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to d for the goroutines started by etcd, gRPC
// or this package to end and returns the stacks of those that did not.
func leakedGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.HasPrefix(g, "goroutine ") && isOurs(g) {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isOurs(stack string) bool {
	if strings.Contains(stack, "etcd.TestMain") || strings.Contains(stack, "etcd.leakedGoroutines") {
		return false
	}
	for _, ignore := range []string{
		// Started once per process by libraries, not per server or client.
		"go.opencensus.io/stats/view.(*worker).start",
		"google.golang.org/grpc/internal/grpcsync.NewCallbackSerializer", // global resolver registry
	} {
		if strings.Contains(stack, ignore) {
			return false
		}
	}
	return strings.Contains(stack, "go.etcd.io/") ||
		strings.Contains(stack, "google.golang.org/grpc") ||
		strings.Contains(stack, "github.com/mgmtconfig/mgmt/etcd")
}

// freeAddrs returns n loopback addresses whose ports were free a moment ago.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

// testServerConfig is a one-member server on free loopback ports with raft
// tuned for tests.
func testServerConfig(t testing.TB, name string) ServerConfig {
	t.Helper()
	a := freeAddrs(t, 2)
	return ServerConfig{
		Name:              name,
		DataDir:           filepath.Join(t.TempDir(), "etcd"),
		ClientURLs:        []string{"http://" + a[0]},
		PeerURLs:          []string{"http://" + a[1]},
		HeartbeatInterval: 20 * time.Millisecond,
		ElectionTimeout:   200 * time.Millisecond,
		StartTimeout:      20 * time.Second,
	}
}

func startTestServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	s, err := StartServer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func connectTest(t testing.TB, endpoints []string) *Client {
	t.Helper()
	c, err := Connect(context.Background(), ClientConfig{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("connect %v: %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".crt")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue signs a certificate for 127.0.0.1 usable by servers and clients
// alike, and returns the files an agent would be given.
func (ca *testCA) issue(t testing.TB, dir, name string) *TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFiles{CA: ca.file, Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	writePEM(t, f.Cert, "CERTIFICATE", der)
	writePEM(t, f.Key, "EC PRIVATE KEY", kder)
	return f
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// receive returns the next snapshot from ch, failing the test after d.
func receive(t testing.TB, ch <-chan []Export, d time.Duration) []Export {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("exports channel closed")
		}
		return s
	case <-time.After(d):
		t.Fatalf("no exports snapshot within %v", d)
		return nil
	}
}

// waitFor receives snapshots from ch until one satisfies ok, failing the
// test after d; it returns that snapshot.
func waitFor(t testing.TB, ch <-chan []Export, d time.Duration, what string, ok func([]Export) bool) []Export {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var last []Export
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatalf("exports channel closed while waiting for %s", what)
			}
			if ok(s) {
				return s
			}
			last = s
		case <-deadline.C:
			t.Fatalf("no snapshot with %s within %v; last: %s", what, d, describe(last))
			return nil
		}
	}
}

// describe renders a snapshot as "host/kind/name=params ...".
func describe(s []Export) string {
	var b strings.Builder
	for i, e := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s/%s/%s=%s", e.Host, e.Kind, e.Name, e.Params)
	}
	return "[" + b.String() + "]"
}
