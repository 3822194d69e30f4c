// Package deploy moves graphs to a fleet: bundles of a graph and its files,
// numbered deploys stored in etcd with their history, and the watch that
// tells an agent which deploy to run.
package deploy

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ChunkSize bounds each value a bundle is stored in: etcd refuses requests
// above 1.5 MiB by default.
const ChunkSize = 1 << 20

// DefaultKeep is how many deploys the history keeps by default.
const DefaultKeep = 50

var (
	// ErrNotFound reports a deploy that is not in the store (never made, or
	// pruned), or no deploy at all.
	ErrNotFound = errors.New("no such deploy")
	// ErrCorrupt reports a stored deploy whose bytes do not match its
	// record: a missing chunk, a wrong size or hash.
	ErrCorrupt = errors.New("stored deploy is corrupt")
)

// Meta is the record of one deploy.
type Meta struct {
	Number     int64     `json:"number"`
	Hash       string    `json:"hash"` // "sha256:<hex>" of the bundle
	Size       int64     `json:"size"`
	Chunks     int       `json:"chunks"`
	Time       time.Time `json:"time"` // UTC, to the second
	By         string    `json:"by"`   // user@host
	Message    string    `json:"message,omitempty"`
	Git        *Git      `json:"git,omitempty"`
	RollbackOf int64     `json:"rollback_of,omitempty"`
	// Staged: stored without becoming current (a rollout moves hosts to
	// it through their targets).
	Staged bool `json:"staged,omitempty"`
}

// Git is the commit a deploy was made from.
type Git struct {
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
}

// PutOptions describe a new deploy.
type PutOptions struct {
	Message    string
	By         string // default: the user and host of this process
	Git        *Git
	RollbackOf int64
	// Staged stores the deploy without moving current: the start of a
	// staged rollout.
	Staged bool
}

// Store is the deploy store under an etcd client's namespace:
//
//	NS deploy/counter                    last deploy number
//	NS deploy/d/<%012d>                  Meta, as JSON
//	NS deploy/blob/<sha256>/<%06d>       bundle bytes, ChunkSize at most each
//	NS deploy/current                    the number every host runs...
//	NS deploy/target/<host>              ...unless its target says otherwise
//	NS deploy/rollout                    the staged rollout's state (rollout.go)
//	NS deploy/depool/<host>              a host a rollout depooled (depool.go)
type Store struct {
	cli *clientv3.Client
	ns  string
}

// NewStore uses c's connection and namespace; c stays the caller's to close.
func NewStore(c *etcd.Client) *Store {
	return &Store{cli: c.Raw(), ns: c.Namespace() + "deploy/"}
}

func (s *Store) counterKey() string           { return s.ns + "counter" }
func (s *Store) currentKey() string           { return s.ns + "current" }
func (s *Store) recordPrefix() string         { return s.ns + "d/" }
func (s *Store) recordKey(n int64) string     { return fmt.Sprintf("%s%012d", s.recordPrefix(), n) }
func (s *Store) blobPrefix() string           { return s.ns + "blob/" }
func (s *Store) targetKey(host string) string { return s.ns + "target/" + host }

// blobKey is the prefix of a bundle's chunks.
func (s *Store) blobKey(hash string) string {
	return s.blobPrefix() + strings.TrimPrefix(hash, "sha256:") + "/"
}

func (s *Store) chunkKey(hash string, i int) string {
	return fmt.Sprintf("%s%06d", s.blobKey(hash), i)
}

// Put stores bundle as the next deploy and, unless opt.Staged, makes it
// current. The bytes go first, content-addressed (a bundle stored before is
// not written again); then one transaction takes the next number, guarded
// by the counter's revision, so that racing deploys each get their own.
func (s *Store) Put(ctx context.Context, bundle []byte, opt PutOptions) (Meta, error) {
	if len(bundle) == 0 || len(bundle) > MaxBundle {
		return Meta{}, fmt.Errorf("%w: %d bytes: want 1 to %d MiB", ErrBundle, len(bundle), MaxBundle>>20)
	}
	m := Meta{
		Hash: Hash(bundle), Size: int64(len(bundle)), Chunks: (len(bundle) + ChunkSize - 1) / ChunkSize,
		Time: time.Now().UTC().Truncate(time.Second), By: opt.By, Message: opt.Message,
		Git: opt.Git, RollbackOf: opt.RollbackOf, Staged: opt.Staged,
	}
	if m.By == "" {
		m.By = whoAmI()
	}
	for {
		if err := s.putBlob(ctx, m.Hash, bundle); err != nil {
			return Meta{}, err
		}
		ok, err := s.putRecord(ctx, &m)
		if err != nil || ok {
			return m, err
		}
		// Another deploy took the number (or a prune took the blob): again.
		if err := ctx.Err(); err != nil {
			return Meta{}, fmt.Errorf("store deploy: %w", err)
		}
	}
}

