package core

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Handler does the work of a run. It returns a JSON-marshalable result or an
// error; it should return promptly when ctx is cancelled (the run was
// cancelled or the executor is shutting down). ReportProgress works on ctx.
type Handler func(ctx context.Context, params map[string]any) (any, error)

// HandlerKey is the registry key of a handler, "kind:name" as in Python
// ("task:refresh_sec").
func HandlerKey(kind Kind, name string) string { return string(kind) + ":" + name }

// Registry maps "kind:name" to handlers. The zero value is ready to use and
// safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// Register adds the handler for kind:name; registering a key twice is an
// error so two packages cannot silently shadow each other.
func (r *Registry) Register(kind Kind, name string, h Handler) error {
	if !kind.Valid() {
		return &InvalidSpecError{Field: "kind", Reason: fmt.Sprintf("%q is not a kind", kind)}
	}
	if name == "" || h == nil {
		return fmt.Errorf("register %s: name and handler are required", HandlerKey(kind, name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := HandlerKey(kind, name)
	if _, dup := r.handlers[key]; dup {
		return fmt.Errorf("register %s: already registered", key)
	}
	if r.handlers == nil {
		r.handlers = map[string]Handler{}
	}
	r.handlers[key] = h
	return nil
}

// MustRegister is Register for program set-up, where a duplicate is a bug.
func (r *Registry) MustRegister(kind Kind, name string, h Handler) {
	if err := r.Register(kind, name, h); err != nil {
		panic(err)
	}
}

// Lookup returns the handler for key, or a *HandlerMissingError.
func (r *Registry) Lookup(key string) (Handler, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[key]
	if !ok {
		return nil, &HandlerMissingError{Key: key}
	}
	return h, nil
}

// Keys lists the registered keys, sorted.
func (r *Registry) Keys() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	keys := make([]string, 0, len(r.handlers))
	for k := range r.handlers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
