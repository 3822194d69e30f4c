package etcd

import clientv3 "go.etcd.io/etcd/client/v3"

// Raw returns the underlying etcd client, for packages that keep their own
// keys under Namespace (the deploy store); Close still belongs to c.
func (c *Client) Raw() *clientv3.Client { return c.cli }

// Namespace is the key prefix of all of mgmt's keys, ending in "/".
func (c *Client) Namespace() string { return c.ns }