// putBlob writes the chunks of bundle that are not stored yet.
func (s *Store) putBlob(ctx context.Context, hash string, bundle []byte) error {
	have, err := s.cli.Get(ctx, s.blobKey(hash), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("store deploy: read blob: %w", err)
	}
	stored := map[string]bool{}
	for _, kv := range have.Kvs {
		stored[string(kv.Key)] = true
	}
	for i := 0; i*ChunkSize < len(bundle); i++ {
		k := s.chunkKey(hash, i)
		if stored[k] {
			continue
		}
		chunk := bundle[i*ChunkSize : min((i+1)*ChunkSize, len(bundle))]
		if _, err := s.cli.Put(ctx, k, string(chunk)); err != nil {
			return fmt.Errorf("store deploy: chunk %d: %w", i, err)
		}
	}
	return nil
}

// putRecord tries once to store m as the next number; false: the counter
// moved or the blob went missing since they were read.
func (s *Store) putRecord(ctx context.Context, m *Meta) (bool, error) {
	read, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.counterKey()), clientv3.OpGet(s.rolloutKey())).Commit()
	if err != nil {
		return false, fmt.Errorf("store deploy: read counter: %w", err)
	}
	// No deploy while a rollout runs: it would change what the rollout's
	// hosts run under it, or race its completion.
	rolloutRev, err := rolloutGuard(read.Responses[1].GetResponseRange().Kvs)
	if err != nil {
		return false, fmt.Errorf("store deploy: %w", err)
	}
	resp := read.Responses[0].GetResponseRange()
	var last, rev int64
	if len(resp.Kvs) > 0 {
		if last, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil || last < 0 {
			return false, fmt.Errorf("%w: deploy counter %q is not a number", ErrCorrupt, resp.Kvs[0].Value)
		}
		rev = resp.Kvs[0].ModRevision
	}
	m.Number = last + 1
	rec, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("store deploy: %w", err)
	}
	num := strconv.FormatInt(m.Number, 10)
	ops := []clientv3.Op{
		clientv3.OpPut(s.counterKey(), num),
		clientv3.OpPut(s.recordKey(m.Number), string(rec)),
	}
	if !m.Staged {
		// Every host runs it: also those a rollout halted without
		// rollback left on their target.
		ops = append(ops, clientv3.OpPut(s.currentKey(), num), clientv3.OpDelete(s.ns+"target/", clientv3.WithPrefix()))
	}
	// A prune deletes a blob's chunks in one transaction: the first and
	// the last still there means all are.
	tr, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(s.counterKey()), "=", rev),
		clientv3.Compare(clientv3.ModRevision(s.rolloutKey()), "=", rolloutRev),
		clientv3.Compare(clientv3.CreateRevision(s.chunkKey(m.Hash, 0)), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(s.chunkKey(m.Hash, m.Chunks-1)), ">", 0),
	).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("store deploy %d: %w", m.Number, err)
	}
	return tr.Succeeded, nil
}

func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}

// Meta returns deploy n's record.
func (s *Store) Meta(ctx context.Context, n int64) (Meta, error) {
	m, _, err := s.meta(ctx, n)
	return m, err
}

func (s *Store) meta(ctx context.Context, n int64) (Meta, int64, error) {
	resp, err := s.cli.Get(ctx, s.recordKey(n))
	if err != nil {
		return Meta{}, 0, fmt.Errorf("read deploy %d: %w", n, err)
	}
	if len(resp.Kvs) == 0 {
		return Meta{}, 0, fmt.Errorf("deploy %d: %w", n, ErrNotFound)
	}
	m, err := decodeMeta(resp.Kvs[0].Value)
	if err != nil {
		return Meta{}, 0, fmt.Errorf("deploy %d: %w", n, err)
	}
	return m, resp.Header.Revision, nil
}

