package authztest

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// ContractKey returns a well-formed API key of tenant whose id is the
// 16-hex-digit id, created at created.
func ContractKey(tenant, id string, created time.Time) apikey.Key {
	return apikey.Key{ID: id, Tenant: tenant, Name: "key " + id, Roles: []string{"viewer"}, Scopes: []string{"read:User.email"},
		Hash: bytes.Repeat([]byte{0xab}, 32), CreatedBy: "alice", CreatedAt: created, ExpiresAt: created.Add(90 * 24 * time.Hour)}
}

// TestAPIKeyStoreContract runs apikey.Store's contract against the
// implementations newStore returns, a new one for each case. The cases
// run in parallel.
func TestAPIKeyStoreContract(t *testing.T, newStore func(t *testing.T) apikey.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	create := func(tb testing.TB, s apikey.Store, k apikey.Key) {
		tb.Helper()
		if err := s.Create(ctx, k); err != nil {
			tb.Fatalf("Create: %v", err)
		}
	}
	get := func(tb testing.TB, s apikey.Store, id string) apikey.Key {
		tb.Helper()
		k, err := s.Get(ctx, id)
		if err != nil {
			tb.Fatalf("Get: %v", err)
		}
		return k
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s apikey.Store)
	}{
		{"a created key is got back whole", func(t *testing.T, s apikey.Store) {
			want := ContractKey(TenantA, "0123456789abcdef", t0.Add(123789*time.Nanosecond))
			create(t, s, want)
			got := get(t, s, want.ID)
			if got.ID != want.ID || got.Tenant != want.Tenant || got.Name != want.Name || !slices.Equal(got.Roles, want.Roles) ||
				!slices.Equal(got.Scopes, want.Scopes) || !bytes.Equal(got.Hash, want.Hash) || got.CreatedBy != want.CreatedBy ||
				!got.ExpiresAt.Equal(want.ExpiresAt.Truncate(time.Microsecond)) || !got.RevokedAt.IsZero() || !got.LastUsedAt.IsZero() {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			// Times are kept to the microsecond, the rest dropped (as pgx
			// sends them).
			if !got.CreatedAt.Equal(t0.Add(123 * time.Microsecond)) {
				t.Fatalf("created at %v, want %v", got.CreatedAt, t0.Add(123*time.Microsecond))
			}
		}},
		{"a key's id is unique", func(t *testing.T, s apikey.Store) {
			k := ContractKey(TenantA, "0123456789abcdef", t0)
			create(t, s, k)
			k.Tenant = TenantB
			if err := s.Create(ctx, k); core.ErrorCode(err) != core.CodeConflict {
				t.Fatalf("got %v, want CONFLICT", err)
			}
		}},
		{"a malformed key is refused", func(t *testing.T, s apikey.Store) {
			for _, tc := range []struct {
				name string
				edit func(*apikey.Key)
			}{
				{"id not hex", func(k *apikey.Key) { k.ID = "0123456789abcdeX" }},
				{"id too short", func(k *apikey.Key) { k.ID = "0123" }},
				{"hash not 32 bytes", func(k *apikey.Key) { k.Hash = []byte("short") }},
				{"tenant not a UUID", func(k *apikey.Key) { k.Tenant = "acme" }},
			} {
				k := ContractKey(TenantA, "0123456789abcdef", t0)
				tc.edit(&k)
				if err := s.Create(ctx, k); core.ErrorCode(err) != core.CodeInvalid {
					t.Errorf("%s: got %v, want INVALID", tc.name, err)
				}
			}
			if _, err := s.Get(ctx, "0123456789abcdef"); core.ErrorCode(err) != core.CodeNotFound {
				t.Fatalf("after the refusals: got %v, want NOT_FOUND", err)
			}
		}},
		{"an unknown key is not found", func(t *testing.T, s apikey.Store) {
			if _, err := s.Get(ctx, "ffffffffffffffff"); core.ErrorCode(err) != core.CodeNotFound {
				t.Fatalf("got %v, want NOT_FOUND", err)
			}
		}},
		{"List gives a tenant's keys, or all, newest first", func(t *testing.T, s apikey.Store) {
			create(t, s, ContractKey(TenantA, "000000000000000a", t0))
			create(t, s, ContractKey(TenantA, "000000000000000b", t0.Add(time.Hour)))
			create(t, s, ContractKey(TenantB, "000000000000000c", t0.Add(time.Minute)))
			for _, tc := range []struct {
				tenant string
				want   []string
			}{
				{TenantA, []string{"000000000000000b", "000000000000000a"}},
				{TenantB, []string{"000000000000000c"}},
				{"", []string{"000000000000000b", "000000000000000c", "000000000000000a"}},
				{"00000000-0000-0000-0000-0000000000cc", nil},
			} {
				ks, err := s.List(ctx, tc.tenant)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, k := range ks {
					got = append(got, k.ID)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("List(%q): got %v, want %v", tc.tenant, got, tc.want)
				}
			}
		}},
		{"a key is revoked once", func(t *testing.T, s apikey.Store) {
			create(t, s, ContractKey(TenantA, "0123456789abcdef", t0))
			at := t0.Add(time.Hour)
			if err := s.Revoke(ctx, "0123456789abcdef", at); err != nil {
				t.Fatal(err)
			}
			if got := get(t, s, "0123456789abcdef").RevokedAt; !got.Equal(at) {
				t.Fatalf("revoked at %v, want %v", got, at)
			}
			if err := s.Revoke(ctx, "0123456789abcdef", at.Add(time.Hour)); core.ErrorCode(err) != core.CodeNotFound {
				t.Fatalf("revoking again: got %v, want NOT_FOUND", err)
			}
			if got := get(t, s, "0123456789abcdef").RevokedAt; !got.Equal(at) {
				t.Fatalf("after revoking again: revoked at %v, want still %v", got, at)
			}
			if err := s.Revoke(ctx, "ffffffffffffffff", at); core.ErrorCode(err) != core.CodeNotFound {
				t.Fatalf("revoking an unknown key: got %v, want NOT_FOUND", err)
			}
		}},
		{"last use never moves backwards", func(t *testing.T, s apikey.Store) {
			create(t, s, ContractKey(TenantA, "0123456789abcdef", t0))
			for _, tc := range []struct {
				at, want time.Time
			}{{t0.Add(2 * time.Minute), t0.Add(2 * time.Minute)}, {t0.Add(time.Minute), t0.Add(2 * time.Minute)}, {t0.Add(3 * time.Minute), t0.Add(3 * time.Minute)}} {
				if err := s.TouchLastUsed(ctx, map[string]time.Time{"0123456789abcdef": tc.at, "ffffffffffffffff": tc.at}); err != nil {
					t.Fatal(err)
				}
				if got := get(t, s, "0123456789abcdef").LastUsedAt; !got.Equal(tc.want) {
					t.Fatalf("touched at %v: last used %v, want %v", tc.at, got, tc.want)
				}
			}
			if err := s.TouchLastUsed(ctx, nil); err != nil {
				t.Fatalf("an empty batch: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

// DecisionLogFixture is an implementation of decisionlog.Store under test
// and the means to read what it kept.
type DecisionLogFixture struct {
	Log decisionlog.Store
	// Recorded returns every decision kept, in any order.
	Recorded func(tb testing.TB) []decisionlog.Decision
}

// NewDecisionLogFixture returns an in-memory DecisionLog.
func NewDecisionLogFixture(*testing.T) DecisionLogFixture {
	l := &DecisionLog{}
	return DecisionLogFixture{Log: l, Recorded: func(testing.TB) []decisionlog.Decision { return l.Decisions() }}
}

// NewAPIKeyStore returns an in-memory APIKeys as a apikey.Store.
func NewAPIKeyStore(*testing.T) apikey.Store { return &APIKeys{} }

// TestDecisionLogContract runs decisionlog.Store's contract against the
// implementations newLog returns, a new one for each case. The cases run
// in parallel.
func TestDecisionLogContract(t *testing.T, newLog func(t *testing.T) DecisionLogFixture) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	decision := func(id, tenant string) decisionlog.Decision {
		return decisionlog.Decision{ID: id, RequestID: "req-" + id, At: at, Subject: "apikey:0123456789abcdef", Tenant: tenant,
			Kind: core.KindAPIKey, Operation: "query", OperationName: "Orders", Allow: true, Status: 200,
			Reason: "allowed", PolicyRevision: "rev1", Latency: 1500 * time.Microsecond}
	}
	byID := func(ds []decisionlog.Decision) map[string]decisionlog.Decision {
		out := map[string]decisionlog.Decision{}
		for _, d := range ds {
			out[d.ID] = d
		}
		return out
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f DecisionLogFixture)
	}{
		{"a batch is kept whole", func(t *testing.T, f DecisionLogFixture) {
			want := []decisionlog.Decision{decision("d1", TenantA), decision("d2", TenantB)}
			want[1].Allow, want[1].Status, want[1].Reason = false, 403, "denied"
			if err := f.Log.RecordDecisions(ctx, want); err != nil {
				t.Fatal(err)
			}
			got := byID(f.Recorded(t))
			if len(got) != 2 {
				t.Fatalf("got %d decisions, want 2", len(got))
			}
			for _, w := range want {
				g := got[w.ID]
				if !g.At.Equal(w.At) {
					t.Errorf("%s: at %v, want %v", w.ID, g.At, w.At)
				}
				g.At = w.At
				if !reflect.DeepEqual(g, w) {
					t.Errorf("got %+v, want %+v", g, w)
				}
			}
		}},
		{"a decision recorded again is kept once, as it first came", func(t *testing.T, f DecisionLogFixture) {
			first := decision("d1", TenantA)
			again := first
			again.Reason = "changed"
			for _, batch := range [][]decisionlog.Decision{{first}, {again, decision("d2", TenantA)}} {
				if err := f.Log.RecordDecisions(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
			got := byID(f.Recorded(t))
			if len(got) != 2 || got["d1"].Reason != first.Reason {
				t.Fatalf("got %+v, want d1 as first recorded and d2", got)
			}
		}},
		{"a tenant that is not a UUID is kept as none", func(t *testing.T, f DecisionLogFixture) {
			if err := f.Log.RecordDecisions(ctx, []decisionlog.Decision{decision("d1", "acme")}); err != nil {
				t.Fatal(err)
			}
			if got := f.Recorded(t); len(got) != 1 || got[0].Tenant != "" {
				t.Fatalf("got %+v, want one decision without a tenant", got)
			}
		}},
		{"an empty batch is nothing to record", func(t *testing.T, f DecisionLogFixture) {
			if err := f.Log.RecordDecisions(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if got := f.Recorded(t); len(got) != 0 {
				t.Fatalf("got %+v, want none", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newLog(t))
		})
	}
}

// The tenants the contract cases use: UUIDs, as the database's table wants.
const (
	TenantA = "00000000-0000-0000-0000-0000000000aa"
	TenantB = "00000000-0000-0000-0000-0000000000bb"
)
