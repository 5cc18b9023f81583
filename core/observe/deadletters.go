package observe

import (
	"context"

	"github.com/fraise-dev/fraise/core"
)

// DeadLetterList is the operators' use case over a tenant's dead-lettered
// jobs (`fraise observers dlq list|replay`): what it lists is safe to
// print, whatever a target's answer quoted.
type DeadLetterList struct {
	Store core.DeadLetters
}

// List returns up to limit dead letters of tenant, oldest first, without
// their signing secrets and with their target URLs, reasons and last
// errors redacted as the logs are (core.RedactActionURL and
// RedactActionText). It fails as Store.DeadLetters does.
func (l DeadLetterList) List(ctx context.Context, tenant string, limit int) ([]core.DeadLetter, error) {
	dls, err := l.Store.DeadLetters(ctx, tenant, limit)
	if err != nil {
		return nil, err
	}
	for i := range dls {
		d := &dls[i]
		// The texts first: they are redacted against the URL itself.
		d.Reason = core.RedactActionText(d.Reason, d.Job.Action)
		d.Job.LastError = core.RedactActionText(d.Job.LastError, d.Job.Action)
		if d.Job.Action.URL != "" {
			d.Job.Action.URL = core.RedactActionURL(d.Job.Action.Kind, d.Job.Action.URL)
		}
		d.Job.Action.Secret = ""
	}
	return dls, nil
}

// Replay moves tenant's dead letters with the given ids (all when ids is
// empty) back to its queue, attempts reset, and returns how many moved.
func (l DeadLetterList) Replay(ctx context.Context, tenant string, ids []string) (int, error) {
	return l.Store.Replay(ctx, tenant, ids)
}
