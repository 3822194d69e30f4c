package multihost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// demoHost is one host of the exported-resource demo on the test bridge.
type demoHost struct {
	name  string // a, b, c: also its --hostname
	h     *testhost.Host
	graph []byte // examples/graph3.yaml, as running (the changer's is edited)
	proc  *testhost.Proc
}

// dir is where the host's files live, inside the host: /tmp/mgmtA...
func (d *demoHost) dir() string { return "/tmp/mgmt" + strings.ToUpper(d.name) }

// watched is dir as the test sees it from outside, through the host's root.
func (d *demoHost) watched() string { return filepath.Join(d.h.Root(), d.dir()) }

func (d *demoHost) clientURL() string { return "http://" + d.h.Addr() + ":2379" }

// demoWant is what each host's directory must hold: its own four files and
// the exported ones (f3, f4, and those in extra) of every other host.
func demoWant(hosts []*demoHost, extra map[string][]string) map[string][]string {
	want := map[string][]string{}
	for _, d := range hosts {
		var names []string
		for i := 1; i <= 4; i++ {
			names = append(names, fmt.Sprintf("f%d%s", i, d.name))
		}
		names = append(names, extra[d.name]...)
		for _, o := range hosts {
			if o != d {
				names = append(names, "f3"+o.name, "f4"+o.name)
				names = append(names, extra[o.name]...)
			}
		}
		slices.Sort(names)
		want[d.watched()] = names
	}
	return want
}

// TestThreeHostsOverBridge runs the seed's exported-resource demo on three
// test hosts, each in its own network namespace on a bridge, talking etcd
// over their bridge addresses: host a starts the cluster, b and c join it
// as members. Every host ends with its own four files and the two exported
// files of each other host, and a host's unexported files never appear
// anywhere else (inotify records every name ever created). Then host c is
// cut off by taking its link down: the two hosts still connected exchange
// a change of exports, c keeps everything it had collected, and once its
// link is up again it catches up.
func TestThreeHostsOverBridge(t *testing.T) {
	t.Parallel()
	ctx, hosts, log := startDemo(t)
	// c is no one's seed, so the others' clients do not depend on it.
	partitionAndHeal(ctx, t, log, hosts, hosts[2], hosts[1], hosts[0])
	checkNeverForeign(t, log, hosts)
}

// TestSeedCutOffOverBridge is TestThreeHostsOverBridge with the seed, host
// a, cut off instead of c. b's client also talks to a (its seed), so b's
// first Publish after the cut times out; the agent's publisher tries again
// until it goes through, and b's change reaches everyone.
func TestSeedCutOffOverBridge(t *testing.T) {
	t.Parallel()
	ctx, hosts, log := startDemo(t)
	partitionAndHeal(ctx, t, log, hosts, hosts[0], hosts[1], hosts[2])
	checkNeverForeign(t, log, hosts)
}

