package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LeanTransport is an http.RoundTripper for load generators that share a
// machine with the servers they measure: HTTP/1.1 over plain-text
// keep-alive connections, each request written and its whole answer read
// on the caller's goroutine, with no goroutine per connection and no copy
// of the body beyond one buffer. net/http's Transport spends some 100 µs
// of CPU a request here (two goroutines per connection, a handoff each
// way, header maps): at twice a server's saturation that is a third of a
// two-core machine, taken from the server exactly when it is busiest, and
// what an overload benchmark then measures is its own generator. It
// speaks only what a benchmark needs: http:// URLs (and https:// with
// TLS set), request bodies of known length, answers with Content-Length or
// chunked bodies; no redirects, no compression, no proxies, no 1xx
// answers.
type LeanTransport struct {
	// MaxConns bounds the connections open at once (per transport, all
	// hosts); a request that finds them all busy waits for one.
	MaxConns int
	// DialTimeout bounds a connection's dial and TLS handshake (default 5 s).
	DialTimeout time.Duration
	// TLS, when set, lets the transport speak https:// URLs with it (a
	// client certificate for mutual TLS goes in its Certificates; an empty
	// ServerName is the URL's host). The arrival of an answer (WithArrival)
	// is still the kernel's timestamp of its last bytes on the TCP socket,
	// before they are decrypted.
	TLS *tls.Config

	mu    sync.Mutex
	idle  map[string][]*leanConn
	open  int
	freed *sync.Cond
}

type leanConn struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	arr *arrivalReader // nil: no arrival timestamps
}

type arrivalKey struct{}

// WithArrival returns ctx under which a LeanTransport request records in
// *at when the last bytes of its answer reached the generator's socket, as
// the kernel timestamped them on receipt (Linux only; *at stays zero when
// it cannot tell). A load generator sharing the machine's cores with the
// server it loads is itself delayed under load: a goroutine whose answer
// has arrived waits for a CPU before it can read the clock, and that wait,
// the generator's and not the server's, is in every latency timed after
// the read. Timed on arrival, an answer's latency is what a client on
// another machine would see on the wire.
func WithArrival(ctx context.Context, at *time.Time) context.Context {
	return context.WithValue(ctx, arrivalKey{}, at)
}

// NewLeanClient returns a client on a LeanTransport of at most conns
// connections, with a 30 s timeout per request as NewClient has.
func NewLeanClient(conns int) *http.Client {
	return &http.Client{Transport: &LeanTransport{MaxConns: conns}, Timeout: 30 * time.Second}
}

// RoundTrip sends req and returns its answer, read whole.
func (t *LeanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	port := "80"
	switch {
	case req.URL.Scheme == "https" && t.TLS != nil:
		port = "443"
	case req.URL.Scheme != "http":
		closeBody(req)
		return nil, fmt.Errorf("loadgen: LeanTransport speaks http (and https with TLS set), not %q", req.URL.Scheme)
	}
	body, err := requestBody(req)
	if err != nil {
		return nil, err
	}
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), port)
	}
	// Idle connections are kept by scheme and host: a plain-text one must
	// never carry an https request.
	host = req.URL.Scheme + "://" + host
	c, reused, err := t.get(req, host)
	if err != nil {
		return nil, err
	}
	resp, keep, err := c.roundTripCtx(req, body)
	if err != nil && reused && staleConn(err) && req.Context().Err() == nil {
		// The server had closed the idle connection before it read the
		// request (no answer began): once more on a new connection, as
		// net/http retries.
		t.drop(c)
		if c, _, err = t.dial(req, host); err != nil {
			return nil, err
		}
		resp, keep, err = c.roundTripCtx(req, body)
	}
	if err != nil {
		t.drop(c)
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if keep {
		t.put(host, c)
	} else {
		t.drop(c)
	}
	resp.Request = req
	return resp, nil
}

