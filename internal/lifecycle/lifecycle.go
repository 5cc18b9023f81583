// Package lifecycle composes a process out of components that own their
// resources. A component opens what it needs (listeners, pools, files)
// before anything serves, so that a bad address or an unreachable database
// fails the start; it then runs until told to stop; and it releases what it
// holds, whichever way it got there. A Group opens components in order,
// runs them together, stops them all when one fails or the context ends,
// and closes them in reverse order: the wiring of a command is a list of
// components, not a list of exit paths that each close what was opened.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Component is a part of a process that owns resources.
//
// Open acquires them (binds listeners, opens pools, reads keys) and returns
// an error naming what failed; nothing serves yet. Run serves until ctx
// ends, then drains (finishes the work under way, refuses new work) and
// returns nil, or returns an error when it cannot go on. Close releases
// what Open acquired; it is called exactly once by a Group, also after a
// failed Open (and must then release what that Open got before failing),
// and also when Run was never called.
type Component interface {
	Open(ctx context.Context) error
	Run(ctx context.Context) error
	Close() error
}

// Func is a Component made of functions; a nil one does nothing, and a nil
// OnRun waits for its context to end: a component that only holds
// resources.
type Func struct {
	OnOpen  func(ctx context.Context) error
	OnRun   func(ctx context.Context) error
	OnClose func() error
}

// Open calls OnOpen.
func (f Func) Open(ctx context.Context) error {
	if f.OnOpen == nil {
		return nil
	}
	return f.OnOpen(ctx)
}

// Run calls OnRun, or waits for ctx to end.
func (f Func) Run(ctx context.Context) error {
	if f.OnRun == nil {
		<-ctx.Done()
		return nil
	}
	return f.OnRun(ctx)
}

// Close calls OnClose.
func (f Func) Close() error {
	if f.OnClose == nil {
		return nil
	}
	return f.OnClose()
}

// ErrDrainTimeout is returned by Group.Run when components were still
// draining at the group's Drain deadline; the error names them.
var ErrDrainTimeout = errors.New("drain deadline passed")

// Group is a Component made of components: Open opens them in the order
// they were added, Run runs them together, Close closes them in reverse
// order. A Group is itself a Component, so a process nests the groups of
// its parts (`fraise dev` runs the core's, extauthz's, ...).
type Group struct {
	// Stopping, when set, is called once when the group starts to stop,
	// whatever the reason, before Linger: where a component reports
	// not-ready, so that load balancers move away before it drains.
	Stopping func()
	// Linger keeps the components running this long after ctx ends, still
	// serving what reaches them while load balancers catch up. A failed
	// component stops the group at once, without it.
	Linger time.Duration
	// Drain, when positive, bounds how long Run waits for the components
	// to return once told to stop. Past it Run returns ErrDrainTimeout
	// naming those still running, and Close releases their resources
	// under them.
	Drain time.Duration
	// Together opens the components at once instead of in order, for
	// parts that do not depend on each other and each take a while to
	// open (`fraise dev`'s extauthz, which tests its policy, and core).
	// When any fails, Open waits for the others and closes them all.
	Together bool

	parts  []*part
	mu     sync.Mutex
	opened int // parts[:opened] were opened (the last maybe failing)
}

type part struct {
	name      string
	c         Component
	closeOnce sync.Once
	closeErr  error
}

func (p *part) close() error {
	p.closeOnce.Do(func() { p.closeErr = p.c.Close() })
	return p.closeErr
}

// after is the clock of Linger and Drain, replaced in tests.
var after = time.After

// Add appends c, named name in errors, to the components of g. Add every
// component before Open.
func (g *Group) Add(name string, c Component) {
	g.parts = append(g.parts, &part{name: name, c: c})
}

