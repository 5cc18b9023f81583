package smtp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/fraise-dev/fraise/adapters/smtp"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/core"
)

func TestSendOverSTARTTLSWithAuth(t *testing.T) {
	srv := smtptest.Start(t)
	n := smtp.New(smtp.Options{Addr: srv.Addr, From: "Fraise <observers@fraise.test>", Username: srv.Username,
		Password: srv.Password, TLS: &tls.Config{RootCAs: srv.Roots}})
	m := core.Message{Kind: core.ActionEmail, IdempotencyKey: "k1", To: []string{"sales@acme.test"},
		Subject: "Order über 1000\r\nBcc: evil@x.test", Body: []byte("Total: 5000\n")}
	if err := n.Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if !got.TLS || got.User != srv.Username || got.From != "observers@fraise.test" || len(got.To) != 1 || got.To[0] != "sales@acme.test" {
		t.Fatalf("got tls=%v user=%q from=%q to=%v", got.TLS, got.User, got.From, got.To)
	}
	if got.Header.Get("Bcc") != "" || got.Header.Get("X-Fraise-Idempotency-Key") != "k1" {
		t.Fatalf("headers: got %v", got.Header)
	}
	if subj, _ := new(mimeDecoder).decode(got.Header.Get("Subject")); !strings.HasPrefix(subj, "Order über 1000 ") {
		t.Fatalf("subject: got %q", subj)
	}
	if !strings.Contains(string(got.Body), "Total: 5000") {
		t.Fatalf("body: got %q", got.Body)
	}
}

func TestErrors(t *testing.T) {
	srv := smtptest.Start(t)
	srv.Reject("gone@acme.test")
	tests := []struct {
		name      string
		o         smtp.Options
		to        string
		permanent bool
	}{
		{"unknown recipient is permanent", smtp.Options{Username: srv.Username, Password: srv.Password}, "gone@acme.test", true},
		{"bad credentials are permanent", smtp.Options{Username: srv.Username, Password: "wrong"}, "a@acme.test", true},
		{"untrusted certificate is transient", smtp.Options{Username: srv.Username, Password: srv.Password, TLS: &tls.Config{}}, "a@acme.test", false},
		{"no server is transient", smtp.Options{Addr: "127.0.0.1:1"}, "a@acme.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			if o.Addr == "" {
				o.Addr = srv.Addr
			}
			if o.TLS == nil {
				o.TLS = &tls.Config{RootCAs: srv.Roots}
			}
			o.From = "observers@fraise.test"
			err := smtp.New(o).Notify(context.Background(), core.Message{To: []string{tt.to}, Subject: "s", Body: []byte("b")})
			var de *core.DeliveryError
			if !errors.As(err, &de) || de.Permanent != tt.permanent {
				t.Fatalf("got %v, want a DeliveryError with permanent=%v", err, tt.permanent)
			}
		})
	}
}

// TestAcceptedMessageIsDeliveredWhateverQUITDoes: a server that accepted
// the message (250 after DATA) and then drops the connection instead of
// answering QUIT has the message: Notify succeeds, so the job is not run
// again and the recipients are not mailed twice.
func TestAcceptedMessageIsDeliveredWhateverQUITDoes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan int, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				say := func(s string) { _, _ = io.WriteString(c, s+"\r\n") }
				say("220 test ESMTP")
				n := 0
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
						say("250 test")
					case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
						say("250 ok")
					case cmd == "DATA":
						say("354 go on")
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							if l == ".\r\n" {
								break
							}
						}
						n++
						accepted <- n
						say("250 queued")
					case cmd == "QUIT":
						return // the connection drops: no 221
					default:
						say("502 not here")
					}
				}
			}()
		}
	}()
	n := smtp.New(smtp.Options{Addr: ln.Addr().String(), From: "observers@fraise.test", InsecureNoTLS: true})
	err = n.Notify(context.Background(), core.Message{To: []string{"a@acme.test"}, Subject: "s", Body: []byte("b")})
	if err != nil {
		t.Fatalf("got %v after the server accepted the message, want nil", err)
	}
	if got := len(accepted); got != 1 {
		t.Fatalf("the server accepted %d messages, want 1", got)
	}
}

