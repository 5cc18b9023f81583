// Package smtp sends observer emails (core.Notifier for the email action
// kind) through a mail server, upgrading the connection with STARTTLS and
// authenticating with PLAIN before any credential is sent.
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// Options configures a Notifier.
type Options struct {
	// Addr is the mail server's host:port (the submission port, 587).
	Addr string
	From string
	// Username and Password authenticate (PLAIN, only over TLS); empty
	// Username sends without authenticating.
	Username, Password string
	// Credentials, when set, returns the login of each send, overriding
	// Username and Password, and during a rotation the login it replaced
	// (zero when none): a send the server refuses with the current login
	// (535) is made again, on a new connection, with the previous one. So
	// a new login can reach Fraise before the mail server knows it. A send
	// still refused is made once more with the login Credentials returns
	// then, unless it is the one last refused.
	Credentials func() (current, previous Login)
	// TLS configures STARTTLS (its ServerName defaults to Addr's host).
	TLS *tls.Config
	// InsecureNoTLS allows a server without STARTTLS (tests, local relays);
	// credentials are never sent in clear text regardless.
	InsecureNoTLS bool
	// LocalName is the name sent in EHLO ("localhost" when empty).
	LocalName string
	Now       func() time.Time
	// TracerProvider, when set, makes a client span of each email sent
	// within a span (SpanSend), its child.
	TracerProvider trace.TracerProvider
}

// SpanSend names the client span of one email's submission.
const SpanSend = "smtp send"

// Login is a username and password to authenticate with.
type Login struct{ Username, Password string }

// Notifier sends emails.
type Notifier struct {
	o      Options
	tracer trace.Tracer // nil: no spans
}

var _ core.Notifier = (*Notifier)(nil)

// New returns a Notifier.
func New(o Options) *Notifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LocalName == "" {
		o.LocalName = "localhost"
	}
	n := &Notifier{o: o}
	if o.TracerProvider != nil {
		n.tracer = o.TracerProvider.Tracer("github.com/fraise-dev/fraise/adapters/smtp")
	}
	return n
}

// Notify implements core.Notifier: 5xx replies are permanent, 4xx replies
// and connection failures transient.
func (n *Notifier) Notify(ctx context.Context, m core.Message) (err error) {
	from, err := mail.ParseAddress(n.o.From)
	if err != nil {
		return &core.DeliveryError{Permanent: true, Err: fmt.Errorf("smtp: from: %w", err)}
	}
	var to []*mail.Address
	for _, s := range m.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return &core.DeliveryError{Permanent: true, Err: fmt.Errorf("smtp: recipient %q: %w", s, err)}
		}
		to = append(to, a)
	}
	if len(to) == 0 {
		return &core.DeliveryError{Permanent: true, Err: errors.New("smtp: no recipients")}
	}
	msg := n.compose(from, to, m)
	if n.tracer != nil && trace.SpanContextFromContext(ctx).IsValid() {
		// One span for the submission, its retries with another login
		// included. The recipients are personal data: the span counts them.
		host, port, _ := net.SplitHostPort(n.o.Addr)
		var span trace.Span
		ctx, span = n.tracer.Start(ctx, SpanSend, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("server.address", host), attribute.String("server.port", port),
			attribute.Int("fraise.email.recipients", len(to))))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	cur, prev := Login{n.o.Username, n.o.Password}, Login{}
	if n.o.Credentials != nil {
		cur, prev = n.o.Credentials()
	}
	tried := cur
	err = n.send(ctx, from.Address, to, msg, cur)
	if refused(err) && prev.Username != "" && prev != cur {
		// The server does not know the new login yet.
		tried = prev
		err = n.send(ctx, from.Address, to, msg, prev)
	}
	if refused(err) && n.o.Credentials != nil {
		// The login was rotated, or the server switched to the new one,
		// while this send was on its way (its fallback to the previous
		// login came too late): the login current now gets one more try.
		if now, _ := n.o.Credentials(); now != tried {
			err = n.send(ctx, from.Address, to, msg, now)
		}
	}
	if err != nil {
		return classify(err)
	}
	return nil
}

// refused reports whether err is the server refusing the login (535).
func refused(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code == 535
}

func (n *Notifier) send(ctx context.Context, from string, to []*mail.Address, msg []byte, login Login) error {
	host, _, err := net.SplitHostPort(n.o.Addr)
	if err != nil {
		return &core.DeliveryError{Permanent: true, Err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.o.Addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(n.o.LocalName); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := n.o.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if err := c.StartTLS(cfg); err != nil {
			return err
		}
	} else if !n.o.InsecureNoTLS {
		return &core.DeliveryError{Err: errors.New("smtp: server does not offer STARTTLS")}
	}
	if login.Username != "" {
		// smtp.PlainAuth refuses to send credentials over a connection
		// that is not TLS (except to localhost).
		if err := c.Auth(smtp.PlainAuth("", login.Username, login.Password, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, a := range to {
		if err := c.Rcpt(a.Address); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The server has accepted the message: a QUIT that fails now (the
	// connection dropped, the deadline passed) must not make the job
	// retry and mail the recipients twice.
	_ = c.Quit()
	return nil
}

// compose builds the message. Header values are encoded (RFC 2047) and have
// no line breaks; the body is quoted-printable text.
func (n *Notifier) compose(from *mail.Address, to []*mail.Address, m core.Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	addrs := make([]string, len(to))
	for i, a := range to {
		addrs[i] = a.String()
	}
	h("From", from.String())
	h("To", strings.Join(addrs, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Subject)))
	h("Date", n.o.Now().Format(time.RFC1123Z))
	h("Message-ID", "<"+oneLine(m.IdempotencyKey)+"@fraise.observers>")
	h("X-Fraise-Idempotency-Key", oneLine(m.IdempotencyKey))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write(m.Body)
	_ = qp.Close()
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

func classify(err error) error {
	var de *core.DeliveryError
	if errors.As(err, &de) {
		return err
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return &core.DeliveryError{Permanent: te.Code >= 500, Status: te.Code, Err: err}
	}
	return &core.DeliveryError{Err: err}
}
