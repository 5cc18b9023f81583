package security_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"

	"github.com/fraise-dev/fraise/test/stack"
)

var flightAttacks = []attack{
	{
		name: "flight-masked-column-without-scope", class: classFlight,
		does: "exports people.users (User.email is @mask) as an analyst without read:User.email (security #13, defect 9)",
		want: "the emails masked as GraphQL masks them; no address leaves PostgreSQL",
		run: func(t *testing.T, e *env) string {
			ctx := stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst"))
			got := e.flightUsers(t, ctx)
			for name, email := range got {
				if !strings.Contains(email, "***") || strings.Contains(email, aliceEmail) {
					t.Errorf("%s: got %q, want it masked", name, email)
				}
			}
			return fmt.Sprintf("masked: %d emails as GraphQL shows them", len(got))
		},
	},
	{
		name: "flight-auth-column-without-scope", class: classFlight,
		does: "exports blog.posts (Post.internalNote is @auth) as an analyst without read:Post.internalNote",
		want: "internal_note NULL in every row",
		run: func(t *testing.T, e *env) string {
			if n := e.count(t, "SELECT count(*) FROM public.posts WHERE tenant_id = $1 AND internal_note IS NOT NULL", acme); n == 0 {
				t.Fatal("Acme has no internal note to protect")
			}
			rows, notes := e.flightNotes(t, stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst")))
			if rows == 0 || notes != 0 {
				t.Fatalf("got %d rows, %d notes, want rows and no note", rows, notes)
			}
			return fmt.Sprintf("hidden: internal_note NULL in all %d rows", rows)
		},
	},
	{
		name: "flight-filter-by-masked-column", class: classFlight,
		does: "filters people.users on the masked email (eq alice@acme.test), to learn the address one guess at a time",
		want: "PERMISSION_DENIED",
		run: func(t *testing.T, e *env) string {
			return e.flightInfoRefused(t, e.token(t, acme, "ann", "analyst"),
				cmdDescriptor(`{"dataset":"people.users","where":{"email":{"eq":"alice@acme.test"}}}`), codes.PermissionDenied)
		},
	},
	{
		name: "flight-order-by-hidden-column", class: classFlight,
		does: "orders blog.posts by the @auth internal_note, to learn the notes' order",
		want: "PERMISSION_DENIED",
		run: func(t *testing.T, e *env) string {
			return e.flightInfoRefused(t, e.token(t, acme, "ann", "analyst"),
				cmdDescriptor(`{"dataset":"blog.posts","order":[{"column":"internal_note"}]}`), codes.PermissionDenied)
		},
	},
	{
		name: "flight-viewer", class: classFlight,
		does: "a viewer, whom the policy gives no Flight method, asks for an export",
		want: "PERMISSION_DENIED from extauthz",
		run: func(t *testing.T, e *env) string {
			return e.flightInfoRefused(t, e.token(t, acme, "victor", "viewer"), usersDescriptor(), codes.PermissionDenied)
		},
	},
	{
		name: "flight-view-not-exportable", class: classFlight,
		does: "an admin asks for views nobody declared exportable (public.v_user, fraise.api_keys) by path and by command",
		want: "NOT_FOUND for each",
		run: func(t *testing.T, e *env) string {
			admin := e.token(t, acme, "alice", "admin")
			var got string
			for _, d := range []*flight.FlightDescriptor{
				{Type: flight.DescriptorPATH, Path: []string{"public", "v_user"}},
				{Type: flight.DescriptorPATH, Path: []string{"fraise", "api_keys"}},
				cmdDescriptor(`{"dataset":"public.v_user"}`),
			} {
				got = e.flightInfoRefused(t, admin, d, codes.NotFound)
			}
			return got + " (3 descriptors)"
		},
	},
	{
		name: "flight-filter-value-is-sql", class: classFlight,
		does: "filters people.users on name eq ' OR '1'='1",
		want: "no row: filter values are bound parameters, never SQL",
		run: func(t *testing.T, e *env) string {
			ctx, cancel := context.WithTimeout(stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst")), 30*time.Second)
			defer cancel()
			c := e.s.FlightClient(t, e.s.Addrs.Gateway)
			info, err := c.GetFlightInfo(ctx, cmdDescriptor(`{"dataset":"people.users","where":{"name":{"eq":"' OR '1'='1"}}}`))
			if err != nil {
				t.Fatal(err)
			}
			recs, err := readTicket(ctx, c, info.Endpoint[0].Ticket)
			if err != nil {
				t.Fatal(err)
			}
			if n := releaseRows(recs); n != 0 {
				t.Fatalf("got %d rows, want none", n)
			}
			return "no row"
		},
	},
	{
		name: "flight-write", class: classFlight,
		does: "an admin calls DoPut with rows for people.users",
		want: "refused: exports are read-only",
		run: func(t *testing.T, e *env) string {
			ctx, cancel := context.WithTimeout(stack.Bearer(context.Background(), e.token(t, acme, "alice", "admin")), 30*time.Second)
			defer cancel()
			stream, err := e.s.FlightClient(t, e.s.Addrs.Gateway).DoPut(ctx)
			if err == nil {
				err = stream.Send(&flight.FlightData{FlightDescriptor: usersDescriptor(), DataBody: []byte("rows")})
			}
			if err == nil {
				_ = stream.CloseSend()
				_, err = stream.Recv()
			}
			if err == nil {
				t.Fatal("DoPut succeeded, want it refused")
			}
			if c := codeOf(err); c != codes.Unimplemented && c != codes.PermissionDenied && c != codes.InvalidArgument {
				t.Fatalf("got %v, want Unimplemented, PermissionDenied or InvalidArgument", err)
			}
			return "refused " + codeOf(err).String()
		},
	},
}

func cmdDescriptor(cmd string) *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(cmd)}
}

// flightInfoRefused asks for d's FlightInfo through the gateway as tok and
// checks the refusal code.
func (e *env) flightInfoRefused(t *testing.T, tok string, d *flight.FlightDescriptor, want codes.Code) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(stack.Bearer(context.Background(), tok), 30*time.Second)
	defer cancel()
	info, err := e.s.FlightClient(t, e.s.Addrs.Gateway).GetFlightInfo(ctx, d)
	if err == nil {
		t.Fatalf("got a FlightInfo (%d endpoints), want %v", len(info.Endpoint), want)
	}
	return wantGRPCCode(t, err, want)
}

// flightNotes exports blog.posts as ctx's caller and returns the rows and
// how many of them carry an internal note.
func (e *env) flightNotes(t *testing.T, ctx context.Context) (rows, notes int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := e.s.FlightClient(t, e.s.Addrs.Gateway)
	info, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"blog", "posts"}})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readTicket(ctx, c, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		col := rec.Column(rec.Schema().FieldIndices("internal_note")[0]).(*array.String)
		for r := 0; r < int(rec.NumRows()); r++ {
			rows++
			if !col.IsNull(r) {
				notes++
			}
		}
		rec.Release()
	}
	return rows, notes
}

// releaseRows releases recs and returns how many rows they held.
func releaseRows(recs []arrow.RecordBatch) int {
	var n int
	for _, r := range recs {
		n += int(r.NumRows())
		r.Release()
	}
	return n
}