// CloseIdleConnections closes the connections no request uses.
func (t *LeanTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, cs := range t.idle {
		for _, c := range cs {
			c.c.Close()
			t.open--
		}
		delete(t.idle, h)
	}
	if t.freed != nil {
		t.freed.Broadcast()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func requestBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

// get returns an idle connection to host, or a new one while fewer than
// MaxConns are open, or waits for one to be freed.
func (t *LeanTransport) get(req *http.Request, host string) (*leanConn, bool, error) {
	t.mu.Lock()
	if t.freed == nil {
		t.freed = sync.NewCond(&t.mu)
		t.idle = map[string][]*leanConn{}
	}
	for {
		if cs := t.idle[host]; len(cs) > 0 {
			c := cs[len(cs)-1]
			t.idle[host] = cs[:len(cs)-1]
			t.mu.Unlock()
			return c, true, nil
		}
		if t.MaxConns <= 0 || t.open < t.MaxConns {
			t.mu.Unlock()
			return t.dial(req, host)
		}
		if err := req.Context().Err(); err != nil {
			t.mu.Unlock()
			return nil, false, err
		}
		t.freed.Wait()
	}
}

// dial opens a connection to key (scheme://host:port), with the TLS
// handshake done for https.
func (t *LeanTransport) dial(req *http.Request, key string) (*leanConn, bool, error) {
	t.mu.Lock()
	t.open++
	t.mu.Unlock()
	lc, err := t.connect(req.Context(), key)
	if err != nil {
		t.mu.Lock()
		t.open--
		t.freed.Signal()
		t.mu.Unlock()
		return nil, false, err
	}
	return lc, false, nil
}

func (t *LeanTransport) connect(ctx context.Context, key string) (*leanConn, error) {
	timeout := cmp.Or(t.DialTimeout, 5*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	scheme, host, _ := strings.Cut(key, "://")
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	lc := &leanConn{c: nc, arr: newArrivalReader(nc)}
	var rd io.Reader = nc
	if lc.arr != nil {
		rd = lc.arr
	}
	if scheme == "https" {
		// TLS reads the socket through the arrival reader, so the
		// timestamps are the ciphertext's, as it reached this machine.
		var raw net.Conn = nc
		if lc.arr != nil {
			raw = arrivalConn{Conn: nc, r: lc.arr}
		}
		cfg := t.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(host)
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		lc.c, rd = tc, tc
	}
	lc.w = bufio.NewWriterSize(lc.c, 4<<10)
	lc.r = bufio.NewReaderSize(rd, 16<<10)
	return lc, nil
}

// arrivalConn is a TCP connection read through its arrival reader, for
// TLS to decrypt.
type arrivalConn struct {
	net.Conn
	r io.Reader
}

func (c arrivalConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (t *LeanTransport) put(host string, c *leanConn) {
	t.mu.Lock()
	t.idle[host] = append(t.idle[host], c)
	t.freed.Signal()
	t.mu.Unlock()
}

func (t *LeanTransport) drop(c *leanConn) {
	c.c.Close()
	t.mu.Lock()
	t.open--
	t.freed.Signal()
	t.mu.Unlock()
}

// roundTripCtx is roundTrip, cut short when req's context ends (the
// connection is then unusable, and dropped): as net/http does, the
// context's end is what stops the request, so a caller that sees an
// error also sees the context ended.
func (c *leanConn) roundTripCtx(req *http.Request, body []byte) (*http.Response, bool, error) {
	stop := context.AfterFunc(req.Context(), func() { _ = c.c.SetDeadline(time.Now()) })
	resp, keep, err := c.roundTrip(req, body)
	if !stop() {
		// The context ended: the deadline may have cut the exchange short.
		return resp, false, cmp.Or(err, req.Context().Err())
	}
	return resp, keep, err
}

// roundTrip writes req and reads its answer; keep says the connection may
// carry another request.
func (c *leanConn) roundTrip(req *http.Request, body []byte) (*http.Response, bool, error) {
	w := c.w
	uri := req.URL.RequestURI()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, uri, host)
	for k, vs := range req.Header {
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if body != nil || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if c.arr != nil {
		c.arr.last = time.Time{}
	}
	if err := w.Flush(); err != nil {
		return nil, false, err
	}
	resp, keep, err := readResponse(c.r, req.Method == http.MethodHead)
	if at, ok := req.Context().Value(arrivalKey{}).(*time.Time); ok && err == nil && c.arr != nil {
		*at = c.arr.last
	}
	return resp, keep, err
}

// staleConn reports whether err is what a request on a connection the
// server had already closed meets: the end of the stream, or a reset,
// before any answer.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// errMalformed is an answer this transport cannot read.
var errMalformed = errors.New("loadgen: malformed HTTP/1.1 answer")

// readResponse reads one whole answer from r.
func readResponse(r *bufio.Reader, head bool) (*http.Response, bool, error) {
	tp := textproto.NewReader(r)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, false, err
	}
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return nil, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil || status < 200 {
		return nil, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, false, err
	}
	h := http.Header(hdr)
	keep := proto == "HTTP/1.1" && !strings.EqualFold(h.Get("Connection"), "close")
	var body []byte
	switch {
	case head || status == http.StatusNoContent || status == http.StatusNotModified:
	case strings.EqualFold(h.Get("Transfer-Encoding"), "chunked"):
		if body, err = readChunked(r); err != nil {
			return nil, false, err
		}
	case h.Get("Content-Length") != "":
		n, err := strconv.Atoi(h.Get("Content-Length"))
		if err != nil || n < 0 {
			return nil, false, fmt.Errorf("%w: Content-Length %q", errMalformed, h.Get("Content-Length"))
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, false, err
		}
	default:
		// Delimited by the end of the connection.
		if body, err = io.ReadAll(r); err != nil {
			return nil, false, err
		}
		keep = false
	}
	return &http.Response{
		Status: rest, StatusCode: status, Proto: proto, ProtoMajor: 1, ProtoMinor: int(proto[len(proto)-1] - '0'),
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
	}, keep, nil
}

// readChunked reads a chunked body and its trailers.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	tp := textproto.NewReader(r)
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return nil, err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			if _, err := tp.ReadMIMEHeader(); err != nil { // trailers, then the blank line
				return nil, err
			}
			return body, nil
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if crlf, err := tp.ReadLine(); err != nil || crlf != "" {
			return nil, fmt.Errorf("%w: chunk not followed by CRLF", errMalformed)
		}
	}
}
