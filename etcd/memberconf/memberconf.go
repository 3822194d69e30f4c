// Package memberconf is what an embedded etcd member is started from and
// what it reports once started, shared by the agent and the mgmt-etcd
// process that runs the member; it imports nothing of etcd.
package memberconf

import "time"

// Config describes one etcd member, with every default already applied and
// every URL already checked by the agent (package etcd).
type Config struct {
	Name    string `json:"name"`
	DataDir string `json:"data_dir"`

	ListenClientURLs    []string `json:"listen_client_urls"`
	ListenPeerURLs      []string `json:"listen_peer_urls"`
	AdvertiseClientURLs []string `json:"advertise_client_urls"`
	AdvertisePeerURLs   []string `json:"advertise_peer_urls"`

	InitialCluster string `json:"initial_cluster,omitempty"` // empty: a cluster of this member alone
	Existing       bool   `json:"existing,omitempty"`
	ClusterToken   string `json:"cluster_token"`

	TLS *TLS `json:"tls,omitempty"`

	TickMs       uint          `json:"tick_ms,omitempty"`     // 0: etcd's default
	ElectionMs   uint          `json:"election_ms,omitempty"` // 0: etcd's default
	StartTimeout time.Duration `json:"start_timeout"`
	MaxTxnOps    uint          `json:"max_txn_ops"`
}

// TLS names the PEM files securing client and peer traffic; certificates
// are demanded from both.
type TLS struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Ready is the one line a member process writes on its stdout: the client
// URLs it advertises once ready, or why it did not start.
type Ready struct {
	Endpoints []string `json:"endpoints,omitempty"`
	Error     string   `json:"error,omitempty"`
	Kind      string   `json:"kind,omitempty"` // KindNotReady, KindAddrInUse or empty
}

// Kinds of start failure the agent tells apart.
const (
	KindNotReady  = "not_ready"
	KindAddrInUse = "addr_in_use"
)
