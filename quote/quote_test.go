package quote

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file1", `"file1"`},
		{"é/ü 日本", `"é/ü 日本"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"a\nb\tc\x1b[31m", `"a\nb\tc\x1b[31m"`},
		{"abc\u202egnp.exe", `"abc\u202egnp.exe"`},                 // right-to-left override
		{"\u202a\u202b\u202c\u202d", `"\u202a\u202b\u202c\u202d"`}, // embeddings, pop, LTR override
		{"\u2066\u2067\u2068\u2069", `"\u2066\u2067\u2068\u2069"`}, // isolates
		{"a\u200bb\u200dc\ufeff", `"a\u200bb\u200dc\ufeff"`},       // zero-width space, joiner, BOM
		{"a\u00a0b\u3000c", `"a\u00a0b\u3000c"`},                   // spaces that are not U+0020
		{"a\u2028b", `"a\u2028b"`},                                 // line separator
		{"x\ufe0fy\u3164z\u115f\u2800", `"x\ufe0fy\u3164z\u115f\u2800"`},
		{"\U000e0041", `"\U000e0041"`}, // a tag character
		{"\ue000", `"\ue000"`},         // private use
		{"a\xffb", `"a\xffb"`},
		{strings.Repeat("x", 100), `"` + strings.Repeat("x", MaxShown-3) + `..."`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%+q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	// A cut never splits a character.
	if got := String(strings.Repeat("é", 60)); !utf8.ValidString(got) {
		t.Errorf("cut inside a character: %q", got)
	}
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"f.yaml:1:2: plain\nnext line\tand a tab", "f.yaml:1:2: plain\nnext line\tand a tab"},
		{"res file[a\u202eb]: bad", `res file[a\u202eb]: bad`},
		{"\x1b[2J\xff", `\x1b[2J\xff`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%+q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		in string
		i  int
		r  rune
	}{
		{"plain name/é", -1, 0},
		{"ab\u2067c", 2, '\u2067'},
		{"a\xffb", 1, utf8.RuneError},
		{"a\uFFFDb", -1, 0}, // the replacement character itself is printable
		{"a b", -1, 0},
		{"a\tb", 1, '\t'},
	} {
		if i, r := Find(tc.in); i != tc.i || r != tc.r {
			t.Errorf("Find(%+q) = %d, %U; want %d, %U", tc.in, i, r, tc.i, tc.r)
		}
	}
}

func TestInline(t *testing.T) {
	if got, want := Inline("a\"b\u202ec\nd"), `a"b\u202ec\nd`; got != want {
		t.Errorf("Inline = %s, want %s", got, want)
	}
}
