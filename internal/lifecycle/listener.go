package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Listener is a TCP listener as a component: Open binds its address (or
// keeps a listener bound before, see Adopt), Close closes it. It is closed
// exactly once, whoever asks first: the server serving on it (net/http's
// Shutdown and gRPC's Stop close their listeners) or the component.
type Listener struct {
	key, addr string
	ln        net.Listener
	once      sync.Once
	err       error
}

// Listen returns a Listener that binds addr on Open; key (the configuration
// key of the address) names it in errors.
func Listen(key, addr string) *Listener {
	return &Listener{key: key, addr: addr}
}

// Adopt returns a Listener owning ln, bound already (by a caller that had
// to know the port first); Open keeps it, Close closes it.
func Adopt(ln net.Listener) *Listener {
	return &Listener{addr: ln.Addr().String(), ln: ln}
}

// Open binds the address, unless the listener was adopted.
func (l *Listener) Open(ctx context.Context) error {
	if l.ln != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", l.addr)
	if err != nil {
		return fmt.Errorf("%s: %w", l.key, err)
	}
	l.ln = ln
	return nil
}

// Run waits for ctx to end: the servers serving on the listener run.
func (l *Listener) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close closes the listener once; later calls return the first's error.
// Before Open it does nothing.
func (l *Listener) Close() error {
	if l.ln == nil {
		return nil
	}
	l.once.Do(func() {
		l.err = l.ln.Close()
		if errors.Is(l.err, net.ErrClosed) {
			l.err = nil
		}
	})
	return l.err
}

// Addr returns the address the listener is bound to, after Open (the port
// of :0 made concrete), else the address it will bind.
func (l *Listener) Addr() string {
	if l.ln == nil {
		return l.addr
	}
	return l.ln.Addr().String()
}

// Net returns the bound listener for a server to serve on (nil before
// Open). Closing it closes l.
func (l *Listener) Net() net.Listener {
	if l.ln == nil {
		return nil
	}
	return onceListener{l.ln, l}
}

// onceListener is the bound listener whose Close is its component's.
type onceListener struct {
	net.Listener
	l *Listener
}

func (o onceListener) Close() error { return o.l.Close() }