// decodeMeta reads a record, checking what later becomes a key or a bound.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: record: %w", ErrCorrupt, err)
	}
	hexHash, ok := strings.CutPrefix(m.Hash, "sha256:")
	if _, err := hex.DecodeString(hexHash); !ok || err != nil || len(hexHash) != 64 {
		return Meta{}, fmt.Errorf("%w: hash %q: want sha256:<64 hex digits>", ErrCorrupt, m.Hash)
	}
	if m.Size <= 0 || m.Size > MaxBundle || int64(m.Chunks) != (m.Size+ChunkSize-1)/ChunkSize {
		return Meta{}, fmt.Errorf("%w: size %d in %d chunks", ErrCorrupt, m.Size, m.Chunks)
	}
	return m, nil
}

// Get returns deploy n's record and bundle, checked against its hash.
func (s *Store) Get(ctx context.Context, n int64) (Meta, []byte, error) {
	m, rev, err := s.meta(ctx, n)
	if err != nil {
		return Meta{}, nil, err
	}
	buf := make([]byte, 0, m.Size)
	for i := range m.Chunks {
		// At the record's revision: the chunks as they were with it.
		resp, err := s.cli.Get(ctx, s.chunkKey(m.Hash, i), clientv3.WithRev(rev))
		if err != nil {
			return Meta{}, nil, fmt.Errorf("read deploy %d: chunk %d: %w", n, i, err)
		}
		if len(resp.Kvs) == 0 {
			return Meta{}, nil, fmt.Errorf("deploy %d: %w: chunk %d of %d is missing", n, ErrCorrupt, i, m.Chunks)
		}
		if v := resp.Kvs[0].Value; len(v) > ChunkSize || int64(len(buf)+len(v)) > m.Size {
			return Meta{}, nil, fmt.Errorf("deploy %d: %w: chunk %d is %d bytes", n, ErrCorrupt, i, len(v))
		}
		buf = append(buf, resp.Kvs[0].Value...)
	}
	if int64(len(buf)) != m.Size {
		return Meta{}, nil, fmt.Errorf("deploy %d: %w: %d bytes, the record says %d", n, ErrCorrupt, len(buf), m.Size)
	}
	if h := Hash(buf); h != m.Hash {
		return Meta{}, nil, fmt.Errorf("deploy %d: %w: the bytes hash to %s, the record says %s", n, ErrCorrupt, h, m.Hash)
	}
	return m, buf, nil
}

