package exec

import (
	"errors"
	"fmt"
	"strings"
)

// Reasons a command line cannot be split; a *SplitError wraps one of them.
var (
	ErrUnterminatedQuote = errors.New("unterminated quote")
	ErrTrailingBackslash = errors.New("backslash at the end of the line")
	ErrShellSyntax       = errors.New("shell syntax outside quotes")
	ErrNUL               = errors.New("NUL byte")
)

// SplitError says where and why SplitArgs refused a command line.
type SplitError struct {
	Offset int    // byte offset of the offending character
	Char   string // the offending character, when one is to blame
	Err    error  // one of the Err* reasons above
}

func (e *SplitError) Error() string {
	switch {
	case errors.Is(e.Err, ErrShellSyntax):
		return fmt.Sprintf("%q at offset %d needs a shell: quote or escape it, or set shell (e.g. shell: /bin/sh)", e.Char, e.Offset)
	case errors.Is(e.Err, ErrUnterminatedQuote):
		return fmt.Sprintf("%s %s opened at offset %d: close it", e.Err, e.Char, e.Offset)
	default:
		return fmt.Sprintf("%s at offset %d", e.Err, e.Offset)
	}
}

func (e *SplitError) Unwrap() error { return e.Err }

// SplitArgs splits a command line into argv the way a POSIX shell splits a
// simple command, without running a shell: blanks separate words (newlines
// only around the command, not inside it), single quotes keep everything
// literal, double quotes keep everything literal but \" \\ \$ \` and
// backslash-newline, and a backslash outside quotes escapes the next
// character (backslash-newline joins lines). Nothing is expanded: globs, ~
// and # are plain characters. What a shell would act on instead (| & ; < >
// ( ) and a newline between words outside quotes, $ and ` outside single
// quotes) is refused with ErrShellSyntax, so that a command written for a
// shell fails validation instead of running with the wrong arguments.
func SplitArgs(s string) ([]string, error) {
	var (
		args   []string
		word   strings.Builder
		inWord bool // a word has started, even an empty one ("")
	)
	end := func() {
		if inWord {
			args = append(args, word.String())
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case 0:
			return nil, &SplitError{Offset: i, Err: ErrNUL}
		case '\n':
			// A shell runs the lines of a script one after the other: a
			// newline between words needs a shell, as ';' does.
			if (inWord || len(args) > 0) && strings.TrimLeft(s[i+1:], " \t\r\n") != "" {
				return nil, &SplitError{Offset: i, Char: "\n", Err: ErrShellSyntax}
			}
			end()
		case ' ', '\t', '\r':
			end()
		case '\\':
			if i+1 == len(s) {
				return nil, &SplitError{Offset: i, Err: ErrTrailingBackslash}
			}
			i++
			if s[i] == 0 {
				return nil, &SplitError{Offset: i, Err: ErrNUL}
			}
			if s[i] != '\n' { // backslash-newline joins lines
				word.WriteByte(s[i])
				inWord = true
			}
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, &SplitError{Offset: i, Char: "'", Err: ErrUnterminatedQuote}
			}
			lit := s[i+1 : i+1+j]
			if k := strings.IndexByte(lit, 0); k >= 0 {
				return nil, &SplitError{Offset: i + 1 + k, Err: ErrNUL}
			}
			word.WriteString(lit)
			inWord = true
			i += j + 1
		case '"':
			next, err := doubleQuoted(s, i, &word)
			if err != nil {
				return nil, err
			}
			inWord = true
			i = next
		case '|', '&', ';', '<', '>', '(', ')', '$', '`':
			return nil, &SplitError{Offset: i, Char: string(c), Err: ErrShellSyntax}
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	end()
	return args, nil
}

// doubleQuoted reads the double-quoted string opening at s[open] into word
// and returns the offset of its closing quote.
func doubleQuoted(s string, open int, word *strings.Builder) (int, error) {
	for i := open + 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return i, nil
		case 0:
			return 0, &SplitError{Offset: i, Err: ErrNUL}
		case '$', '`':
			return 0, &SplitError{Offset: i, Char: string(c), Err: ErrShellSyntax}
		case '\\':
			if i+1 == len(s) {
				break // unterminated: reported below
			}
			switch s[i+1] {
			case '"', '\\', '$', '`':
				word.WriteByte(s[i+1])
				i++
			case '\n':
				i++
			default:
				word.WriteByte(c) // a shell keeps other backslashes in double quotes
			}
		default:
			word.WriteByte(c)
		}
	}
	return 0, &SplitError{Offset: open, Char: `"`, Err: ErrUnterminatedQuote}
}
