package facts

import (
	"encoding/json"
	"maps"
	"slices"
)

// Data is what a graph's templates see: the most used facts as fields
// ({{ .Hostname }}, {{ .FQDN }}, {{ .Labels.role }}) and every fact by its
// name in Facts ({{ .Facts.os.id }}, {{ .Facts.cpus }}).
type Data struct {
	Hostname string
	FQDN     string
	Labels   map[string]string
	Facts    map[string]any
}

// Data returns the template data of f. It shares nothing with f.
func (f Facts) Data() Data {
	return Data{Hostname: f.Hostname, FQDN: f.FQDN, Labels: maps.Clone(f.Labels), Facts: f.Map()}
}

// Map returns every fact by its stable name: nested maps (map[string]any)
// of strings, ints, uint64 and []string, never nil. It is what `mgmt facts`
// prints and what templates see as .Facts; docs/fleet.md lists the names.
func (f Facts) Map() map[string]any {
	all4, all6 := []string{}, []string{}
	byIf := map[string]any{}
	for _, a := range f.Addresses {
		ifm, _ := byIf[a.Interface].(map[string]any)
		if ifm == nil {
			ifm = map[string]any{"ipv4": []string{}, "ipv6": []string{}}
			byIf[a.Interface] = ifm
		}
		fam := "ipv6"
		if a.Prefix.Addr().Is4() {
			fam = "ipv4"
		}
		ifm[fam] = append(ifm[fam].([]string), a.Prefix.Addr().String())
	}
	// The flat lists are sorted by address, across interfaces, and hold an
	// address once even when two interfaces have it.
	sorted := slices.Clone(f.Addresses)
	slices.SortFunc(sorted, func(a, b Address) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	for i, a := range sorted {
		if i > 0 && a.Prefix.Addr() == sorted[i-1].Prefix.Addr() {
			continue
		}
		if a.Prefix.Addr().Is4() {
			all4 = append(all4, a.Prefix.Addr().String())
		} else {
			all6 = append(all6, a.Prefix.Addr().String())
		}
	}
	labels := make(map[string]any, len(f.Labels))
	for k, v := range f.Labels {
		labels[k] = v
	}
	return map[string]any{
		"hostname": f.Hostname,
		"fqdn":     f.FQDN,
		"os": map[string]any{
			"id":               f.OS.ID,
			"id_like":          f.OS.IDLike,
			"name":             f.OS.Name,
			"pretty_name":      f.OS.PrettyName,
			"version":          f.OS.Version,
			"version_id":       f.OS.VersionID,
			"version_codename": f.OS.VersionCodename,
		},
		"arch":         f.Arch,
		"machine":      f.Machine,
		"kernel":       f.Kernel,
		"cpus":         f.CPUs,
		"memory_bytes": f.MemoryBytes,
		"addresses":    map[string]any{"ipv4": all4, "ipv6": all6},
		"interfaces":   byIf,
		"version":      f.Version,
		"labels":       labels,
	}
}

// MarshalJSON writes Map: every key sorted, at every level.
func (f Facts) MarshalJSON() ([]byte, error) {
	return json.Marshal(f.Map())
}
