//go:build !linux

package loadgen

import (
	"net"
	"time"
)

// arrivalReader is Linux's; elsewhere answers are timed on the generator's
// clock.
type arrivalReader struct {
	net.Conn
	last time.Time
}

func newArrivalReader(net.Conn) *arrivalReader { return nil }
