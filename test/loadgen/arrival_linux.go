package loadgen

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"
)

// arrivalReader reads a TCP connection with recvmsg(2) and keeps the
// kernel's receive timestamp (SO_TIMESTAMPNS) of the latest bytes read: when
// an answer reached this machine's socket, whatever the generator's
// goroutines then waited for a CPU the server was using.
type arrivalReader struct {
	rc   syscall.RawConn
	oob  []byte
	last time.Time // the arrival of the latest bytes read; zero until a timestamp came
}

// newArrivalReader returns c's reader that timestamps arrivals, or nil when
// c is not TCP or the kernel refuses the option (answers are then timed on
// the generator's clock).
func newArrivalReader(c net.Conn) *arrivalReader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	return &arrivalReader{rc: rc, oob: make([]byte, syscall.CmsgSpace(16))}
}

// Read reads like the connection's Read (deadlines included: RawConn's
// wait honours them) and records the bytes' arrival.
func (a *arrivalReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n, oobn int
	var rerr error
	err := a.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), p, a.oob, 0)
		return rerr != syscall.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	if at, ok := parseArrival(a.oob[:oobn]); ok && at.After(a.last) {
		a.last = at
	}
	return n, nil
}

// parseArrival returns the SCM_TIMESTAMPNS of a recvmsg's control data.
func parseArrival(oob []byte) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}
