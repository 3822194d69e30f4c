package etcd

import (
	"crypto/tls"
	"fmt"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// TLSFiles names the PEM files that secure etcd traffic. The same files
// serve both sides: an agent's embedded server presents Cert to clients and
// peers and demands theirs signed by CA; its client presents Cert to
// servers. Cert therefore needs both the server and client key usages, and
// IP or DNS SANs for the addresses it is reached at.
type TLSFiles struct {
	CA   string // --etcd-ca: the CA that signs every agent's and member's certificate
	Cert string // --etcd-cert
	Key  string // --etcd-key
}

func (f *TLSFiles) validate() error {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return fmt.Errorf("%w: TLS needs a CA, a certificate and a key (--etcd-ca, --etcd-cert, --etcd-key)", ErrConfig)
	}
	return nil
}

func (f *TLSFiles) clientConfig() (*tls.Config, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	info := transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client TLS: %w", err)
	}
	return cfg, nil
}
