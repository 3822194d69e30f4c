package exec

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n ", nil},
		{"sleep 10s", []string{"sleep", "10s"}},
		{"  echo   hello\tworld  ", []string{"echo", "hello", "world"}},
		{`echo 'hello world'`, []string{"echo", "hello world"}},
		{`echo "hello world"`, []string{"echo", "hello world"}},
		{`echo ''`, []string{"echo", ""}},
		{`echo "" x`, []string{"echo", "", "x"}},
		{`echo a'b'"c"d`, []string{"echo", "abcd"}},
		{`echo hello\ world`, []string{"echo", "hello world"}},
		{`echo \'`, []string{"echo", "'"}},
		{`echo \"`, []string{"echo", `"`}},
		{`echo \\`, []string{"echo", `\`}},
		{`echo \$HOME`, []string{"echo", "$HOME"}},
		{`echo \|`, []string{"echo", "|"}},
		{`echo '$HOME | x > y; z & (w)'`, []string{"echo", "$HOME | x > y; z & (w)"}},
		{`echo 'it'\''s'`, []string{"echo", "it's"}},
		{`echo "a\"b"`, []string{"echo", `a"b`}},
		{`echo "a\\b"`, []string{"echo", `a\b`}},
		{`echo "a\$b"`, []string{"echo", `a$b`}},
		{"echo \"a\\`b\"", []string{"echo", "a`b"}},
		{`echo "a\nb"`, []string{"echo", `a\nb`}}, // other backslashes stay in double quotes
		{`echo 'a\nb'`, []string{"echo", `a\nb`}}, // and in single quotes
		{`echo "it's"`, []string{"echo", "it's"}}, // single quote inside double quotes
		{`echo '"quoted"'`, []string{"echo", `"quoted"`}},
		{"echo a\\\nb", []string{"echo", "ab"}},                       // backslash-newline joins
		{"echo \"a\\\nb\"", []string{"echo", "ab"}},                   // also inside double quotes
		{"echo 'a\nb'", []string{"echo", "a\nb"}},                     // newline kept in single quotes
		{"echo a\n", []string{"echo", "a"}},                           // YAML's "cmd: |" ends in a newline
		{"\n\techo a \n\n  ", []string{"echo", "a"}},                  // blank lines around the command
		{`find . -name *.go`, []string{"find", ".", "-name", "*.go"}}, // no globbing
		{`echo ~ #x a=b`, []string{"echo", "~", "#x", "a=b"}},         // no expansion, no comment
		{`find . \( -name a \)`, []string{"find", ".", "(", "-name", "a", ")"}},
		{"héllo wörld", []string{"héllo", "wörld"}},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		if err != nil {
			t.Errorf("SplitArgs(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitArgsErrors(t *testing.T) {
	tests := []struct {
		in     string
		reason error
		offset int
		msg    string
	}{
		{`echo 'abc`, ErrUnterminatedQuote, 5, `unterminated quote ' opened at offset 5: close it`},
		{`echo "abc`, ErrUnterminatedQuote, 5, `unterminated quote " opened at offset 5: close it`},
		{`echo "abc\"`, ErrUnterminatedQuote, 5, `unterminated quote " opened at offset 5: close it`},
		{`echo "abc\`, ErrUnterminatedQuote, 5, `unterminated quote " opened at offset 5: close it`},
		{`echo abc\`, ErrTrailingBackslash, 8, `backslash at the end of the line at offset 8`},
		{"echo a\x00b", ErrNUL, 6, `NUL byte at offset 6`},
		{"echo 'a\x00b'", ErrNUL, 7, `NUL byte at offset 7`},
		{"echo \"a\x00b\"", ErrNUL, 7, `NUL byte at offset 7`},
		{"echo \\\x00", ErrNUL, 6, `NUL byte at offset 6`},
		{`echo a | wc`, ErrShellSyntax, 7, `"|" at offset 7 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`echo a > /tmp/x`, ErrShellSyntax, 7, `">" at offset 7 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`cat < x`, ErrShellSyntax, 4, `"<" at offset 4 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`true; false`, ErrShellSyntax, 4, `";" at offset 4 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`true && false`, ErrShellSyntax, 5, `"&" at offset 5 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`sleep 1 &`, ErrShellSyntax, 8, `"&" at offset 8 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`(cd /)`, ErrShellSyntax, 0, `"(" at offset 0 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"mkdir -p /x\ntouch /x/y", ErrShellSyntax, 11, `"\n" at offset 11 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`echo $HOME`, ErrShellSyntax, 5, `"$" at offset 5 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{`echo "$HOME"`, ErrShellSyntax, 6, `"$" at offset 6 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)`},
		{"echo `date`", ErrShellSyntax, 5, "\"`\" at offset 5 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)"},
		{"echo \"`date`\"", ErrShellSyntax, 6, "\"`\" at offset 6 needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)"},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		var se *SplitError
		if !errors.As(err, &se) {
			t.Errorf("SplitArgs(%q) = %q, %v; want a *SplitError", tt.in, got, err)
			continue
		}
		if !errors.Is(err, tt.reason) || se.Offset != tt.offset {
			t.Errorf("SplitArgs(%q): reason %v at %d, want %v at %d", tt.in, se.Err, se.Offset, tt.reason, tt.offset)
		}
		if err.Error() != tt.msg {
			t.Errorf("SplitArgs(%q) error:\n got %s\nwant %s", tt.in, err, tt.msg)
		}
	}
}

// shQuote is the inverse of SplitArgs for one word: single quotes, with each
// single quote inside written as '\”.
func shQuote(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"sleep 10s", `echo 'a b' "c\"d" e\ f`, `a"`, `x\`, "a|b", "\"\\\n\"", "'it'\\''s'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitArgs(s)
		if err != nil {
			var se *SplitError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset >= len(s) {
				t.Fatalf("SplitArgs(%q): bad error %#v", s, err)
			}
			return
		}
		// Quoting every word and splitting again gives the same words.
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = shQuote(a)
		}
		again, err := SplitArgs(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, args) {
			t.Fatalf("SplitArgs(%q) = %q; re-quoted gives %q, %v", s, args, again, err)
		}
	})
}
