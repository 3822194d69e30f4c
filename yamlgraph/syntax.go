package yamlgraph

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mgmtconfig/mgmt/quote"
	"go.yaml.in/yaml/v3"
)

// locateLimit bounds the files whose syntax errors are located by parsing
// prefixes: about 20 parses of up to the whole file (BenchmarkLocate, 128
// KiB with the error at its end: 0.8 s on a 2-core machine under a load of
// 14). Larger files get the line the YAML library reports, which may be
// where the enclosing block began.
const locateLimit = 128 << 10

// checkText refuses what is not YAML text at all, before the YAML parser
// sees it: too big, empty, UTF-16, binary, not UTF-8.
func checkText(file string, data []byte) *Error {
	whole := func(msg string) *Error { return &Error{File: file, Line: 1, Column: 1, Msg: msg} }
	switch {
	case len(data) > MaxFileSize:
		return tooBig(file, int64(len(data)))
	case len(bytes.TrimSpace(data)) == 0:
		return whole("file is empty: want a mapping with a resources: section, e.g. resources: {noop: [{name: a}]}")
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}), bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		return whole("file is UTF-16 text: save it as UTF-8")
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		line, col := position(data, i)
		return &Error{File: file, Line: line, Column: col, Msg: "file holds binary data (a NUL byte): want YAML text"}
	}
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		line, col := position(data, i)
		return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf("byte 0x%02x is not UTF-8 text: want YAML text in UTF-8", data[i])}
	}
	return nil
}

func tooBig(file string, size int64) *Error {
	return &Error{File: file, Line: 1, Column: 1, Msg: fmt.Sprintf("file is larger than %d MiB (%d bytes): not a graph a person wrote; split it, or generate a smaller one", MaxFileSize>>20, size)}
}

// position is the 1-based line and column (in characters) of byte offset i.
func position(data []byte, i int) (line, col int) {
	start := bytes.LastIndexByte(data[:i], '\n') + 1
	return bytes.Count(data[:i], []byte{'\n'}) + 1, utf8.RuneCount(data[start:i]) + 1
}

// readYAML parses the one YAML document of data. A file holding a second
// document with content is refused: a graph is one document, and a second
// one would be silently ignored.
func readYAML(file string, data []byte) (*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Line: 1, Column: 1, Msg: "file holds no YAML content (only comments or directives): want a mapping with a resources: section"}
		}
		return nil, syntaxError(file, data, err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(file, data, err)
		}
		if len(next.Content) > 0 && !isNull(next.Content[0]) {
			return nil, &Error{File: file, Line: next.Line, Column: next.Column,
				Msg: "a second YAML document starts here (after ---): want one graph per file; merge them or use two files"}
		}
	}
	return &doc, nil
}

// firstSyntaxError parses every document of data and returns the first
// syntax error, or nil.
func firstSyntaxError(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// syntaxError turns a YAML parser error into an Error at the line and
// column of the problem. The YAML library reports syntax errors only as
// text, with the line where the enclosing construct began ("yaml: line 1:
// did not find expected key" for a bad indentation on line 4), so the
// position is found by parsing prefixes of the file (see locate).
func syntaxError(file string, data []byte, err error) *Error {
	line, msg := splitYAMLError(err)
	e := &Error{File: file, Line: line}
	switch {
	case strings.HasPrefix(msg, "exceeded max depth"):
		// Each parse of a file that deep is slow (the parser recurses
		// per level): not worth 20 of them. The library's line is where
		// the too-deep value is; its first character is pointed at below.
	case len(data) <= locateLimit:
		if l, c, ok := locate(data, msg); ok {
			e.Line, e.Column = l, c
		}
	}
	if e.Line == 0 { // not located, and the library gave no line
		e.Line = 1
	}
	if e.Column == 0 {
		e.Column = firstNonBlank(data, e.Line)
	}
	e.Msg = "invalid YAML: " + msg
	e.Column = opening(msg, data, e.Line, e.Column)
	if h := syntaxHint(msg, data, e.Line, e.Column); h != "" {
		e.Msg += ": " + h
	}
	return e
}

// splitYAMLError reads the line number and the problem out of the YAML
// library's error text ("yaml: line 3: found ..."), the only form in which
// it gives them.
func splitYAMLError(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ":"); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return n, strings.TrimSpace(after)
			}
		}
	}
	return 0, msg
}

