package hostname

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidateAndOriginalNames(t *testing.T) {
	for _, c := range []struct {
		res  Hostname
		want string
	}{
		{Hostname{}, "hostname: missing"},
		{Hostname{Hostname: "-bad"}, "static: \"-bad\" is invalid"},
		{Hostname{Static: "a", StaticHostname: "b"}, "static and static_hostname: give one"},
		{Hostname{Pretty: "x\ny"}, "pretty: \"x\\ny\" is invalid"},
		{Hostname{Trans: strings.Repeat("a", 65)}, "at most 64 characters"},
	} {
		if err := c.res.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.res, err, c.want)
		}
	}
	// The original mgmt: hostname is the fallback for all three names.
	r := &Hostname{Hostname: "web1", PrettyHostname: "Web One"}
	must(t, r.Validate())
	got := map[string]string{}
	for _, p := range r.props() {
		got[p.param] = p.want
	}
	if got["static"] != "web1" || got["transient"] != "web1" || got["pretty"] != "Web One" {
		t.Errorf("props %v", got)
	}
	// The original's example graph decodes unchanged.
	yg, err := yamlgraph.ParseFile("../../examples/hostname1.yaml")
	must(t, err)
	if len(yg.Vertices) != 1 {
		t.Fatalf("%d resources", len(yg.Vertices))
	}
	must(t, yg.Vertices[0].Res.Validate())
}

// bootHost boots a test host with systemd-hostnamed (package systemd),
// which its bus activates on the first call.
func bootHost(tb testing.TB, name string) *testhost.Host {
	tb.Helper()
	if _, err := os.Stat("/lib/systemd/systemd-hostnamed"); err != nil {
		skip.OrFail(tb, "systemd-hostnamed is missing (test/setup-deps.sh installs systemd): %v", err)
	}
	return testhost.StartT(tb, testhost.Options{Name: name})
}

// props reads hostnamed's three names over a connection of its own.
func props(t *testing.T, h *testhost.Host) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := h.DialBus(ctx)
	must(t, err)
	defer conn.Close()
	obj := conn.Object(hnDest, hnPath)
	var out []string
	for _, p := range []string{"StaticHostname", "Hostname", "PrettyHostname"} {
		var v string
		must(t, obj.CallWithContext(ctx, propsIface+".Get", 0, hnIface, p).Store(&v))
		out = append(out, p+"="+v)
	}
	return strings.Join(out, " ")
}

// TestConformance: the shared suite against the real systemd-hostnamed of
// a test host (its own UTS namespace, activated on its bus): names changed
// by hostnamectl inside the host arrive as PropertiesChanged and are
// repaired.
func TestConformance(t *testing.T) {
	h := bootHost(t, "before")
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", h.SystemBusAddress())
	hostnamectl := func(args ...string) func(t *testing.T) {
		return func(t *testing.T) {
			_, err := h.Run(t.Context(), append([]string{"hostnamectl"}, args...)...)
			must(t, err)
		}
	}
	restest.Run(t, restest.Case{
		Kind: "hostname",
		Res: func(t *testing.T) engine.Res {
			return &Hostname{Hostname: "web1", PrettyHostname: "Web One"}
		},
		State: func(t *testing.T) string { return props(t, h) },
		Drifts: []restest.Drift{
			{Name: "static", Do: hostnamectl("set-hostname", "--static", "drifted")},
			{Name: "pretty", Do: hostnamectl("set-hostname", "--pretty", "Drifted")},
		},
		Timeout: 20 * time.Second,
	})
	out, err := h.Run(t.Context(), "hostname")
	must(t, err)
	if strings.TrimSpace(string(out)) != "web1" {
		t.Errorf("the host's kernel hostname is %q, want web1", out)
	}
	if b, err := h.ReadFile("/etc/hostname"); err != nil || strings.TrimSpace(string(b)) != "web1" {
		t.Errorf("the host's /etc/hostname: %q, %v", b, err)
	}
}

// BenchmarkRepairLatency: the static hostname changed by another client of
// hostnamed, until the watching loop has set it back (seen by a third
// connection's PropertiesChanged).
func BenchmarkRepairLatency(b *testing.B) {
	h := bootHost(b, "")
	b.Setenv("DBUS_SYSTEM_BUS_ADDRESS", h.SystemBusAddress())
	r := &Hostname{Static: "bench"}
	must(b, r.Validate())
	repaired := make(chan time.Time, 16)
	restest.Loop(b, r, func(changed bool, err error) {
		if err != nil {
			b.Error(err)
		}
		if changed {
			repaired <- time.Now()
		}
	})
	<-repaired
	ctx := context.Background()
	conn, err := h.DialBus(ctx)
	must(b, err)
	defer conn.Close()
	obj := conn.Object(hnDest, hnPath)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		at := time.Now()
		must(b, obj.CallWithContext(ctx, hnIface+".SetStaticHostname", 0, "drift"+string(rune('a'+i%26)), false).Err)
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
}
