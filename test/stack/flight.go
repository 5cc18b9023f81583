package stack

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// FlightClient returns a Flight client of addr (the gateway, or one of the
// core's ports, to which it presents the gateway's certificate), closed
// when tb ends.
func (s *Stack) FlightClient(tb testing.TB, addr string) flight.Client {
	tb.Helper()
	c, err := flight.NewClientWithMiddleware(addr, nil, nil,
		grpc.WithTransportCredentials(credentials.NewTLS(s.TLSConfig(tb, true, addr))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		// Windows wide enough for bulk transfer whatever the round trip:
		// gRPC's 64 KiB default throttles a stream to window/RTT.
		grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(32<<20))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Bearer returns ctx with tok as the call's bearer token.
func Bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
