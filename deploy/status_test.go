package deploy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// statusHost is a status that a test changes.
type statusHost struct {
	mu sync.Mutex
	s  HostStatus
}

func (f *statusHost) set(s HostStatus) {
	f.mu.Lock()
	f.s = s
	f.mu.Unlock()
}

func (f *statusHost) get() HostStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func hostOf(t *testing.T, all []HostStatus, host string) HostStatus {
	t.Helper()
	for _, s := range all {
		if s.Host == host {
			return s
		}
	}
	return HostStatus{}
}

// The live record follows the host, writes are coalesced, a lease lost is
// granted again, and a stopped publisher leaves its host lost.
func TestStatusPublisher(t *testing.T) {
	_, c := testCluster(t)
	f := &statusHost{s: HostStatus{Deploy: 1, State: StateConverging, Version: "v"}}
	p := NewStatusPublisher(c, "web1", f.get, nil)
	p.TTL = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	read := func() HostStatus {
		all, err := ReadStatus(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return hostOf(t, all, "web1")
	}
	wait.For(t, 5*time.Second, "the first record", func() bool { return read().State == StateConverging })
	first := read()

	// A burst of 50 changes: a few writes, the last state wins.
	rev0, began := revision(t, c.Raw()), time.Now()
	for i := range 50 {
		f.set(HostStatus{Deploy: 1, State: StateConverging, Drifts: int64(i), Version: "v"})
		p.Notify()
		time.Sleep(2 * time.Millisecond)
	}
	f.set(HostStatus{Deploy: 2, State: StateConverged, Version: "v"})
	p.Notify()
	burst := time.Since(began)
	wait.For(t, 5*time.Second, "converged on 2", func() bool { s := read(); return s.Deploy == 2 && s.State == StateConverged })
	// Each write is one txn: one revision.
	if n, most := revision(t, c.Raw())-rev0, int64(burst/(200*time.Millisecond))+2; n > most {
		t.Errorf("%d writes for a burst of 51 changes over %v: want at most %d (one per 200 ms)", n, burst, most)
	}
	if s := read(); !s.ChangedAt.After(first.ChangedAt) || s.Host != "web1" || s.Failed == nil {
		t.Errorf("record %+v: want a later changed_at, the host, an empty failed list", s)
	}

	// The lease revoked from outside (a partition longer than the TTL):
	// the publisher notices, takes a new lease and writes again.
	resp, err := c.Raw().Get(context.Background(), c.Namespace()+"status/web1")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatal("no live record", err)
	}
	if _, err := c.Raw().Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the record back on a new lease", func() bool {
		r, err := c.Raw().Get(context.Background(), c.Namespace()+"status/web1")
		return err == nil && len(r.Kvs) == 1 && r.Kvs[0].Lease != resp.Kvs[0].Lease
	})

	// Stopped: the host is lost at once (lease revoked), its last record kept.
	cancel()
	<-done
	s := read()
	if s.State != StateLost || s.LastState != StateConverged || s.Deploy != 2 {
		t.Errorf("after stop: %+v: want lost, last converged on 2", s)
	}
}

// A host that dies (its lease not kept alive) is lost after the TTL;
// WatchStatus sees it happen.
func TestStatusLostAfterTTL(t *testing.T) {
	_, c := testCluster(t)
	lease, err := c.Raw().Grant(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	rec := `{"host":"db1","state":"converged","deploy":3}`
	if _, err := c.Raw().Put(context.Background(), c.Namespace()+"status/db1", rec, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Raw().Put(context.Background(), c.Namespace()+"status-last/db1", rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := WatchStatus(ctx, c)
	first := <-w
	if len(first) != 1 || first[0].State != StateConverged {
		t.Fatalf("first: %+v", first)
	}
	start := time.Now()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case all := <-w:
			if len(all) == 1 && all[0].State == StateLost {
				if d := time.Since(start); d < time.Second {
					t.Errorf("lost after %v: before its 2 s TTL", d)
				}
				if all[0].LastState != StateConverged || all[0].Deploy != 3 {
					t.Errorf("lost record %+v", all[0])
				}
				cancel()
				for range w {
				}
				return
			}
		case <-deadline:
			t.Fatal("db1 not lost 10 s after its lease stopped being kept alive")
		}
	}
}

func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	r, err := cli.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}
