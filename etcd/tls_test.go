package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// TestTLS forms a two-member cluster whose client and peer traffic is
// TLS, exchanges exports over it, and checks that plain connections and
// certificates from another CA are refused on both ports.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	cfgs := clusterConfigs(t, 2)
	var initial []string
	for i := range cfgs {
		cfgs[i].TLS = ca.issue(t, dir, cfgs[i].Name)
		for _, urls := range [][]string{cfgs[i].ClientURLs, cfgs[i].PeerURLs} {
			urls[0] = strings.Replace(urls[0], "http://", "https://", 1)
		}
		initial = append(initial, cfgs[i].Name+"="+cfgs[i].PeerURLs[0])
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
	}
	servers := startCluster(t, cfgs)

	connect := func(eps []string, files *TLSFiles) (*Client, error) {
		c, err := Connect(context.Background(), ClientConfig{Endpoints: eps, TLS: files, DialTimeout: time.Second})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	agent := ca.issue(t, dir, "agent")
	a, err := connect(servers[0].Endpoints(), agent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := connect(servers[1].Endpoints(), agent)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.WatchExports(t.Context(), "b", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(t.Context(), "a", demoExports("a", "tls")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 10*time.Second, "a's exports over TLS", hasNames("a/file/file3a", "a/file/file4a"))

	// A plain client at the TLS port.
	plain := strings.Replace(servers[0].Endpoints()[0], "https://", "http://", 1)
	if _, err := connect([]string{plain}, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("plain client: err = %v, want ErrUnreachable", err)
	}
	// A client whose certificate another CA signed.
	rogue := newTestCA(t, t.TempDir(), "rogue").issue(t, dir, "rogue")
	rogue.CA = ca.file // it trusts the servers, they do not trust it
	if _, err := connect(servers[0].Endpoints(), rogue); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("client with a foreign certificate: err = %v, want ErrUnreachable", err)
	}

	// The peer port: a member's certificate is let in, plain HTTP and a
	// TLS client without a certificate are not.
	peer := cfgs[0].PeerURLs[0] + "/members"
	get := func(url string, tc *tls.Config) (int, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	member, err := transport.TLSInfo{CertFile: cfgs[1].TLS.Cert, KeyFile: cfgs[1].TLS.Key, TrustedCAFile: ca.file}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get(peer, member); err != nil || code != http.StatusOK {
		t.Fatalf("peer port with a member's certificate: %d %v", code, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	anon := &tls.Config{RootCAs: pool}
	if code, err := get(peer, anon); err == nil {
		t.Fatalf("peer port without a client certificate answered %d", code)
	} else {
		t.Logf("peer port, no client certificate: %v", err)
	}
	code, err := get(strings.Replace(peer, "https://", "http://", 1), nil)
	if err == nil && code == http.StatusOK {
		t.Fatal("peer port answered plain HTTP")
	}
	t.Logf("peer port, plain HTTP: status %d, err %v", code, err)
}
