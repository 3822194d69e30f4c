package facts

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on labels.
const (
	MaxLabelKey   = 63  // bytes
	MaxLabelValue = 255 // bytes
)

// LabelError is a --label argument that was refused, and why.
type LabelError struct {
	Arg    string // the argument as given
	Reason string
}

func (e *LabelError) Error() string { return fmt.Sprintf("label %q: %s", e.Arg, e.Reason) }

const keyRule = "a key is 1 to 63 of A-Z a-z 0-9 _ . - /, starting and ending with a letter or digit"

// ParseLabel splits "KEY=VALUE" at its first "=". The key is 1 to
// MaxLabelKey of A-Z a-z 0-9 _ . - /, starting and ending with a letter or
// digit; the value may be empty, is at most MaxLabelValue bytes of
// printable UTF-8 (spaces included, no control characters). A refusal is a
// *LabelError.
func ParseLabel(arg string) (key, value string, err error) {
	key, value, ok := strings.Cut(arg, "=")
	if !ok {
		return "", "", &LabelError{arg, "want KEY=VALUE, e.g. role=web"}
	}
	if err := checkKey(key); err != "" {
		return "", "", &LabelError{arg, err}
	}
	switch {
	case len(value) > MaxLabelValue:
		return "", "", &LabelError{arg, fmt.Sprintf("value is %d bytes; at most %d", len(value), MaxLabelValue)}
	case !utf8.ValidString(value):
		return "", "", &LabelError{arg, "value is not valid UTF-8"}
	}
	for i, r := range value {
		if !unicode.IsPrint(r) {
			return "", "", &LabelError{arg, fmt.Sprintf("value has unprintable %U at byte %d", r, i)}
		}
	}
	return key, value, nil
}

func checkKey(key string) string {
	switch {
	case key == "":
		return "empty key; " + keyRule
	case len(key) > MaxLabelKey:
		return fmt.Sprintf("key is %d bytes; %s", len(key), keyRule)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if alnum {
			continue
		}
		if strings.IndexByte("_.-/", c) < 0 {
			r, _ := utf8.DecodeRuneInString(key[i:])
			return fmt.Sprintf("key has %q at byte %d; %s", r, i, keyRule)
		}
		if i == 0 {
			return fmt.Sprintf("key starts with %q; %s", c, keyRule)
		}
		if i == len(key)-1 {
			return fmt.Sprintf("key ends with %q; %s", c, keyRule)
		}
	}
	return ""
}

// ParseLabels parses every "KEY=VALUE" of args (--label given once each)
// into a map, never nil. A key given twice is refused, even with the same
// value: a typo in a long command line should not go unnoticed.
func ParseLabels(args []string) (map[string]string, error) {
	labels := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, err := ParseLabel(arg)
		if err != nil {
			return nil, err
		}
		if old, dup := labels[k]; dup {
			return nil, &LabelError{arg, fmt.Sprintf("%s given twice (first %s=%s)", k, k, old)}
		}
		labels[k] = v
	}
	return labels, nil
}
