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
	maxDiffEdits = 1000     // edit distance beyond which no diff is worked out
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

// editScript is a shortest edit script of a into b (Myers' O(ND)
// algorithm, after the common head and tail are set apart), or ok false
// when it needs more than maxEdits edits.
func editScript(a, b []string, maxEdits int) (ops []op, ok bool) {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	for _, l := range a[:head] {
		ops = append(ops, op{' ', l})
	}
	mid, ok := myers(a[head:len(a)-tail], b[head:len(b)-tail], maxEdits)
	if !ok {
		return nil, false
	}
	ops = append(ops, mid...)
	for _, l := range a[len(a)-tail:] {
		ops = append(ops, op{' ', l})
	}
	return ops, true
}

// myers is the shortest edit script of a into b, keeping for each step d
// only the 2d+1 diagonals it reached (the memory is O(D²), bounded by
// maxEdits).
func myers(a, b []string, maxEdits int) ([]op, bool) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		var ops []op
		for _, l := range a {
			ops = append(ops, op{'-', l})
		}
		for _, l := range b {
			ops = append(ops, op{'+', l})
		}
		return ops, true
	}
	limit := min(n+m, maxEdits)
	off := limit + 1
	v := make([]int32, 2*limit+3)
	// trace[d] holds v[off-d-1 .. off+d+1] as it was before step d.
	var trace [][]int32
	found := -1
	for d := 0; d <= limit && found < 0; d++ {
		trace = append(trace, append([]int32(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = int(v[off+k+1])
			} else {
				x = int(v[off+k-1]) + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = int32(x)
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return nil, false
	}
	var ops []op
	x, y := n, m
	for d := found; d > 0; d-- {
		vd := trace[d]
		at := func(k int) int { return int(vd[k+d+1]) }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
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
