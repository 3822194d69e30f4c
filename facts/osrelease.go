package facts

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// readOSRelease reads etc/os-release, or usr/lib/os-release when it is
// missing (os-release(5)). Neither present: only ID, "linux".
func readOSRelease(root string) (OS, error) {
	var b []byte
	var err error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if b, err = os.ReadFile(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return OS{}, fmt.Errorf("os-release: %w", err)
	}
	vars := parseOSRelease(string(b))
	o := OS{
		ID:              vars["ID"],
		IDLike:          vars["ID_LIKE"],
		Name:            vars["NAME"],
		PrettyName:      vars["PRETTY_NAME"],
		Version:         vars["VERSION"],
		VersionID:       vars["VERSION_ID"],
		VersionCodename: vars["VERSION_CODENAME"],
	}
	if o.ID == "" {
		o.ID = "linux"
	}
	return o, nil
}

// parseOSRelease reads os-release's shell-like assignments: VAR=value,
// value unquoted or in single or double quotes, with \ escaping one of
// $ " \ ` inside double quotes. Lines it cannot read are skipped, as the
// format asks of readers.
func parseOSRelease(text string) map[string]string {
	vars := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			continue
		}
		if v, ok = unquote(v); ok {
			vars[k] = v
		}
	}
	return vars
}

func unquote(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	switch q := v[0]; q {
	case '\'':
		if len(v) < 2 || v[len(v)-1] != q {
			return "", false
		}
		return v[1 : len(v)-1], true
	case '"':
		var sb strings.Builder
		for i := 1; i < len(v); i++ {
			switch c := v[i]; {
			case c == '"':
				return sb.String(), i == len(v)-1
			case c == '\\' && i+1 < len(v) && strings.IndexByte("$\"\\`", v[i+1]) >= 0:
				i++
				sb.WriteByte(v[i])
			default:
				sb.WriteByte(c)
			}
		}
		return "", false // no closing quote
	default:
		if strings.ContainsAny(v, " \t\"'") {
			return "", false
		}
		return v, true
	}
}
