package facts

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// iface is what addresses needs of an interface.
type iface struct {
	name     string
	up       bool
	loopback bool
	addrs    []netip.Prefix
}

func interfaces() ([]iface, error) {
	nifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("addresses: %w", err)
	}
	ifs := make([]iface, 0, len(nifs))
	for _, n := range nifs {
		as, err := n.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", n.Name, err)
		}
		i := iface{name: n.Name, up: n.Flags&net.FlagUp != 0, loopback: n.Flags&net.FlagLoopback != 0}
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			bits, _ := ipn.Mask.Size()
			ip = ip.Unmap()
			if ip.Is4() && bits > 32 {
				bits -= 96 // a 16-byte mask of an IPv4 address
			}
			i.addrs = append(i.addrs, netip.PrefixFrom(ip, bits))
		}
		ifs = append(ifs, i)
	}
	return ifs, nil
}

// addresses keeps the addresses worth templating on: those of interfaces
// that are up, neither loopback nor link-local (fe80::/10, 169.254/16 are
// per link, and not how another host reaches this one). Sorted by
// interface, then address (IPv4 before IPv6), duplicates dropped.
func addresses(ifs []iface) []Address {
	out := []Address{}
	for _, i := range ifs {
		if !i.up || i.loopback {
			continue
		}
		for _, p := range i.addrs {
			a := p.Addr()
			if !p.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() {
				continue
			}
			out = append(out, Address{Interface: i.name, Prefix: p})
		}
	}
	slices.SortFunc(out, compareAddress)
	return slices.CompactFunc(out, func(a, b Address) bool { return compareAddress(a, b) == 0 })
}

func compareAddress(a, b Address) int {
	return cmp.Or(
		cmp.Compare(a.Interface, b.Interface),
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
	)
}
