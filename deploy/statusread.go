package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Host states in a status record (see docs/fleet.md).
const (
	StateConverging = "converging"
	StateConverged  = "converged"
	StateFailed     = "failed"
	StateDepooled   = "depooled"
	StateInvalid    = "invalid"
)

// HostStatus is what an agent publishes under NS status/<host>, attached
// to its lease. The rollout driver reads it to judge a host.
type HostStatus struct {
	Host    string      `json:"host"`
	Version string      `json:"version"`
	Deploy  int64       `json:"deploy"` // the number it runs; 0: a file
	Commit  string      `json:"commit"`
	Wanted  int64       `json:"wanted"` // the number it was told to run
	State   string      `json:"state"`
	Failed  []FailedRes `json:"failed"`
	// Held counts the resources that wait on a failed one (a group's
	// members each), not in their desired state.
	Held      int       `json:"held,omitempty"`
	Error     string    `json:"error"` // why wanted != deploy
	ChangedAt time.Time `json:"changed_at"`
	Drifts    int64     `json:"drifts"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastState is set by ReadStatus and WatchStatus on a lost host's
	// record (State "lost"): the state it last reported.
	LastState string `json:"last_state,omitempty"`
}

// FailedRes is one resource that failed on a host.
type FailedRes struct {
	Res string `json:"res"`
	Err string `json:"err"`
}

// statusPrefix is NS status/: the store's namespace is NS deploy/.
func (s *Store) statusPrefix() string { return strings.TrimSuffix(s.ns, "deploy/") + "status/" }

// ReadStatuses returns the status records of the hosts alive now (their
// key exists), by host, and the revision they were read at. A record that
// cannot be decoded is left out: its host counts as not heard from.
func (s *Store) ReadStatuses(ctx context.Context) (map[string]HostStatus, int64, error) {
	resp, err := s.cli.Get(ctx, s.statusPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read host status: %w", err)
	}
	out := make(map[string]HostStatus, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st HostStatus
		if json.Unmarshal(kv.Value, &st) != nil {
			continue
		}
		st.Host = strings.TrimPrefix(string(kv.Key), s.statusPrefix())
		out[st.Host] = st
	}
	return out, resp.Header.Revision, nil
}
