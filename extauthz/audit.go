package extauthz

import (
	"context"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// auditBatch and auditInterval bound how many decisions one write holds and
// how long a decision waits for it; auditQueue bounds memory when the audit
// store is slow. A full queue drops decisions (counted and logged) rather
// than slowing Check: the decision log line is always written.
const (
	auditBatch    = 256
	auditInterval = time.Second
	auditQueue    = 8192
)

// auditor writes decisions to a decisionlog.Store off the request path.
type auditor struct {
	log     decisionlog.Store
	logger  *slog.Logger
	ch      chan decisionlog.Decision
	dropped atomic.Int64
	done    chan struct{}
	once    sync.Once
}

func newAuditor(l decisionlog.Store, logger *slog.Logger) *auditor {
	a := &auditor{log: l, logger: logger, ch: make(chan decisionlog.Decision, auditQueue), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *auditor) add(d decisionlog.Decision) {
	select {
	case a.ch <- d:
	default:
		a.dropped.Add(1)
	}
}

func (a *auditor) run() {
	defer close(a.done)
	t := time.NewTicker(auditInterval)
	defer t.Stop()
	batch := make([]decisionlog.Decision, 0, auditBatch)
	flush := func() {
		if n := a.dropped.Swap(0); n > 0 {
			a.logger.LogAttrs(context.Background(), slog.LevelWarn, "audit queue full; decisions not stored in the audit table",
				slog.Int64("dropped", n))
		}
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.log.RecordDecisions(ctx, batch); err != nil {
			a.logger.LogAttrs(ctx, slog.LevelError, "audit write failed; decisions are in the decision log only",
				slog.Int("decisions", len(batch)), slog.String("err", err.Error()), slog.String("code", string(core.ErrorCode(err))))
		}
		cancel()
		batch = batch[:0]
	}
	for {
		select {
		case d, ok := <-a.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, d)
			if len(batch) == auditBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// close writes what is queued and stops.
func (a *auditor) close() {
	a.once.Do(func() {
		close(a.ch)
		<-a.done
	})
}

// Secrets a reason might quote (a library error echoing its input): a JWT
// keeps its first segment's start, an API key its id.
var (
	jwtLike    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	apiKeyLike = regexp.MustCompile(`(frs_[0-9a-f]{16}_)[a-z2-7]+`)
)

// mask removes credentials from s, a reason bound for logs.
func mask(s string) string {
	s = apiKeyLike.ReplaceAllString(s, "${1}***")
	return jwtLike.ReplaceAllStringFunc(s, func(t string) string { return t[:8] + "***" })
}
