package file

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of the diffs the file resource reports: a diff is for a person to
// read, and must not cost a check more than a small fraction of its time.
const (
	maxDiffInput = 1 << 20  // bytes of either side; larger: sizes and hashes only
	maxDiffLines = 20000    // lines of either side
	maxDiffEdits = 2000     // edit distance beyond which no diff is worked out
	maxDiffOut   = 64 << 10 // bytes of diff; the rest is cut, and says so
	diffContext  = 3        // lines of context around each change
)

// isBinary: text a diff can show is valid UTF-8 without NUL bytes.
func isBinary(b []byte) bool {
	return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b)
}

// splitLines splits b into lines, each with its newline (the last may have
// none).
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i+1]))
		b = b[i+1:]
	}
	return out
}

// op is one line of an edit script: ' ' kept, '-' removed, '+' added.
type op struct {
	kind byte
	line string
}

// editScript is Myers' O(ND) shortest edit script of a into b, or ok false
// when it needs more than maxEdits edits.
func editScript(a, b []string, maxEdits int) (ops []op, ok bool) {
	n, m := len(a), len(b)
	max := min(n+m, maxEdits)
	off := max + 1
	v := make([]int, 2*max+3)
	var trace [][]int
	found := -1
	for d := 0; d <= max && found < 0; d++ {
		trace = append(trace, append([]int(nil), v...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return nil, false
	}
	// Walk back from (n, m) through the saved frontiers.
	x, y := n, m
	for d := found; d > 0; d-- {
		vd := trace[d]
		k := x - y
		var pk int
		if k == -d || (k != d && vd[off+k-1] < vd[off+k+1]) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := vd[off+pk]
		py := px - pk
		for x > px && y > py {
			x, y = x-1, y-1
			ops = append(ops, op{' ', a[x]})
		}
		if x == px {
			y--
			ops = append(ops, op{'+', b[y]})
		} else {
			x--
			ops = append(ops, op{'-', a[x]})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		ops = append(ops, op{' ', a[x]})
	}
	for i, j := 0, len(ops)-1; i < j; i, j = i+1, j-1 {
		ops[i], ops[j] = ops[j], ops[i]
	}
	return ops, true
}

// unifiedDiff is the unified diff of old into new for path, with diffContext
// lines of context, at most maxDiffOut bytes. It returns "" and a reason
// when no diff can be shown (binary, too large, too different).
func unifiedDiff(path string, old, new []byte) (diff, why string) {
	switch {
	case isBinary(old) || isBinary(new):
		return "", "binary"
	case len(old) > maxDiffInput || len(new) > maxDiffInput:
		return "", fmt.Sprintf("too large to diff (over %d KiB)", maxDiffInput>>10)
	}
	a, b := splitLines(old), splitLines(new)
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return "", fmt.Sprintf("too large to diff (over %d lines)", maxDiffLines)
	}
	ops, ok := editScript(a, b, maxDiffEdits)
	if !ok {
		return "", fmt.Sprintf("too different to diff (over %d lines changed)", maxDiffEdits)
	}
	var w strings.Builder
	fmt.Fprintf(&w, "--- %s\n+++ %s (wanted)\n", path, path)
	// Hunks: runs of changes with their context, merged when close.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-diffContext)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			j := end
			for j < len(ops) && ops[j].kind == ' ' {
				j++
			}
			if j == len(ops) || j-end > 2*diffContext {
				end = min(len(ops), end+diffContext)
				break
			}
			end = j
		}
		aLine, bLine := 1, 1
		for _, o := range ops[:start] {
			if o.kind != '+' {
				aLine++
			}
			if o.kind != '-' {
				bLine++
			}
		}
		aN, bN := 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aN++
			}
			if o.kind != '-' {
				bN++
			}
		}
		fmt.Fprintf(&w, "@@ -%s +%s @@\n", hunkRange(aLine, aN), hunkRange(bLine, bN))
		for _, o := range ops[start:end] {
			w.WriteByte(o.kind)
			w.WriteString(o.line)
			if !strings.HasSuffix(o.line, "\n") {
				w.WriteString("\n\\ No newline at end of file\n")
			}
			if w.Len() > maxDiffOut {
				s := w.String()[:maxDiffOut]
				if k := strings.LastIndexByte(s, '\n'); k >= 0 {
					s = s[:k+1]
				}
				return s + fmt.Sprintf("... diff cut at %d KiB\n", maxDiffOut>>10), ""
			}
		}
		i = end
	}
	return w.String(), ""
}

func hunkRange(line, n int) string {
	switch {
	case n == 0:
		return fmt.Sprintf("%d,0", line-1)
	case n == 1:
		return fmt.Sprint(line)
	default:
		return fmt.Sprintf("%d,%d", line, n)
	}
}
