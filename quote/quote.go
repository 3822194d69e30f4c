// Package quote prints user-supplied text (names, values, paths) in
// messages and logs so that it cannot hide or disguise what surrounds it.
package quote

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxShown is how many bytes of a value String shows; the rest is cut and
// marked with "...". A message names a value, it does not repeat it.
const MaxShown = 60

// Invisible reports whether r would not show as itself on a terminal:
// control characters, format characters (among them the bidirectional
// overrides and isolates U+202A..U+202E and U+2066..U+2069, which reorder
// the text around them, and zero-width characters), spaces other than
// U+0020, line and paragraph separators, private-use, surrogate and
// unassigned code points, and the characters Unicode says to draw as
// nothing (variation selectors, Hangul fillers, the combining grapheme
// joiner) or that draw as a blank (U+2800).
func Invisible(r rune) bool {
	return r != ' ' && !unicode.IsPrint(r) ||
		unicode.In(r, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) ||
		r == '\u2800'
}

// Find returns the byte offset of the first invisible character of s, or
// of its first byte that is not UTF-8, and that character (utf8.RuneError
// for a bad byte); i is -1 when there is none.
func Find(s string) (i int, r rune) {
	for i, r := range s {
		if bad(s, i, r) || Invisible(r) {
			return i, r
		}
	}
	return -1, 0
}

// bad reports whether the rune r at s[i] stands for a byte that is not UTF-8.
func bad(s string, i int, r rune) bool {
	if r != utf8.RuneError {
		return false
	}
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// String is s for a message: shortened to MaxShown bytes, in double
// quotes, with quotes, backslashes, invisible characters and bytes that
// are not UTF-8 escaped as in Go ("\n", "\u202e", "\xff"). What it returns
// is printable text that shows exactly where the value begins and ends.
func String(s string) string {
	return `"` + shorten(s, true) + `"`
}

// Inline is s for a message where it stands without quotes, such as the
// name in file[name]: shortened and escaped as by String, but quotes and
// backslashes are kept as they are.
func Inline(s string) string {
	return shorten(s, false)
}

func shorten(s string, quoted bool) string {
	cut := len(s) > MaxShown
	if cut {
		n := MaxShown - 3
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	var b strings.Builder
	b.Grow(len(s) + 5)
	escape(&b, s, quoted, true)
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// Escape escapes the invisible characters and bad bytes of a whole
// message, keeping its newlines and tabs: the last line of defence for
// text printed to a terminal, where a value reached a message unquoted.
func Escape(s string) string {
	for i, r := range s {
		if r != '\n' && r != '\t' && (bad(s, i, r) || Invisible(r)) {
			var b strings.Builder
			b.Grow(len(s) + 16)
			b.WriteString(s[:i])
			escape(&b, s[i:], false, false)
			return b.String()
		}
	}
	return s
}

// escape writes s to b with its invisible characters and bad bytes
// escaped; quoted also escapes quotes and backslashes; lines escapes
// newlines and tabs too.
func escape(b *strings.Builder, s string, quoted, lines bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case quoted && (r == '"' || r == '\\'):
			b.WriteByte('\\')
			b.WriteRune(r)
		case !lines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case Invisible(r):
			switch r {
			case '\a':
				b.WriteString(`\a`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\v':
				b.WriteString(`\v`)
			default:
				if r < utf8.RuneSelf {
					fmt.Fprintf(b, `\x%02x`, r)
				} else if r < 0x10000 {
					fmt.Fprintf(b, `\u%04x`, r)
				} else {
					fmt.Fprintf(b, `\U%08x`, r)
				}
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
}