// TestLoginRotation rotates the login Fraise sends with, the new one
// reaching Fraise before the mail server knows it: sends fall back to the
// previous login until the server accepts the new one, and none fails.
func TestLoginRotation(t *testing.T) {
	srv := smtptest.Start(t)
	var mu sync.Mutex
	cur, prev := smtp.Login{Username: srv.Username, Password: srv.Password}, smtp.Login{}
	n := smtp.New(smtp.Options{Addr: srv.Addr, From: "observers@fraise.test", TLS: &tls.Config{RootCAs: srv.Roots},
		Credentials: func() (smtp.Login, smtp.Login) { mu.Lock(); defer mu.Unlock(); return cur, prev }})
	send := func(step string) {
		t.Helper()
		if err := n.Notify(context.Background(), core.Message{Kind: core.ActionEmail, To: []string{"sales@acme.test"}, Subject: step, Body: []byte(step)}); err != nil {
			t.Fatalf("%s: got %v, want sent", step, err)
		}
	}
	send("the first login")
	next := smtp.Login{Username: "fraise-2", Password: "n3w"}
	mu.Lock()
	cur, prev = next, cur
	mu.Unlock()
	send("the new login, unknown to the server")
	if srv.Refused() != 1 {
		t.Errorf("refused logins: got %d, want the new one refused once", srv.Refused())
	}
	srv.Accept(next.Username, next.Password)
	srv.Revoke(prev.Username, prev.Password)
	send("the new login, known to the server")
	msgs := srv.Messages()
	if got := msgs[len(msgs)-1].User; got != next.Username {
		t.Errorf("last message sent as %q, want %q", got, next.Username)
	}
	if got := msgs[1].User; got != srv.Username {
		t.Errorf("the message sent during the change was sent as %q, want the previous login %q", got, srv.Username)
	}
}

// TestLoginRotatedDuringASend: the login or the mail server's logins
// change while a send is on its way, so that every login the send read is
// refused by the time it authenticates. The send is made once more with
// the login current then, rather than dead-lettered.
func TestLoginRotatedDuringASend(t *testing.T) {
	old := smtp.Login{Username: "fraise", Password: "s3cret"} // smtptest's first login
	next := smtp.Login{Username: "fraise-2", Password: "n3w"}
	for _, tc := range []struct {
		name string
		// first is what the send reads; later what Credentials returns
		// after.
		first, later [2]smtp.Login
		// switchFirst switches the server to next before the send;
		// otherwise it switches when it first refuses a login (after
		// the new one was tried, before the fallback to the old one).
		switchFirst bool
	}{
		{"the login read before the rotation reached the files, the server switched since",
			[2]smtp.Login{old, {}}, [2]smtp.Login{next, old}, true},
		{"the server switched between the new login's refusal and the fallback to the old one",
			[2]smtp.Login{next, old}, [2]smtp.Login{next, old}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t)
			switchLogins := func() { srv.Accept(next.Username, next.Password); srv.Revoke(old.Username, old.Password) }
			if tc.switchFirst {
				switchLogins()
			} else {
				var once sync.Once
				srv.OnRefused(func() { once.Do(switchLogins) })
			}
			var mu sync.Mutex
			calls := 0
			n := smtp.New(smtp.Options{Addr: srv.Addr, From: "observers@fraise.test", TLS: &tls.Config{RootCAs: srv.Roots},
				Credentials: func() (smtp.Login, smtp.Login) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					if calls == 1 {
						return tc.first[0], tc.first[1]
					}
					return tc.later[0], tc.later[1]
				}})
			if err := n.Notify(context.Background(), core.Message{Kind: core.ActionEmail, To: []string{"sales@acme.test"}, Subject: "s", Body: []byte("b")}); err != nil {
				t.Fatalf("got %v, want sent with the login current after the refusals", err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 || msgs[0].User != next.Username {
				t.Fatalf("got %d messages (%+v), want one sent as %q", len(msgs), msgs, next.Username)
			}
		})
	}
}
