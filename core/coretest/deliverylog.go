package coretest

import (
	"context"
	"sync"

	"github.com/fraise-dev/fraise/core"
)

// DeliveryLog keeps each rule's recent delivery attempts in memory
// (core.DeliveryLog), at most Cap per tenant and rule (50 when zero). It is
// safe for concurrent use; set Cap before first use.
type DeliveryLog struct {
	Cap int

	mu   sync.Mutex
	logs map[[2]string][]core.DeliveryAttempt // by tenant, rule; oldest first
}

var _ core.DeliveryLog = (*DeliveryLog)(nil)

// Record implements core.DeliveryLog.
func (l *DeliveryLog) Record(_ context.Context, tenant, rule string, d core.DeliveryAttempt) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logs == nil {
		l.logs = map[[2]string][]core.DeliveryAttempt{}
	}
	capacity := l.Cap
	if capacity <= 0 {
		capacity = 50
	}
	k := [2]string{tenant, rule}
	s := append(l.logs[k], d)
	if len(s) > capacity {
		s = append([]core.DeliveryAttempt(nil), s[len(s)-capacity:]...)
	}
	l.logs[k] = s
	return nil
}

// Recent implements core.DeliveryLog.
func (l *DeliveryLog) Recent(_ context.Context, tenant, rule string, n int) ([]core.DeliveryAttempt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.logs[[2]string{tenant, rule}]
	out := make([]core.DeliveryAttempt, 0, min(max(n, 0), len(s)))
	for i := len(s) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, s[i])
	}
	return out, nil
}
