package etcd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
)

// externalEnv names an etcd server binary to test against as an external
// cluster, e.g. Debian's etcd-server 3.4:
//
//	apt-get download etcd-server && dpkg -x etcd-server_*.deb root
//	MGMT_TEST_ETCD_BINARY=$PWD/root/usr/bin/etcd go test ./etcd/ -run External
const externalEnv = "MGMT_TEST_ETCD_BINARY"

// TestExternalCluster runs three hosts as clients only (--no-server) of a
// three-member cluster of another etcd build, and kills one member.
func TestExternalCluster(t *testing.T) {
	bin := os.Getenv(externalEnv)
	if bin == "" {
		skip.OrFail(t, "set %s to an etcd server binary to run (make test unpacks Debian's 3.4)", externalEnv)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	t.Logf("external etcd: %s", strings.Fields(string(out))[2])

	addrs := freeAddrs(t, 6)
	var initial, eps []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("x%d=http://%s", i, addrs[2*i+1]))
		eps = append(eps, "http://"+addrs[2*i])
	}
	var procs []*exec.Cmd
	for i := range 3 {
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("x%d", i),
			"--data-dir", filepath.Join(t.TempDir(), "data"),
			"--listen-client-urls", eps[i], "--advertise-client-urls", eps[i],
			"--listen-peer-urls", "http://"+addrs[2*i+1], "--initial-advertise-peer-urls", "http://"+addrs[2*i+1],
			"--initial-cluster", strings.Join(initial, ","),
			"--heartbeat-interval", "20", "--election-timeout", "200",
			"--log-level", "error",
		)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
			}
		})
		procs = append(procs, cmd)
	}
	clients := map[string]*Client{}
	for i, h := range []string{"a", "b", "c"} {
		c, err := connectRetry(t, rotate(eps, i), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clients[h] = c
	}
	exchange(t, clients)

	ch, err := clients["b"].WatchExports(t.Context(), "b", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	procs[0].Process.Signal(syscall.SIGKILL)
	procs[0].Wait()
	if err := clients["c"].Publish(t.Context(), "c", demoExports("c", "x0-dead")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 20*time.Second, "c's exports after a member died", func(s []Export) bool {
		for _, e := range s {
			if e.Host == "c" && strings.Contains(string(e.Params), "x0-dead") {
				return true
			}
		}
		return false
	})
}

// connectRetry connects to a cluster that may still be starting.
func connectRetry(t testing.TB, eps []string, d time.Duration) (*Client, error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := Connect(t.Context(), ClientConfig{Endpoints: eps, DialTimeout: time.Second})
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
