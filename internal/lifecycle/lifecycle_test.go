package lifecycle_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/lifecycle"
)

// journal records what the fake components did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// fake is a component that records its calls. Its Run waits for its
// context, or returns runErr as soon as fail is closed; ignoreStop makes it
// keep running after its context ends, until release is closed.
type fake struct {
	name       string
	j          *journal
	openErr    error
	fail       chan struct{}
	runErr     error
	ignoreStop bool
	release    chan struct{}
	running    chan struct{} // closed when Run starts
	stopped    chan struct{} // closed when Run's context ends
}

func newFake(j *journal, name string) *fake {
	return &fake{name: name, j: j, fail: make(chan struct{}), release: make(chan struct{}),
		running: make(chan struct{}), stopped: make(chan struct{})}
}

func (f *fake) Open(context.Context) error {
	f.j.add("open " + f.name)
	return f.openErr
}

func (f *fake) Run(ctx context.Context) error {
	close(f.running)
	select {
	case <-ctx.Done():
		close(f.stopped)
		if f.ignoreStop {
			<-f.release
		}
		f.j.add("stopped " + f.name)
		return nil
	case <-f.fail:
		f.j.add("failed " + f.name)
		return f.runErr
	}
}

func (f *fake) Close() error {
	f.j.add("close " + f.name)
	return nil
}

func group(j *journal, g *lifecycle.Group, names ...string) map[string]*fake {
	fs := map[string]*fake{}
	for _, n := range names {
		fs[n] = newFake(j, n)
		g.Add(n, fs[n])
	}
	return fs
}

