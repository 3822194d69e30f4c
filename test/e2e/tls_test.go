package e2e

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
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// testCA signs certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".crt")}
	pemFile(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for 127.0.0.1, for servers and clients alike.
func (ca *testCA) issue(t *testing.T, dir, name string) etcd.TLSFiles {
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
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := etcd.TLSFiles{CA: ca.file, Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	pemFile(t, f.Cert, "CERTIFICATE", der)
	pemFile(t, f.Key, "EC PRIVATE KEY", kder)
	return f
}

func pemFile(t *testing.T, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tlsArgs(f etcd.TLSFiles) []string {
	return []string{"--etcd-ca", f.CA, "--etcd-cert", f.Cert, "--etcd-key", f.Key}
}

// TestDeployOverTLS: a cluster that demands client certificates signed by
// its CA. `mgmt deploy` without a certificate, or with one another CA
// signed, is refused (exit 1) and stores nothing; with one the CA signed,
// it stores the deploy, and agents run --from-cluster with their own
// certificates converge on it and report it in `mgmt status`.
func TestDeployOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and two agents")
	}
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	member := ca.issue(t, dir, "member")
	srv, err := etcd.StartServer(context.Background(), etcd.ServerConfig{
		Name: "tls", DataDir: filepath.Join(dir, "etcd"),
		ClientURLs: []string{"https://" + addrs[0]}, PeerURLs: []string{"https://" + addrs[1]},
		TLS:               &member,
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	seed := srv.Endpoints()[0]
	if !strings.HasPrefix(seed, "https://") {
		t.Fatalf("endpoint %s: want https", seed)
	}
	admin := ca.issue(t, dir, "admin")
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seed}, TLS: &admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	st := deploy.NewStore(c)
	nothingStored := func(what string) {
		t.Helper()
		if _, err := st.Latest(context.Background()); err == nil {
			t.Fatalf("%s: a deploy was stored", what)
		}
	}

	out := filepath.Join(dir, "out")
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"graph.yaml": fmt.Sprintf(
		"resources:\n  file:\n  - name: motd\n    path: %s/{{ .Hostname }}-motd\n    source: files/motd\n", out),
		"files/motd": "over tls\n"})
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	deployArgs := []string{"deploy", "--file", "graph.yaml", "--seeds", seed}

	// No certificate at all: refused by the server.
	_, stderr, rc := mgmt(t, src, deployArgs...)
	t.Logf("$ mgmt deploy (no certificate)\n%s(exit %d)", stderr, rc)
	if rc != 1 {
		t.Fatalf("deploy without a certificate: exit %d, want 1: %s", rc, stderr)
	}
	nothingStored("without a certificate")
	// The CA, but a certificate another CA signed.
	rogue := newCA(t, t.TempDir(), "rogue").issue(t, dir, "rogue")
	rogue.CA = ca.file
	_, stderr, rc = mgmt(t, src, append(deployArgs, tlsArgs(rogue)...)...)
	t.Logf("$ mgmt deploy (a certificate another CA signed)\n%s(exit %d)", stderr, rc)
	if rc != 1 {
		t.Fatalf("deploy with a foreign certificate: exit %d, want 1: %s", rc, stderr)
	}
	nothingStored("with a foreign certificate")
	// Half the TLS flags is a usage error, before any connection.
	if _, stderr, rc = mgmt(t, src, append(deployArgs, "--etcd-ca", ca.file)...); rc != 2 {
		t.Errorf("deploy with --etcd-ca only: exit %d, want 2: %s", rc, stderr)
	}

	// With the deployer's certificate: stored.
	deployer := ca.issue(t, dir, "deployer")
	stdout, stderr, rc := mgmt(t, src, append(deployArgs, tlsArgs(deployer)...)...)
	if rc != 0 || stdout != "1\n" {
		t.Fatalf("deploy with a certificate: exit %d, stdout %q: %s", rc, stdout, stderr)
	}
	if m, err := st.Latest(context.Background()); err != nil || m.Number != 1 {
		t.Fatalf("the deploy in etcd: %+v %v", m, err)
	}

	// Agents with their own certificates run it.
	for _, h := range []string{"web1", "web2"} {
		cert := ca.issue(t, dir, h)
		start(t, append([]string{"run", "--from-cluster", "--hostname", h, "--prefix", filepath.Join(dir, "p-"+h),
			"--seeds", seed, "--no-server"}, tlsArgs(cert)...)...)
	}
	wait.For(t, 30*time.Second, "both agents on deploy 1", func() bool {
		return readFile(filepath.Join(out, "web1-motd")) == "over tls\n" && readFile(filepath.Join(out, "web2-motd")) == "over tls\n"
	})
	statusArgs := append([]string{"status", "--json", "--seeds", seed}, tlsArgs(deployer)...)
	wait.For(t, 10*time.Second, "both converged on 1 in mgmt status", func() bool {
		o, _, rc := mgmt(t, "", statusArgs...)
		return rc == 0 && strings.Count(o, `"state": "converged"`) == 2 && strings.Count(o, `"deploy": 1,`) == 2
	})
	if _, stderr, rc := mgmt(t, "", "status", "--seeds", seed); rc != 1 {
		t.Errorf("mgmt status without a certificate: exit %d, want 1: %s", rc, stderr)
	}
}
