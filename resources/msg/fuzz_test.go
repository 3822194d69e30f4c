package msg

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts encodes to an entry whose fields journald would take: valid
// names, the priority a digit from 0 to 7, MESSAGE the body.
func FuzzValidate(f *testing.F) {
	f.Add("hello", "Info", "role", "web")
	f.Add("a\nb", "", "_X", "")
	f.Add("", "loud", "message", "x\ny")
	f.Fuzz(func(t *testing.T, body, prio, field, value string) {
		r := &Msg{Body: body, Priority: prio, Fields: map[string]string{field: value}}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		if r.prio < 0 || r.prio > 7 {
			t.Fatalf("priority %q accepted as %d", prio, r.prio)
		}
		e := decode(t, encodeJournal(r.Body, r.prio, r.flds))
		if e["MESSAGE"] != body || e["PRIORITY"] != strconv.Itoa(r.prio) || e[strings.ToUpper(field)] != value {
			t.Fatalf("entry %q from body %q, priority %q, %s=%q", e, body, prio, field, value)
		}
		for k := range e {
			if k != "MESSAGE" && k != "PRIORITY" && !validField(k) {
				t.Fatalf("accepted field %q", k)
			}
		}
	})
}
