package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/core"
)

// The queue's side of reconciling it with a restored database
// (core.QueueHistory, core/observe Reconciler).
var _ core.QueueHistory = (*Queue)(nil)

// lostKey is the stream of a tenant's jobs whose changes a restore lost:
// kept for the operator to read (what would have been sent), never run and
// never replayed.
func lostKey(tenant string) string { return "fraise:{" + tenant + "}:observer:lost" }

// lostMaxLen bounds a tenant's lost stream (approximately).
const lostMaxLen = 100_000

// MaxGeneration implements core.QueueHistory: the highest generation among
// the tenants' enqueue markers.
func (q *Queue) MaxGeneration(ctx context.Context) (int, error) {
	tenants, err := q.Tenants(ctx)
	if err != nil {
		return 0, err
	}
	top := 0
	for i := 0; i < len(tenants); i += 500 {
		batch := tenants[i:min(i+500, len(tenants))]
		keys := make([]string, len(batch))
		for j, t := range batch {
			keys[j] = enqueuedKey(t)
		}
		// One GET per key: in a cluster each tenant's keys are on their own
		// slot, which MGET across tenants could not span.
		pipe := q.c.Pipeline()
		cmds := make([]*goredis.StringCmd, len(keys))
		for j, k := range keys {
			cmds[j] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return 0, mapError("redis.MaxGeneration", err)
		}
		for _, c := range cmds {
			if g := generationOfArg(c.Val()); g > top {
				top = g
			}
		}
	}
	return top, nil
}

// moveLostScript moves one entry of a stream (KEYS[1]) to the lost stream
// (KEYS[2]), acknowledging it in the consumer group ARGV[1] first, unless
// someone else removed it first: a job is recorded lost once, however many
// processes sweep at once. ARGV: group, entry id, job, reason, time, max length.
var moveLostScript = goredis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'job', ARGV[3], 'reason', ARGV[4], 'at', ARGV[5])
  return 1
end
return 0
`)

// moveLostMemberScript is moveLostScript for a member of the delayed set.
var moveLostMemberScript = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'job', ARGV[1], 'reason', ARGV[2], 'at', ARGV[3])
  return 1
end
return 0
`)

// Sweep implements core.QueueHistory: every tenant's stream (waiting and
// running jobs), delayed set (retries) and dead-letter stream, a page at a
// time. Entries that do not decode are left as they are.
func (q *Queue) Sweep(ctx context.Context, keep func(ctx context.Context, jobs []core.Job) ([]bool, error), reason string) (kept, moved int, err error) {
	tenants, err := q.Tenants(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tenants {
		for _, key := range []string{jobsKey(t), dlqKey(t)} {
			k, m, err := q.sweepStream(ctx, t, key, keep, reason)
			kept, moved = kept+k, moved+m
			if err != nil {
				return kept, moved, err
			}
		}
		k, m, err := q.sweepDelayed(ctx, t, keep, reason)
		kept, moved = kept+k, moved+m
		if err != nil {
			return kept, moved, err
		}
	}
	return kept, moved, nil
}

const sweepPage = 500

func (q *Queue) sweepStream(ctx context.Context, tenant, key string, keep func(context.Context, []core.Job) ([]bool, error), reason string) (kept, moved int, err error) {
	const op = "redis.Sweep"
	start := "-"
	for {
		msgs, err := q.c.XRangeN(ctx, key, start, "+", sweepPage).Result()
		if err != nil {
			return kept, moved, mapError(op, err)
		}
		var (
			jobs []core.Job
			ids  []string
			raws []string
		)
		for _, m := range msgs {
			raw, _ := m.Values["job"].(string)
			var j core.Job
			if json.Unmarshal([]byte(raw), &j) != nil || j.Tenant != tenant {
				continue
			}
			jobs, ids, raws = append(jobs, j), append(ids, m.ID), append(raws, raw)
		}
		if len(jobs) > 0 {
			ok, err := keep(ctx, jobs)
			if err != nil {
				return kept, moved, err
			}
			now := strconv.FormatInt(time.Now().UnixMilli(), 10)
			for i := range jobs {
				if ok[i] {
					kept++
					continue
				}
				n, err := moveLostScript.Run(ctx, q.c, []string{key, lostKey(tenant)}, Group, ids[i], raws[i], reason, now, lostMaxLen).Int()
				if err != nil {
					return kept, moved, mapError(op, err)
				}
				moved += n
			}
		}
		if len(msgs) < sweepPage {
			return kept, moved, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

func (q *Queue) sweepDelayed(ctx context.Context, tenant string, keep func(context.Context, []core.Job) ([]bool, error), reason string) (kept, moved int, err error) {
	const op = "redis.Sweep"
	var cursor uint64
	for {
		page, next, err := q.c.ZScan(ctx, delayedKey(tenant), cursor, "", sweepPage).Result()
		if err != nil {
			return kept, moved, mapError(op, err)
		}
		var (
			jobs []core.Job
			raws []string
		)
		for i := 0; i+1 < len(page); i += 2 { // member, score
			var j core.Job
			if json.Unmarshal([]byte(page[i]), &j) != nil || j.Tenant != tenant {
				continue
			}
			jobs, raws = append(jobs, j), append(raws, page[i])
		}
		if len(jobs) > 0 {
			ok, err := keep(ctx, jobs)
			if err != nil {
				return kept, moved, err
			}
			now := strconv.FormatInt(time.Now().UnixMilli(), 10)
			for i := range jobs {
				if ok[i] {
					kept++
					continue
				}
				n, err := moveLostMemberScript.Run(ctx, q.c, []string{delayedKey(tenant), lostKey(tenant)}, raws[i], reason, now, lostMaxLen).Int()
				if err != nil {
					return kept, moved, mapError(op, err)
				}
				moved += n
			}
		}
		if next == 0 {
			return kept, moved, nil
		}
		cursor = next
	}
}
