package file

import "path/filepath"

// ResolvePaths makes a relative source absolute against base, the
// directory of the graph file that declared the resource, and returns the
// path it resolved (the local file a deploy bundles), or nothing when the
// source was absent or already absolute: an absolute source is a path on
// the host that runs the graph.
func (r *File) ResolvePaths(base string) []string {
	if r.Source == "" || filepath.IsAbs(r.Source) {
		return nil
	}
	r.Source = filepath.Join(base, r.Source)
	return []string{r.Source}
}
