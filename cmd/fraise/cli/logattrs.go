package cli

import (
	"context"
	"log/slog"
)

// uniqueAttrs is a slog.Handler whose records carry each key once: an
// attribute added later (by a narrower logger's With, or by the record
// itself) replaces one of the same key added before, instead of repeating
// it. `fraise dev` hands one logger down through components that each name
// themselves (component=core, then component=observers, ...): the line says
// the innermost.
type uniqueAttrs struct {
	next  slog.Handler // without the attributes below
	attrs []slog.Attr  // added by With, in order, keys unique
}

func newUniqueAttrs(h slog.Handler) *uniqueAttrs { return &uniqueAttrs{next: h} }

func (h *uniqueAttrs) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// WithAttrs returns a handler whose attributes are h's with attrs set over
// them.
func (h *uniqueAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &uniqueAttrs{next: h.next, attrs: setAttrs(h.attrs, attrs)}
}

// WithGroup opens a group on the handler underneath: keys inside a group
// live in their own namespace, so nothing after it needs merging here.
func (h *uniqueAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.next.WithAttrs(h.attrs).WithGroup(name)
}

func (h *uniqueAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) == 0 {
		return h.next.Handle(ctx, r)
	}
	own := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(setAttrs(h.attrs, own)...)
	return h.next.Handle(ctx, out)
}

// setAttrs returns base with each of over set: replacing base's attribute
// of the same key, where there is one, in place; appended otherwise.
func setAttrs(base, over []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(base), len(base)+len(over))
	copy(out, base)
next:
	for _, a := range over {
		for i := range out {
			if out[i].Key == a.Key {
				out[i] = a
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}
