//go:build mgmt_split_server

package serverbin

import _ "embed"

// Binary is the mgmt-etcd executable.
//
//go:embed mgmt-etcd
var Binary []byte