// startDemo boots hosts a, b and c on a bridge, runs the demo on them and
// checks that it converged as it should.
func startDemo(t *testing.T) (context.Context, []*demoHost, *dirLog) {
	testhost.Require(t)
	testhost.RequireTools(t, "ip", "curl")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)

	n := testhost.NewNetworkT(t)
	var hosts []*demoHost
	for _, name := range []string{"a", "b", "c"} {
		hosts = append(hosts, &demoHost{name: name, h: n.StartT(t, testhost.Options{Name: name})})
	}
	var hs []*testhost.Host
	for _, d := range hosts {
		hs = append(hs, d.h)
	}
	mgmt := testhost.InstallMgmt(t, hs...)
	// Every host runs the one demo file: its templates name and place
	// the host's files and exports.
	g, err := os.ReadFile(filepath.Join("..", "..", "examples", "graph3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var watched []string
	for _, d := range hosts {
		d.graph = g
		if err := d.h.WriteFile("/root/graph.yaml", g, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.h.MkdirAll(d.dir(), 0o755); err != nil {
			t.Fatal(err)
		}
		watched = append(watched, d.watched())
	}
	log := newDirLog(t, watched...)

	// The agents outlive ctx until their Stop in Cleanup: a cancelled
	// Spawn context kills them instead.
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	t.Cleanup(procCancel)
	seed := hosts[0].clientURL()
	for i, d := range hosts {
		args := []string{mgmt, "run", "--file", "/root/graph.yaml", "--hostname", d.name, "--prefix", "/var/lib/mgmt",
			"--client-urls", d.clientURL(), "--server-urls", "http://" + d.h.Addr() + ":2380"}
		if i > 0 {
			args = append(args, "--seeds", seed)
		}
		p, err := d.h.Spawn(procCtx, args...)
		if err != nil {
			t.Fatal(err)
		}
		d.proc = p
		t.Cleanup(func() {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Errorf("mgmt on %s: %v", d.name, err)
			}
			if t.Failed() {
				t.Logf("mgmt on %s:\n%s", d.name, p.Output())
			}
		})
		if i == 0 { // b and c join a running seed
			own := map[string][]string{d.watched(): {"f1a", "f2a", "f3a", "f4a"}}
			if _, err := log.waitHolds(own, 30*time.Second); err != nil {
				t.Fatalf("host a alone: %v", err)
			}
		}
	}
	started := time.Now()
	if _, err := log.waitHolds(demoWant(hosts, nil), 60*time.Second); err != nil {
		t.Fatalf("the demo did not converge: %v", err)
	}
	t.Logf("b and c started; all three hosts converged in %v", time.Since(started).Round(time.Millisecond))
	// The exchange does not wait for b and c to be etcd members (they join
	// in the background, one after the other); the cuts below need all
	// three voting, so that the two hosts left connected are a majority.
	wait.For(t, 45*time.Second, "all three hosts voting etcd members", func() bool {
		v, err := voters(ctx, hosts[0])
		return err == nil && slices.Equal(v, []string{"a", "b", "c"})
	})
	t.Logf("all three hosts voting etcd members %v after b and c started", time.Since(started).Round(time.Millisecond))
	wantA := "f1a f2a f3a f3b f3c f4a f4b f4c"
	if got, err := lsHost(ctx, hosts[0]); got != wantA || err != nil {
		t.Errorf("ls %s on a: %q (%v), want %q", hosts[0].dir(), got, err, wantA)
	}
	checkContent(t, hosts[0], "f3b", "i am f3, exported from host b\n")
	checkContent(t, hosts[1], "f4c", "i am f4, exported from host c\n")
	checkContent(t, hosts[2], "f3a", "i am f3, exported from host a\n")
	checkNeverForeign(t, log, hosts)
	return ctx, hosts, log
}

// partitionAndHeal cuts a host off the bridge, changes the exports of
// another host (changer), and heals the cut.
func partitionAndHeal(ctx context.Context, t *testing.T, log *dirLog, hosts []*demoHost, cut, changer, other *demoHost) {
	leader := leaderOf(ctx, t, hosts)
	t.Logf("cutting off %s (the etcd leader is %s); %s changes its exports", cut.name, leader, changer.name)
	if _, err := cut.h.Run(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	// The other two have a leader (a new one if the cut host led) before
	// the change is published: a Publish that finds no leader fails and
	// is only tried again later, which would blur the timings below.
	wait.For(t, 20*time.Second, "a leader among the hosts still connected", func() bool {
		l, err := memberLeader(ctx, changer)
		return err == nil && l != "" && l != cut.name
	})
	t.Logf("leader among the connected hosts %v after the cut", time.Since(cutAt).Round(time.Millisecond))

	// The changer's f3 gets new content and it exports a fifth file: an
	// edit of its copy of the one file, still templated.
	old := "i am f3, exported from host {{ .Hostname }}"
	if !strings.Contains(string(changer.graph), old) {
		t.Fatalf("the demo graph lacks %q", old)
	}
	changed := strings.Replace(string(changer.graph), old, "i am f3 of host {{ .Hostname }}, changed while "+cut.name+" was cut off", 1)
	changed = strings.Replace(changed, "collect:", fmt.Sprintf(`  - name: "@@file5{{ .Hostname }}"
    path: /tmp/mgmt{{ upper .Hostname }}/f5{{ .Hostname }}
    content: |
      i am f5, exported from host {{ .Hostname }} while %s was cut off
collect:`, cut.name), 1)
	replaceGraph(ctx, t, changer, changed)
	newF3 := "i am f3 of host " + changer.name + ", changed while " + cut.name + " was cut off\n"
	f3, f5 := "f3"+changer.name, "f5"+changer.name

	extra := map[string][]string{changer.name: {f5}}
	after := demoWant(hosts, extra)
	before := demoWant(hosts, nil)
	connected := map[string][]string{changer.watched(): after[changer.watched()], other.watched(): after[other.watched()]}
	if _, err := log.waitHolds(connected, 30*time.Second); err != nil {
		t.Fatalf("the hosts still connected did not exchange the change: %v", err)
	}
	wait.For(t, 10*time.Second, other.name+" has the new "+f3, func() bool {
		b, err := other.h.ReadFile(other.dir() + "/" + f3)
		return err == nil && string(b) == newF3
	})

	// The cut-off host has noticed (its watch lost the leader and cannot
	// read again) and still holds everything it had collected.
	wait.For(t, 30*time.Second, cut.name+"'s agent noticing the cut", func() bool {
		return strings.Contains(cut.proc.Output(), "exports watch interrupted")
	})
	if got := log.names(cut.watched()); !slices.Equal(got, before[cut.watched()]) {
		t.Fatalf("cut-off host %s holds %v, want %v", cut.name, got, before[cut.watched()])
	}
	checkContent(t, cut, f3, "i am f3, exported from host "+changer.name+"\n")
	t.Logf("%s cut off for %v, kept all it had collected", cut.name, time.Since(cutAt).Round(time.Millisecond))

	if _, err := cut.h.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if _, err := log.waitHolds(after, 30*time.Second); err != nil {
		t.Fatalf("%s did not catch up after the heal: %v", cut.name, err)
	}
	wait.For(t, 10*time.Second, cut.name+" has the new "+f3, func() bool {
		b, err := cut.h.ReadFile(cut.dir() + "/" + f3)
		return err == nil && string(b) == newF3
	})
	t.Logf("%s caught up %v after the heal", cut.name, time.Since(healed).Round(time.Millisecond))
	for _, d := range hosts {
		if got, want := log.names(d.watched()), after[d.watched()]; !slices.Equal(got, want) {
			t.Errorf("after the heal %s holds %v, want %v", d.name, got, want)
		}
	}
}

// replaceGraph swaps the host's graph file in one rename, so that the
// agent never reads half of it.
func replaceGraph(ctx context.Context, t *testing.T, d *demoHost, graph string) {
	t.Helper()
	if err := d.h.WriteFile("/root/graph.yaml.new", []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.h.Run(ctx, "mv", "/root/graph.yaml.new", "/root/graph.yaml"); err != nil {
		t.Fatal(err)
	}
	d.graph = []byte(graph)
}

// memberStatus is the part of etcd's Maintenance.Status reply (through its
// JSON gateway) that says who leads.
type memberStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string `json:"leader"`
}

// status asks d's own etcd member for its status, from inside d.
func status(ctx context.Context, d *demoHost) (memberStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := d.h.Run(ctx, "curl", "-sS", "--max-time", "2", "-X", "POST", "-d", "{}", d.clientURL()+"/v3/maintenance/status")
	if err != nil {
		return memberStatus{}, err
	}
	var s memberStatus
	if err := json.Unmarshal(out, &s); err != nil {
		return memberStatus{}, fmt.Errorf("status of %s: %w: %s", d.name, err, out)
	}
	return s, nil
}

// leaderOf returns the name of the host whose member leads the cluster.
func leaderOf(ctx context.Context, t *testing.T, hosts []*demoHost) string {
	t.Helper()
	var name string
	wait.For(t, 20*time.Second, "an etcd leader", func() bool {
		ids := map[string]string{}
		var leader string
		for _, d := range hosts {
			s, err := status(ctx, d)
			if err != nil || s.Leader == "" || s.Leader == "0" || (leader != "" && s.Leader != leader) {
				return false
			}
			ids[s.Header.MemberID], leader = d.name, s.Leader
		}
		name = ids[leader]
		return name != ""
	})
	return name
}

// memberLeader returns the name of the host d's member follows ("" if none).
func memberLeader(ctx context.Context, d *demoHost) (string, error) {
	s, err := status(ctx, d)
	if err != nil {
		return "", err
	}
	if s.Leader == "" || s.Leader == "0" {
		return "", nil
	}
	// The leader's ID is not a name: ask the member list through d.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := d.h.Run(ctx, "curl", "-sS", "--max-time", "2", "-X", "POST", "-d", "{}", d.clientURL()+"/v3/cluster/member/list")
	if err != nil {
		return "", err
	}
	var ml struct {
		Members []struct {
			ID   string `json:"ID"`
			Name string `json:"name"`
		} `json:"members"`
	}
	if err := json.Unmarshal(out, &ml); err != nil {
		return "", fmt.Errorf("member list from %s: %w: %s", d.name, err, out)
	}
	for _, m := range ml.Members {
		if m.ID == s.Leader {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("leader %s of %s not among the members %s", s.Leader, d.name, out)
}

// voters returns the names of the voting members, sorted, from d's view.
func voters(ctx context.Context, d *demoHost) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := d.h.Run(ctx, "curl", "-sS", "--max-time", "2", "-X", "POST", "-d", "{}", d.clientURL()+"/v3/cluster/member/list")
	if err != nil {
		return nil, err
	}
	var ml struct {
		Members []struct {
			Name      string `json:"name"`
			IsLearner bool   `json:"isLearner"`
		} `json:"members"`
	}
	if err := json.Unmarshal(out, &ml); err != nil {
		return nil, fmt.Errorf("member list from %s: %w: %s", d.name, err, out)
	}
	var names []string
	for _, m := range ml.Members {
		if m.Name != "" && !m.IsLearner {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// lsHost lists d's directory with ls inside the host.
func lsHost(ctx context.Context, d *demoHost) (string, error) {
	out, err := d.h.Run(ctx, "ls", d.dir())
	return strings.Join(strings.Fields(string(out)), " "), err
}

func checkContent(t *testing.T, d *demoHost, name, want string) {
	t.Helper()
	b, err := d.h.ReadFile(d.dir() + "/" + name)
	if err != nil || string(b) != want {
		t.Errorf("%s:%s/%s holds %q (%v), want %q", d.name, d.dir(), name, b, err, want)
	}
}

// checkNeverForeign: no host ever held another host's unexported f1 or f2.
func checkNeverForeign(t *testing.T, log *dirLog, hosts []*demoHost) {
	t.Helper()
	for _, d := range hosts {
		for _, name := range log.everSeen(d.watched()) {
			if (strings.HasPrefix(name, "f1") || strings.HasPrefix(name, "f2")) && name[2:] != d.name {
				t.Errorf("%s once held %s, an unexported file of another host", d.name, name)
			}
		}
	}
}
