package flightsvc_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestQueryTooLargeForATicket: every way of getting a ticket refuses a
// query whose ticket DoGet would refuse, saying why, rather than answering
// with a ticket that can never be redeemed.
func TestQueryTooLargeForATicket(t *testing.T) {
	f := mustServer(t)
	ctx := f.as(t, context.Background(), alice)
	ids := make([]string, 10000) // the most an in list may have
	for i := range ids {
		ids[i] = strconv.Itoa(1_000_000_000 + i)
	}
	sqlc := &flightsql.Client{Client: f.client}
	tests := []struct {
		name string
		call func() error
	}{
		{"GetFlightInfo", func() error {
			_, err := f.client.GetFlightInfo(ctx, &aflight.FlightDescriptor{Type: aflight.DescriptorCMD,
				Cmd: []byte(`{"dataset":"ids","where":{"id":{"in":[` + strings.Join(ids, ",") + `]}}}`)})
			return err
		}},
		{"Flight SQL statement", func() error {
			_, err := sqlc.Execute(ctx, "SELECT id FROM ids WHERE id IN ("+strings.Join(ids, ", ")+")")
			return err
		}},
		{"Flight SQL prepared statement", func() error {
			_, err := sqlc.Prepare(ctx, "SELECT id FROM ids WHERE id IN ("+strings.Join(ids, ", ")+")")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "too large for a ticket") {
				t.Errorf("got %v, want InvalidArgument saying the query is too large for a ticket", err)
			}
		})
	}
}
