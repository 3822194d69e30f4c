package engine

import (
	"fmt"
	"sort"
	"sync"
)

var (
	registryMu sync.Mutex // guards registry
	registry   = map[string]func() Res{}
)

// Register makes a resource kind known under name. Each kind's package calls
// it from init; a second registration of the same name panics.
func Register(kind string, newRes func() Res) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[kind]; ok {
		panic(fmt.Sprintf("engine: kind %q registered twice", kind))
	}
	registry[kind] = newRes
}

// NewRes returns a zero resource of the kind, ready to be decoded into.
func NewRes(kind string) (Res, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	f, ok := registry[kind]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Kinds lists the registered kinds, sorted.
func Kinds() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	kinds := make([]string, 0, len(registry))
	for k := range registry {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}