// Open opens the components in order. When one fails, Open closes it and
// those opened before it, in reverse order, and returns its error joined
// with theirs: nothing is left open, and Close has nothing more to do.
func (g *Group) Open(ctx context.Context) error {
	if g.Together {
		return g.openTogether(ctx)
	}
	for i, p := range g.parts {
		g.mu.Lock()
		g.opened = i + 1
		g.mu.Unlock()
		if err := p.c.Open(ctx); err != nil {
			return errors.Join(err, g.Close())
		}
	}
	return nil
}

func (g *Group) openTogether(ctx context.Context) error {
	g.mu.Lock()
	g.opened = len(g.parts)
	g.mu.Unlock()
	errs := make([]error, len(g.parts))
	var wg sync.WaitGroup
	for i, p := range g.parts {
		wg.Go(func() { errs[i] = p.c.Open(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return errors.Join(err, g.Close())
	}
	return nil
}

// Run runs the opened components together until ctx ends or one of them
// returns an error, then stops them all (after Stopping and Linger) and
// waits for them to return, at most Drain. It returns the components'
// errors joined; a component that returns nil before ctx ends stops alone.
// Run does not close: call Close after it.
func (g *Group) Run(ctx context.Context) error {
	g.mu.Lock()
	parts := g.parts[:g.opened]
	g.mu.Unlock()
	// The components' context ends when the group decides, not when ctx
	// does: Linger keeps them running past it. Its values stay.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	type result struct {
		name string
		err  error
	}
	done := make(chan result, len(parts))
	running := make(map[string]int, len(parts))
	for _, p := range parts {
		running[p.name]++
		go func() { done <- result{p.name, p.c.Run(runCtx)} }()
	}
	var errs []error
	failed := false
	finish := func(r result) {
		running[r.name]--
		if running[r.name] == 0 {
			delete(running, r.name)
		}
		if r.err != nil && !(runCtx.Err() != nil && errors.Is(r.err, context.Canceled)) {
			errs = append(errs, r.err)
			failed = true
		}
	}
	for stopped := false; !stopped && len(running) > 0; {
		select {
		case <-ctx.Done():
			stopped = true
		case r := <-done:
			finish(r)
			stopped = failed
		}
	}
	if g.Stopping != nil {
		g.Stopping()
	}
	if g.Linger > 0 && len(errs) == 0 && len(running) > 0 {
		linger := after(g.Linger)
	wait:
		for len(errs) == 0 && len(running) > 0 {
			select {
			case <-linger:
				break wait
			case r := <-done:
				finish(r)
			}
		}
	}
	stop()
	var deadline <-chan time.Time
	if g.Drain > 0 {
		deadline = after(g.Drain)
	}
	for len(running) > 0 {
		select {
		case r := <-done:
			finish(r)
		case <-deadline:
			// What returned by the deadline counts as drained.
			for more := true; more; {
				select {
				case r := <-done:
					finish(r)
				default:
					more = false
				}
			}
			if len(running) == 0 {
				break
			}
			names := make([]string, 0, len(running))
			for _, p := range parts {
				if running[p.name] > 0 {
					names = append(names, p.name)
				}
			}
			return errors.Join(append(errs, fmt.Errorf("%w (%s): still running: %s", ErrDrainTimeout, g.Drain, strings.Join(names, ", ")))...)
		}
	}
	return errors.Join(errs...)
}

// Close closes the components opened, in reverse order, each once, and
// returns their errors joined. It is safe after a failed Open and more
// than once.
func (g *Group) Close() error {
	g.mu.Lock()
	parts := g.parts[:g.opened]
	g.mu.Unlock()
	var errs []error
	for i := len(parts) - 1; i >= 0; i-- {
		if err := parts[i].close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", parts[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// Run opens c, runs it until ctx ends or it fails, and closes it: a
// command's whole life. It returns the errors of the three joined.
func Run(ctx context.Context, c Component) error {
	if err := c.Open(ctx); err != nil {
		return errors.Join(err, c.Close())
	}
	err := c.Run(ctx)
	return errors.Join(err, c.Close())
}