// List returns the records in the history, oldest first.
func (s *Store) List(ctx context.Context) ([]Meta, error) {
	resp, err := s.cli.Get(ctx, s.recordPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list deploys: %w", err)
	}
	out := make([]Meta, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m, err := decodeMeta(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// Latest returns the newest deploy's record, staged or not.
func (s *Store) Latest(ctx context.Context) (Meta, error) {
	resp, err := s.cli.Get(ctx, s.recordPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return Meta{}, fmt.Errorf("latest deploy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Meta{}, fmt.Errorf("latest: %w", ErrNotFound)
	}
	return decodeMeta(resp.Kvs[0].Value)
}

// Current returns the record of the deploy every host without a target runs.
func (s *Store) Current(ctx context.Context) (Meta, error) {
	resp, err := s.cli.Get(ctx, s.currentKey())
	if err != nil {
		return Meta{}, fmt.Errorf("current deploy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Meta{}, fmt.Errorf("current: %w", ErrNotFound)
	}
	n, err := parseNumber(resp.Kvs[0].Value)
	if err != nil {
		return Meta{}, fmt.Errorf("current: %w", err)
	}
	return s.Meta(ctx, n)
}

func parseNumber(v []byte) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: deploy number %q", ErrCorrupt, v)
	}
	return n, nil
}

// Rollback stores deploy n's bundle again as a new deploy with RollbackOf
// n, and makes it current. n 0 is the newest deploy older than current.
func (s *Store) Rollback(ctx context.Context, n int64, opt PutOptions) (Meta, error) {
	if n == 0 {
		cur, err := s.Current(ctx)
		if err != nil {
			return Meta{}, fmt.Errorf("rollback: %w", err)
		}
		all, err := s.List(ctx)
		if err != nil {
			return Meta{}, fmt.Errorf("rollback: %w", err)
		}
		for _, m := range all {
			if m.Number < cur.Number {
				n = m.Number
			}
		}
		if n == 0 {
			return Meta{}, fmt.Errorf("rollback: no deploy before the current one (%d): %w", cur.Number, ErrNotFound)
		}
	}
	old, bundle, err := s.Get(ctx, n)
	if err != nil {
		return Meta{}, fmt.Errorf("rollback: %w", err)
	}
	opt.RollbackOf = n
	if opt.Git == nil {
		opt.Git = old.Git
	}
	if opt.Message == "" {
		opt.Message = fmt.Sprintf("rollback to %d", n)
	}
	return s.Put(ctx, bundle, opt)
}

// maxPruneOps bounds the deletes in one transaction: etcd's default limit
// is 128 operations.
const maxPruneOps = 100

// Prune deletes all but the newest keep records (keep <= 0: DefaultKeep),
// never the current one nor a host's target, and the blobs no remaining
// record uses. It returns how many records it deleted.
func (s *Store) Prune(ctx context.Context, keep int) (int, error) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	for attempt := 0; ; attempt++ {
		n, ok, err := s.pruneOnce(ctx, keep)
		if err != nil || ok {
			return n, err
		}
		if attempt == 10 {
			return n, fmt.Errorf("prune: deploys keep arriving: try again")
		}
	}
}

func (s *Store) pruneOnce(ctx context.Context, keep int) (int, bool, error) {
	// One read of everything at one revision; every delete is guarded by
	// the counter and current not having moved since.
	tr, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.counterKey()),
		clientv3.OpGet(s.currentKey()),
		clientv3.OpGet(s.recordPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(s.ns+"target/", clientv3.WithPrefix()),
		clientv3.OpGet(s.blobPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("prune: %w", err)
	}
	rs := tr.Responses
	modRev := func(r *clientv3.GetResponse) int64 {
		if len(r.Kvs) == 0 {
			return 0
		}
		return r.Kvs[0].ModRevision
	}
	counter, current := rs[0].GetResponseRange(), rs[1].GetResponseRange()
	guard := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.counterKey()), "=", modRev((*clientv3.GetResponse)(counter))),
		clientv3.Compare(clientv3.ModRevision(s.currentKey()), "=", modRev((*clientv3.GetResponse)(current))),
	}
	pinned := map[string]bool{} // numbers as text: current and targets
	for _, kv := range current.Kvs {
		pinned[string(kv.Value)] = true
	}
	for _, kv := range rs[3].GetResponseRange().Kvs {
		pinned[string(kv.Value)] = true
	}
	records := rs[2].GetResponseRange().Kvs // sorted by key: oldest first
	var dels []clientv3.Op
	used := map[string]bool{} // hex hashes
	for i, kv := range records {
		m, err := decodeMeta(kv.Value)
		old := i < len(records)-keep
		if old && (err != nil || !pinned[strconv.FormatInt(m.Number, 10)]) {
			dels = append(dels, clientv3.OpDelete(string(kv.Key)))
			continue
		}
		if err == nil {
			used[strings.TrimPrefix(m.Hash, "sha256:")] = true
		}
	}
	pruned := len(dels)
	doomed := map[string]bool{}
	for _, kv := range rs[4].GetResponseRange().Kvs {
		h, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), s.blobPrefix()), "/")
		if !used[h] && !doomed[h] {
			doomed[h] = true
			// The whole blob in one delete: a deploy storing it again
			// sees all of its chunks or none (see putRecord).
			dels = append(dels, clientv3.OpDelete(s.blobPrefix()+h+"/", clientv3.WithPrefix()))
		}
	}
	for len(dels) > 0 {
		batch := dels[:min(len(dels), maxPruneOps)]
		dels = dels[len(batch):]
		tr, err := s.cli.Txn(ctx).If(guard...).Then(batch...).Commit()
		if err != nil {
			return 0, false, fmt.Errorf("prune: %w", err)
		}
		if !tr.Succeeded {
			return 0, false, nil
		}
	}
	return pruned, true, nil
}
