package coretest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"

	"github.com/fraise-dev/fraise/core"
)

// RuleStore keeps observer rules in memory (core.RuleStore). Put and
// Delete change them, as the rule API's functions do in the database; each
// change moves RulesVersion at once and, unless the store is silent,
// notifies Changed's subscribers. It is safe for concurrent use.
type RuleStore struct {
	mu      sync.Mutex
	rules   map[string]core.Rule
	order   []string // ids in creation order
	version int64
	silent  bool
	subs    map[chan struct{}]struct{}
}

var _ core.RuleStore = (*RuleStore)(nil)

// NewRuleStore returns a store holding rules, each created as Put would.
func NewRuleStore(rules ...core.Rule) *RuleStore {
	s := &RuleStore{rules: map[string]core.Rule{}, subs: map[chan struct{}]struct{}{}}
	for _, r := range rules {
		s.Put(r)
	}
	return s
}

// Put creates r, or replaces the rule with r's id, and returns the rule as
// stored. A new rule gets a UUID when r.ID is empty and version 1; a
// replaced one the next version. Columns are kept sorted and without
// repeats (nil stays nil: the rule names none), as the database keeps them.
func (s *RuleStore) Put(r core.Rule) core.Rule {
	r = cloneRule(r)
	if r.Columns != nil {
		slices.Sort(r.Columns)
		r.Columns = slices.Compact(r.Columns)
	}
	s.mu.Lock()
	if r.ID == "" {
		r.ID = newUUID()
	}
	if old, ok := s.rules[r.ID]; ok {
		r.Version = old.Version + 1
	} else {
		r.Version = 1
		s.order = append(s.order, r.ID)
	}
	s.rules[r.ID] = r
	s.changedLocked()
	s.mu.Unlock()
	return cloneRule(r)
}

// Delete removes the rule with id and reports whether there was one.
func (s *RuleStore) Delete(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rules[id]; !ok {
		return false
	}
	delete(s.rules, id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
	s.changedLocked()
	return true
}

// Rule returns the rule with id as stored, and whether there is one.
func (s *RuleStore) Rule(id string) (core.Rule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rules[id]
	return cloneRule(r), ok
}

// SetSilent stops (true) or resumes (false) notifying Changed's
// subscribers of changes, as when the store's notification connection is
// lost, or the process does not lead; RulesVersion moves either way.
func (s *RuleStore) SetSilent(silent bool) {
	s.mu.Lock()
	s.silent = silent
	s.mu.Unlock()
}

func (s *RuleStore) changedLocked() {
	s.version++
	if s.silent {
		return
	}
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// EnabledRules implements core.RuleStore, in creation order.
func (s *RuleStore) EnabledRules(context.Context) ([]core.Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []core.Rule
	for _, id := range s.order {
		if r := s.rules[id]; r.Enabled {
			out = append(out, cloneRule(r))
		}
	}
	return out, nil
}

// Changed implements core.RuleStore.
func (s *RuleStore) Changed(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	out := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.subs, ch)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// RulesVersion implements core.RuleStore: it counts the changes.
func (s *RuleStore) RulesVersion(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

// cloneRule copies r's slices, so that a caller changing a rule it was
// given or gave does not change the store.
func cloneRule(r core.Rule) core.Rule {
	r.Operations = slices.Clone(r.Operations)
	r.Columns = slices.Clone(r.Columns)
	r.Actions = slices.Clone(r.Actions)
	for i := range r.Actions {
		r.Actions[i].To = slices.Clone(r.Actions[i].To)
	}
	return r
}

// newUUID returns a random (version 4) UUID, the form the database gives
// rule ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
