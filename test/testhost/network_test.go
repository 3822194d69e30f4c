package testhost

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBridgePing boots two hosts on a test bridge and pings one from the
// other; the real machine's network namespace gets no address of it.
func TestBridgePing(t *testing.T) {
	RequireTools(t, "ip", "ping")
	realAddrs := func() string {
		out, err := exec.Command("ip", "-o", "addr").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	before := realAddrs()
	n := NewNetworkT(t)
	h1 := n.StartT(t, Options{Name: "node1"})
	h2 := n.StartT(t, Options{Name: "node2"})
	if h1.Addr() == "" || h2.Addr() == "" || h1.Addr() == h2.Addr() {
		t.Fatalf("addresses %q and %q", h1.Addr(), h2.Addr())
	}
	out := mustRun(t, h1, "ping", "-c", "1", "-W", "5", h2.Addr())
	if !strings.Contains(out, "1 received") {
		t.Errorf("ping %s from %s:\n%s", h2.Addr(), h1.Name(), out)
	}
	links := mustRun(t, h2, "ip", "-o", "-4", "addr")
	if !strings.Contains(links, "eth0") || !strings.Contains(links, h2.Addr()+"/24") {
		t.Errorf("%s's addresses:\n%s", h2.Name(), links)
	}
	if after := realAddrs(); after != before || strings.Contains(after, Subnet+".") {
		t.Errorf("the real machine's addresses changed:\n%s\nwas:\n%s", after, before)
	}
}
