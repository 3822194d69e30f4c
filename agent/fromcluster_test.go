package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
)

// swapLog records when each deploy was swapped in ("deploy swapped in").
type swapLog struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (h *swapLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *swapLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "deploy swapped in" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "deploy" {
			h.mu.Lock()
			h.at[a.Value.Int64()] = time.Now()
			h.mu.Unlock()
		}
		return true
	})
	return nil
}
func (h *swapLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *swapLog) WithGroup(string) slog.Handler      { return h }

func (h *swapLog) when(n int64) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.at[n]
	return t, ok
}

// TestFromClusterSwapLatency: an agent run from the cluster (its own
// embedded etcd) swaps in each new deploy within 100 ms of it being
// stored: the median over 20, counted from the moment Put is called
// (an upper bound: the record is stored a little later).
func TestFromClusterSwapLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	h := &swapLog{at: map[int64]time.Time{}}
	cc := clusterCfg(t)
	startRun(t, Config{FromCluster: true, Cluster: cc, Logger: slog.New(h), Prefix: filepath.Join(dir, "prefix")})
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: cc.ClientURLs, DialTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := deploy.NewStore(c)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	graph := filepath.Join(src, "graph.yaml")
	writeFile(t, graph, fmt.Sprintf("resources:\n  file:\n  - name: motd\n    path: %s/motd\n    source: files/motd\n", out))
	var took []time.Duration
	for i := range 21 {
		writeFile(t, filepath.Join(src, "files", "motd"), fmt.Sprintf("motd %d\n", i))
		b, err := deploy.Bundle(deploy.BundleSpec{Graph: graph, Local: []deploy.LocalFile{{Path: filepath.Join(src, "files", "motd")}}})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		m, err := st.Put(context.Background(), b, deploy.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var at time.Time
		waitFor(t, 20*time.Second, fmt.Sprintf("deploy %d swapped in", m.Number), func() bool {
			var ok bool
			at, ok = h.when(m.Number)
			return ok
		})
		if i > 0 { // the first one also waits for the agent to start
			took = append(took, at.Sub(before))
		}
		want := fmt.Sprintf("motd %d\n", i)
		waitFor(t, 10*time.Second, "motd of deploy "+fmt.Sprint(m.Number), func() bool { return readFileString(filepath.Join(out, "motd")) == want })
	}
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("deploy stored -> graph swapped, %d deploys: min %v, median %v, max %v", len(took), took[0], median, took[len(took)-1])
	if median > 100*time.Millisecond {
		t.Errorf("median %v from deploy to swap: want at most 100 ms", median)
	}
}
