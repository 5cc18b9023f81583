package observe

import "github.com/fraise-dev/fraise/core"

// ActionState is the state of the breaker that guards a tenant's action,
// and false when none has been created: no delivery to its target has run
// in this process yet, which is as good as closed. It creates nothing, so
// the console may ask about every rule without filling the set.
func (bs *Breakers) ActionState(tenant string, a core.Action) (BreakerState, bool) {
	key := tenant + "\x00" + a.Kind + "\x00" + target(a)
	bs.mu.Lock()
	b, ok := bs.m[key]
	bs.mu.Unlock()
	if !ok {
		return BreakerClosed, false
	}
	return b.State(), true
}
