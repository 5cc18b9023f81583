package flight

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/b64url"
)

// Ticket kinds: a DoGet ticket, or a Flight SQL prepared statement handle
// (which lives longer and is exchanged for DoGet tickets).
const (
	KindTicket   = "t"
	KindPrepared = "p"
)

// ticketPrefix names the format, so a future format can coexist.
const ticketPrefix = "fr1."

// MaxTicketBytes bounds what Verify reads, and so what Issue signs.
const MaxTicketBytes = 64 << 10

// ErrTicket is the cause of every refused ticket; the reason is wrapped for
// logs.
var ErrTicket = errors.New("invalid ticket")

type ticketClaims struct {
	Kind    string `json:"k"`
	Tenant  string `json:"t"`
	Subject string `json:"s"`
	Expires int64  `json:"e"` // Unix milliseconds
	Nonce   string `json:"n"`
	Query   Query  `json:"q"`
}

// Tickets signs and verifies tickets with HMAC-SHA256. A ticket binds a
// query to the tenant and subject it was issued to and to an expiry: it is
// a bearer capability for one export, useless to anyone else or later.
type Tickets struct {
	keys atomic.Pointer[ticketKeys]
	ttl  time.Duration
	now  func() time.Time
	rand io.Reader
}

// ticketKeys are the key tickets are signed with and the one it replaced,
// which still verifies the tickets it signed.
type ticketKeys struct{ cur, prev []byte }

// NewTickets returns Tickets signing with key (at least 32 bytes) whose
// tickets last ttl. now and random may be nil (the clock and crypto/rand).
func NewTickets(key []byte, ttl time.Duration, now func() time.Time, random io.Reader) (*Tickets, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("flight: ticket key must be at least 32 bytes, got %d", len(key))
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("flight: ticket lifetime must be positive")
	}
	if now == nil {
		now = time.Now
	}
	if random == nil {
		random = rand.Reader
	}
	t := &Tickets{ttl: ttl, now: now, rand: random}
	t.keys.Store(&ticketKeys{cur: append([]byte(nil), key...)})
	return t, nil
}

// Rotate makes key (at least 32 bytes) the signing key. The key it
// replaces keeps verifying the tickets it signed until the next Rotate,
// so a ticket issued just before a rotation is still redeemed after it.
// Rotating to the current key changes nothing.
func (t *Tickets) Rotate(key []byte) error {
	if len(key) < 32 {
		return fmt.Errorf("flight: ticket key must be at least 32 bytes, got %d", len(key))
	}
	old := t.keys.Load()
	if hmac.Equal(old.cur, key) {
		return nil
	}
	t.keys.Store(&ticketKeys{cur: append([]byte(nil), key...), prev: old.cur})
	return nil
}

// Issue returns a ticket of kind for q, bound to p's tenant and subject,
// valid for ttl (the Tickets' lifetime when ttl is 0), and its expiry. A
// query whose ticket would exceed MaxTicketBytes is CodeInvalid.
func (t *Tickets) Issue(p core.Principal, kind string, q Query, ttl time.Duration) ([]byte, time.Time, error) {
	if ttl <= 0 {
		ttl = t.ttl
	}
	var nonce [12]byte
	if _, err := io.ReadFull(t.rand, nonce[:]); err != nil {
		return nil, time.Time{}, core.E("flight.Issue", core.CodeInternal, err)
	}
	exp := t.now().Add(ttl)
	c := ticketClaims{
		Kind: kind, Tenant: p.Tenant, Subject: p.Subject, Expires: exp.UnixMilli(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce[:]), Query: q,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, time.Time{}, core.E("flight.Issue", core.CodeInternal, err)
	}
	body := ticketPrefix + base64.RawURLEncoding.EncodeToString(payload)
	ticket := []byte(body + "." + base64.RawURLEncoding.EncodeToString(mac(t.keys.Load().cur, body)))
	// Verify refuses longer tickets: issuing one would answer GetFlightInfo
	// with a ticket DoGet can never redeem.
	if len(ticket) > MaxTicketBytes {
		return nil, time.Time{}, core.Errorf(core.CodeInvalid, "query too large for a ticket (%d bytes, at most %d): send fewer filter values", len(ticket), MaxTicketBytes).WithOp("flight.Issue")
	}
	return ticket, exp, nil
}

// TTL is how long the tickets Issue signs last by default.
func (t *Tickets) TTL() time.Duration { return t.ttl }

func mac(key []byte, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// IsTicket reports whether b looks like one of our tickets (it may still
// fail verification); other tickets belong to Flight SQL's commands.
func IsTicket(b []byte) bool { return strings.HasPrefix(string(b), ticketPrefix) }

// Verify checks a ticket of kind presented by p and returns its query. A
// ticket that does not verify (altered, truncated, signed with another key,
// of another kind) or has expired is CodeUnauthenticated; one issued to
// another tenant or subject is CodeForbidden.
func (t *Tickets) Verify(p core.Principal, kind string, b []byte) (Query, error) {
	const op = "flight.Verify"
	bad := func(code core.Code, msg, why string) (Query, error) {
		return Query{}, core.Errorf(code, "%s", msg).WithOp(op).Wrap(fmt.Errorf("%w: %s", ErrTicket, why))
	}
	if len(b) > MaxTicketBytes {
		return bad(core.CodeUnauthenticated, "invalid ticket", "too long")
	}
	rest, ok := strings.CutPrefix(string(b), ticketPrefix)
	if !ok {
		return bad(core.CodeUnauthenticated, "invalid ticket", "malformed")
	}
	payload, sig, ok := strings.Cut(rest, ".")
	// base64 decoders skip CR and LF, so the alphabet is checked first:
	// a ticket has exactly one spelling, and a signature cannot be
	// carried by a variant of it.
	if !ok || !b64url.Valid(payload) || !b64url.Valid(sig) {
		return bad(core.CodeUnauthenticated, "invalid ticket", "malformed")
	}
	body := ticketPrefix + payload
	got, err := b64url.Decode(sig)
	keys := t.keys.Load()
	if err != nil || !hmac.Equal(got, mac(keys.cur, body)) && (keys.prev == nil || !hmac.Equal(got, mac(keys.prev, body))) {
		return bad(core.CodeUnauthenticated, "invalid ticket", "bad signature")
	}
	raw, err := b64url.Decode(payload)
	if err != nil {
		return bad(core.CodeUnauthenticated, "invalid ticket", "bad payload encoding")
	}
	var c ticketClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return bad(core.CodeUnauthenticated, "invalid ticket", "bad payload")
	}
	if c.Kind != kind {
		return bad(core.CodeUnauthenticated, "invalid ticket", "wrong kind "+c.Kind)
	}
	if !t.now().Before(time.UnixMilli(c.Expires)) {
		return bad(core.CodeUnauthenticated, "ticket expired", "expired")
	}
	if c.Tenant != p.Tenant || c.Subject != p.Subject {
		return bad(core.CodeForbidden, "ticket was issued to another principal", "tenant or subject mismatch")
	}
	return c.Query, nil
}