func TestGroupOpenFailure(t *testing.T) {
	errBind := errors.New("server.http_addr: address in use")
	for _, tc := range []struct {
		name    string
		failing string
		want    []string
	}{
		{"first fails", "a", []string{"open a", "close a"}},
		{"middle fails", "b", []string{"open a", "open b", "close b", "close a"}},
		{"last fails", "c", []string{"open a", "open b", "open c", "close c", "close b", "close a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			g := &lifecycle.Group{}
			fs := group(j, g, "a", "b", "c")
			fs[tc.failing].openErr = errBind
			if err := g.Open(context.Background()); !errors.Is(err, errBind) {
				t.Fatalf("Open: got %v, want %v", err, errBind)
			}
			// Close after a failed Open has nothing left to close.
			if err := g.Close(); err != nil {
				t.Fatalf("Close after a failed Open: %v", err)
			}
			if got := j.get(); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGroupOpenTogether(t *testing.T) {
	errBind := errors.New("authz.grpc_addr: address in use")
	for _, tc := range []struct {
		name    string
		failing string
		want    error
	}{
		{"all open", "", nil},
		{"one fails", "b", errBind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			g := &lifecycle.Group{Together: true}
			fs := map[string]*blockingOpen{}
			// Each Open returns only once every Open has started: in
			// order, the first would wait for ever.
			started := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(3)
			go func() { wg.Wait(); close(started) }()
			for _, n := range []string{"a", "b", "c"} {
				fs[n] = &blockingOpen{fake: newFake(j, n), wg: &wg, started: started}
				g.Add(n, fs[n])
			}
			if tc.failing != "" {
				fs[tc.failing].openErr = tc.want
			}
			err := g.Open(context.Background())
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Open: got %v, want %v", err, tc.want)
			}
			closed := 0
			for _, e := range j.get() {
				if strings.HasPrefix(e, "close ") {
					closed++
				}
			}
			if want := map[bool]int{true: 0, false: 3}[tc.want == nil]; closed != want {
				t.Fatalf("got %q, want %d closed", j.get(), want)
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// blockingOpen is a fake whose Open waits until every Open of its group
// has started.
type blockingOpen struct {
	*fake
	wg      *sync.WaitGroup
	started chan struct{}
}

func (b *blockingOpen) Open(ctx context.Context) error {
	b.wg.Done()
	<-b.started
	return b.fake.Open(ctx)
}

func TestGroupRunStopsOnContextAndClosesInReverse(t *testing.T) {
	j := &journal{}
	g := &lifecycle.Group{}
	fs := group(j, g, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, g) }()
	for _, f := range fs {
		<-f.running
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	got := j.get()
	if want := []string{"open a", "open b", "open c"}; !slices.Equal(got[:3], want) {
		t.Fatalf("opened %q, want %q", got[:3], want)
	}
	if want := []string{"close c", "close b", "close a"}; !slices.Equal(got[6:], want) {
		t.Fatalf("closed %q, want %q", got[6:], want)
	}
	// Every Run returned before anything was closed.
	for _, e := range got[3:6] {
		if !strings.HasPrefix(e, "stopped ") {
			t.Fatalf("got %q, want the three stops before the closes", got)
		}
	}
	if err := g.Close(); err != nil || len(j.get()) != 9 {
		t.Fatalf("a second Close: got %v and %q, want nothing closed twice", err, j.get())
	}
}

func TestGroupOneFailureStopsTheOthers(t *testing.T) {
	errRun := errors.New("envoy exited")
	j := &journal{}
	g := &lifecycle.Group{Linger: time.Hour} // no linger after a failure
	stopping := make(chan struct{})
	g.Stopping = func() { close(stopping) }
	fs := group(j, g, "a", "b", "c")
	fs["b"].runErr = errRun
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(context.Background(), g) }()
	for _, f := range fs {
		<-f.running
	}
	close(fs["b"].fail)
	if err := <-done; !errors.Is(err, errRun) {
		t.Fatalf("Run: got %v, want %v", err, errRun)
	}
	<-stopping
	for _, n := range []string{"a", "c"} {
		select {
		case <-fs[n].stopped:
		default:
			t.Errorf("%s was not stopped", n)
		}
	}
	if got := j.get(); !slices.Equal(got[len(got)-3:], []string{"close c", "close b", "close a"}) {
		t.Fatalf("got %q, want closed in reverse", got)
	}
}

func TestGroupLinger(t *testing.T) {
	linger := make(chan time.Time)
	defer lifecycle.SetClock(func(time.Duration) <-chan time.Time { return linger })()
	j := &journal{}
	stopping := make(chan struct{})
	g := &lifecycle.Group{Linger: time.Minute, Stopping: func() { close(stopping) }}
	fs := group(j, g, "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, g) }()
	<-fs["a"].running
	cancel()
	<-stopping
	select {
	case <-fs["a"].stopped:
		t.Fatal("stopped before the linger passed")
	default:
	}
	linger <- time.Now()
	<-fs["a"].stopped
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestGroupDrainDeadline(t *testing.T) {
	deadline := make(chan time.Time, 1)
	defer lifecycle.SetClock(func(time.Duration) <-chan time.Time { return deadline })()
	j := &journal{}
	g := &lifecycle.Group{Drain: time.Second}
	fs := group(j, g, "quick", "stuck")
	fs["stuck"].ignoreStop = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, g) }()
	<-fs["quick"].running
	<-fs["stuck"].running
	cancel()
	<-fs["stuck"].stopped
	deadline <- time.Now()
	err := <-done
	if !errors.Is(err, lifecycle.ErrDrainTimeout) || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("Run: got %v, want %v naming stuck", err, lifecycle.ErrDrainTimeout)
	}
	// Closed even so: the stuck component's resources are released under
	// it.
	if got := j.get(); !slices.Contains(got, "close stuck") || !slices.Contains(got, "close quick") {
		t.Fatalf("got %q, want both closed", got)
	}
	close(fs["stuck"].release)
}

// countingListener counts its Close calls.
type countingListener struct {
	net.Listener
	mu     sync.Mutex
	closes int
}

func (c *countingListener) Close() error {
	c.mu.Lock()
	c.closes++
	c.mu.Unlock()
	return c.Listener.Close()
}

func TestListenerClosedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		use  func(t *testing.T, l *lifecycle.Listener)
	}{
		{"never served", func(*testing.T, *lifecycle.Listener) {}},
		{"served and shut down", func(t *testing.T, l *lifecycle.Listener) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			s := &lifecycle.HTTPServer{Listener: l, Grace: time.Second}
			s.Server = &http.Server{}
			go func() { done <- s.Run(ctx) }()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c := &countingListener{Listener: ln}
			l := lifecycle.Adopt(c)
			if err := l.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			tc.use(t, l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if c.closes != 1 {
				t.Fatalf("closed %d times, want once", c.closes)
			}
		})
	}
}

func TestListenNamesTheKey(t *testing.T) {
	l := lifecycle.Listen("server.http_addr", "256.0.0.1:0")
	err := l.Open(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "server.http_addr: ") {
		t.Fatalf("got %v, want an error naming server.http_addr", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close after a failed Open: %v", err)
	}
}