// locate finds where a syntax error is: the shortest prefix of data, first
// in whole lines and then in characters of the last line, that fails to
// parse with the same problem as the whole file. The prefix's last
// character is where the parser noticed it. Each step is a binary search,
// so about 40 parses in all. ok is false when no prefix reproduces the
// problem.
func locate(data []byte, msg string) (line, col int, ok bool) {
	fails := func(n int) bool {
		err := firstSyntaxError(data[:n])
		if err == nil {
			return false
		}
		_, m := splitYAMLError(err)
		return m == msg
	}
	// Line ends: ends[k] is the length of the prefix holding lines 1..k+1.
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if !fails(len(data)) {
		return 0, 0, false
	}
	lo, hi := -1, len(ends)-1 // prefix of lines up to lo passes; up to hi fails
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fails(ends[mid]) {
			hi = mid
		} else {
			lo = mid
		}
	}
	start := 0
	if hi > 0 {
		start = ends[hi-1]
	}
	// Character boundaries of the failing line: cut after each character.
	var cuts []int
	for i := start; i < ends[hi]; {
		_, size := utf8.DecodeRune(data[i:])
		i += size
		cuts = append(cuts, i)
	}
	clo, chi := -1, len(cuts)-1
	for chi-clo > 1 {
		mid := (clo + chi) / 2
		if fails(cuts[mid]) {
			chi = mid
		} else {
			clo = mid
		}
	}
	return hi + 1, chi + 1, true
}

// opening moves a column found by locate back to what the problem is
// about, where that is on the same line: the unclosed bracket a "did not
// find expected ','" is noticed just after, the * of an unknown alias
// noticed at the end of its name.
func opening(msg string, data []byte, line, col int) int {
	if line < 1 || col < 2 {
		return col
	}
	var before []rune
	for c := 1; c < col; c++ {
		r := charAt(data, line, c)
		if r == 0 {
			return col
		}
		before = append(before, r)
	}
	switch {
	case strings.HasPrefix(msg, "did not find expected ',' or"):
		i := len(before) - 1
		for i >= 0 && before[i] == ' ' {
			i--
		}
		if i >= 0 && (before[i] == '{' || before[i] == '[') {
			return i + 1
		}
	case strings.HasPrefix(msg, "unknown anchor"):
		if i := strings.LastIndexByte(string(before), '*'); i >= 0 {
			return utf8.RuneCountInString(string(before)[:i]) + 1
		}
	}
	return col
}

// syntaxHint says, for the YAML problems people run into most, what would
// be valid. The library gives problems only as text; an unknown one simply
// gets no hint.
func syntaxHint(msg string, data []byte, line, col int) string {
	switch {
	case strings.HasPrefix(msg, "found a tab character"):
		return "YAML indents with spaces only: replace the tab by spaces"
	case msg == "did not find expected key", strings.HasPrefix(msg, "did not find expected '-'"):
		return "this line is not indented like the lines of its block: align it with its siblings (spaces only)"
	case msg == "could not find expected ':'":
		return "want key: value; a line continuing the previous value must be indented more than its key"
	case msg == "mapping values are not allowed in this context":
		return `a ": " inside a plain value: quote the value ('a: b')`
	case msg == "found character that cannot start any token":
		return "a value cannot begin with this character unquoted (` @ %): quote the value"
	case msg == "found unexpected end of stream":
		if c := charAt(data, line, col); c == '"' || c == '\'' {
			return fmt.Sprintf("the quoted string opened here (%c) is not closed: add the closing %c", c, c)
		}
		return "the file ends inside an unfinished value: close its quotes or brackets"
	case strings.HasPrefix(msg, "did not find expected ',' or"):
		if c := charAt(data, line, col); c == '{' || c == '[' {
			return fmt.Sprintf("the %c opened here is not closed: close it, or write the value as an indented block", c)
		}
		return "a [list] or {mapping} misses a comma or its closing bracket"
	case strings.HasPrefix(msg, "exceeded max depth"):
		return "the file is nested too deeply to be a graph"
	case strings.HasPrefix(msg, "unknown anchor"):
		return "an alias (*name) must follow its anchor (&name)"
	case strings.HasPrefix(msg, "control characters are not allowed"):
		return "remove the control characters, or write them as escapes in a double-quoted string (\"\\x01\")"
	}
	return ""
}

// firstNonBlank is the column of the first character of line that is not
// a space or a tab, or 1.
func firstNonBlank(data []byte, line int) int {
	for c := 1; ; c++ {
		switch charAt(data, line, c) {
		case ' ', '\t':
			continue
		case 0:
			return 1
		}
		return c
	}
}

// charAt returns the character at 1-based line and column, or 0.
func charAt(data []byte, line, col int) rune {
	if line < 1 || col < 1 {
		return 0
	}
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return 0
		}
		data = data[i+1:]
	}
	for c := 1; len(data) > 0; c++ {
		r, size := utf8.DecodeRune(data)
		if r == '\n' {
			return 0
		}
		if c == col {
			return r
		}
		data = data[size:]
	}
	return 0
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// deref follows an alias (*name) to the node its anchor (&name) marks.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// short is text from the file for a message where it stands unquoted
// (kind[name]): shortened, its invisible characters escaped.
func short(s string) string { return quote.Inline(s) }
