package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A 40 MiB bundle is stored in chunks below etcd's request limit and read
// back whole.
func TestStoreBigBundle(t *testing.T) {
	st, c := testStore(t)
	ctx := context.Background()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"graph.yaml": "resources: {noop: [{name: a}]}\n"})
	big := make([]byte, 40<<20)
	rand.Read(big) // does not compress: the bundle is as large as the file
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bundle, err := Bundle(BundleSpec{Graph: filepath.Join(src, "graph.yaml"), Local: []LocalFile{{Path: filepath.Join(src, "big.bin"), By: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	bundled := time.Since(start)
	start = time.Now()
	m, err := st.Put(ctx, bundle, PutOptions{Message: "big"})
	if err != nil {
		t.Fatal(err)
	}
	stored := time.Since(start)
	start = time.Now()
	got, data, err := st.Get(ctx, m.Number)
	if err != nil {
		t.Fatal(err)
	}
	read := time.Since(start)
	t.Logf("%d MiB bundle: built in %v, stored in %v, read and checked in %v", len(bundle)>>20, bundled, stored, read)
	if !bytes.Equal(data, bundle) || got.Hash != Hash(bundle) || got.Number != 1 {
		t.Fatalf("read back %d bytes, deploy %d, hash %s: not what was stored", len(data), got.Number, got.Hash)
	}
	resp, err := c.Raw().Get(ctx, c.Namespace()+"deploy/blob/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != m.Chunks || m.Chunks < 40 {
		t.Fatalf("%d chunks in etcd, record says %d", len(resp.Kvs), m.Chunks)
	}
	const requestLimit = 3 << 19 // etcd's default --max-request-bytes, 1.5 MiB
	for _, kv := range resp.Kvs {
		if n := len(kv.Key) + len(kv.Value); n > ChunkSize+256 || n >= requestLimit {
			t.Errorf("%s: %d bytes: too close to the request limit", kv.Key, n)
		}
	}
	dst := filepath.Join(t.TempDir(), "u")
	if err := Unpack(data, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "big.bin")); !bytes.Equal(b, big) {
		t.Fatal("big.bin unpacked differs")
	}
}

// Racing deploys never share a number nor lose one.
func TestStoreConcurrentPuts(t *testing.T) {
	st, _ := testStore(t)
	ctx := context.Background()
	const n = 20
	var wg sync.WaitGroup
	nums := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := st.Put(ctx, fmt.Appendf(nil, "bundle %d", i), PutOptions{Message: fmt.Sprint(i)})
			nums[i], errs[i] = m.Number, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	sorted := append([]int64(nil), nums...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i, v := range sorted {
		if v != int64(i+1) {
			t.Fatalf("numbers %v: want 1 to %d, each once", sorted, n)
		}
	}
	all, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d records, want %d", len(all), n)
	}
	for _, m := range all { // each number holds the bundle of the deploy that got it
		i := indexOf(nums, m.Number)
		_, data, err := st.Get(ctx, m.Number)
		if err != nil || string(data) != fmt.Sprintf("bundle %d", i) || m.Message != fmt.Sprint(i) {
			t.Errorf("deploy %d: %q %q %v, want bundle %d", m.Number, data, m.Message, err, i)
		}
	}
	if cur, err := st.Current(ctx); err != nil || cur.Number != n {
		t.Errorf("current = %d %v, want %d (the last one stored)", cur.Number, err, n)
	}
}

func indexOf(s []int64, v int64) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func countKeys(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

func TestStorePrune(t *testing.T) {
	st, c := testStore(t)
	ctx := context.Background()
	blob := c.Namespace() + "deploy/blob/"
	// 1 A, 2 B, 3 A, 4 C, 5 D (staged: current stays 4), 6 E (staged).
	for _, b := range []string{"A", "B", "A", "C"} {
		if _, err := st.Put(ctx, []byte(b), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"D", "E"} {
		if _, err := st.Put(ctx, []byte(b), PutOptions{Staged: true}); err != nil {
			t.Fatal(err)
		}
	}
	// An orphan blob, as a deploy that died between its chunks and its record leaves.
	if _, err := c.Raw().Put(ctx, st.chunkKey(Hash([]byte("orphan")), 0), "orphan"); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, c.Raw(), blob); n != 6 {
		t.Fatalf("%d blobs before prune, want 6 (A B C D E orphan)", n)
	}
	n, err := st.Prune(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := st.List(ctx)
	var kept []int64
	for _, m := range all {
		kept = append(kept, m.Number)
	}
	if n != 3 || fmt.Sprint(kept) != "[4 5 6]" {
		t.Fatalf("pruned %d, kept %v: want 3 pruned, [4 5 6] kept (the last 2 and current)", n, kept)
	}
	if n := countKeys(t, c.Raw(), blob); n != 3 {
		t.Errorf("%d blobs after prune, want 3 (C D E)", n)
	}
	if _, _, err := st.Get(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(1) after prune: %v, want ErrNotFound", err)
	}
	for _, k := range kept {
		if _, _, err := st.Get(ctx, k); err != nil {
			t.Errorf("kept deploy %d: %v", k, err)
		}
	}
	// A deploy after a prune still takes the next number.
	if m, err := st.Put(ctx, []byte("A"), PutOptions{}); err != nil || m.Number != 7 {
		t.Errorf("deploy after prune: %d %v, want 7", m.Number, err)
	}
}

func TestStoreRollback(t *testing.T) {
	st, _ := testStore(t)
	ctx := context.Background()
	if _, err := st.Rollback(ctx, 0, PutOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rollback with no deploy: %v, want ErrNotFound", err)
	}
	st.Put(ctx, []byte("one"), PutOptions{Git: &Git{Commit: "c1", Subject: "first"}})
	st.Put(ctx, []byte("two"), PutOptions{})
	m, err := st.Rollback(ctx, 0, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, data, _ := st.Get(ctx, m.Number)
	if m.Number != 3 || m.RollbackOf != 1 || string(data) != "one" || m.Git == nil || m.Git.Commit != "c1" || m.Message != "rollback to 1" {
		t.Fatalf("rollback: %+v %q: want deploy 3 of deploy 1's bundle", m, data)
	}
	if cur, _ := st.Current(ctx); cur.Number != 3 {
		t.Errorf("current %d, want 3", cur.Number)
	}
	// Again: the one before current (3) is 2.
	if m, err := st.Rollback(ctx, 0, PutOptions{}); err != nil || m.RollbackOf != 2 || m.Number != 4 {
		t.Errorf("second rollback: %+v %v, want 4 of 2", m, err)
	}
	if _, err := st.Rollback(ctx, 99, PutOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to 99: %v, want ErrNotFound", err)
	}
}

// Bytes changed or lost in etcd are found by Get, never handed out.
func TestStoreCorrupt(t *testing.T) {
	st, c := testStore(t)
	ctx := context.Background()
	payload := bytes.Repeat([]byte("x"), ChunkSize+10) // two chunks
	m, err := st.Put(ctx, payload, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli := c.Raw()
	if _, err := cli.Put(ctx, st.chunkKey(m.Hash, 1), "y"+strings.Repeat("x", 9)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, m.Number); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "hash to") {
		t.Errorf("changed chunk: %v, want ErrCorrupt naming the hashes", err)
	}
	if _, err := cli.Delete(ctx, st.chunkKey(m.Hash, 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, m.Number); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "chunk 1 of 2 is missing") {
		t.Errorf("lost chunk: %v, want ErrCorrupt", err)
	}
	if _, err := cli.Put(ctx, st.recordKey(m.Number), `{"number":1,"hash":"sha256:../../x","size":1,"chunks":1}`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, m.Number); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad hash in record: %v, want ErrCorrupt", err)
	}
}

func receive(t *testing.T, ch <-chan int64, want int64) {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok || n != want {
			t.Fatalf("watch delivered %d (open %v), want %d", n, ok, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("watch: nothing within 5 s, want %d", want)
	}
}

func TestStoreWatch(t *testing.T) {
	st, c := testStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch := st.Watch(ctx, "web1")
	select {
	case n := <-ch:
		t.Fatalf("delivered %d before any deploy", n)
	case <-time.After(200 * time.Millisecond): // nothing must come: there is nothing
	}
	st.Put(ctx, []byte("one"), PutOptions{})
	receive(t, ch, 1)
	st.Put(ctx, []byte("two"), PutOptions{Staged: true})
	if _, err := c.Raw().Put(ctx, st.targetKey("web1"), "2"); err != nil {
		t.Fatal(err)
	}
	receive(t, ch, 2) // the target wins
	st.Put(ctx, []byte("three"), PutOptions{})
	if _, err := c.Raw().Delete(ctx, st.targetKey("web1")); err != nil {
		t.Fatal(err)
	}
	receive(t, ch, 3) // back to current
	// Coalesced: a burst unread leaves only the newest.
	for i := range 5 {
		st.Put(ctx, fmt.Appendf(nil, "burst %d", i), PutOptions{})
	}
	last, _ := st.Latest(ctx)
	deadline := time.After(5 * time.Second)
	for got := int64(0); got != last.Number; {
		select {
		case got = <-ch:
		case <-deadline:
			t.Fatalf("watch: %d, never the newest %d", got, last.Number)
		}
	}
	// A second watcher starts from what is there.
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch2 := st.Watch(ctx2, "")
	receive(t, ch2, last.Number)
	cancel2()
	for range ch2 {
	}
	cancel()
	for range ch { // closed once ctx ends
	}
}
