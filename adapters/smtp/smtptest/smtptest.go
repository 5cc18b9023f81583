// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests: STARTTLS with a fresh self-signed certificate, AUTH
// PLAIN required before MAIL, and the messages it accepted.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// Message is an accepted message.
type Message struct {
	From    string
	To      []string
	Header  mail.Header
	Body    []byte
	TLS     bool // the session had upgraded with STARTTLS
	User    string
	RawData []byte
}

// Server is a running test SMTP server.
type Server struct {
	Addr     string
	Username string
	Password string
	// Roots trusts the server's certificate; CAPEM is it in PEM.
	Roots *x509.CertPool
	CAPEM []byte

	mu   sync.Mutex
	msgs []Message
	// Reject, when set, refuses RCPT for that address with a 550.
	reject map[string]bool
	// logins are the accepted usernames and passwords: Username and
	// Password, and those Accept added.
	logins map[[2]string]bool
	// refused counts AUTH attempts refused.
	refused int
	// onRefused is called after each refusal.
	onRefused func()
}

// Start starts a server on 127.0.0.1:0, stopped when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	cert, roots := selfSigned(tb)
	s := &Server{Username: "fraise", Password: "s3cret", Roots: roots, reject: map[string]bool{},
		logins: map[[2]string]bool{{"fraise", "s3cret"}: true},
		CAPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})}
	srv := gosmtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return s
}

// Reject makes RCPT TO addr fail permanently.
func (s *Server) Reject(addr string) {
	s.mu.Lock()
	s.reject[addr] = true
	s.mu.Unlock()
}

// Accept makes the server accept username and password too, as a mail
// provider does while a login is rotated.
func (s *Server) Accept(username, password string) {
	s.mu.Lock()
	s.logins[[2]string{username, password}] = true
	s.mu.Unlock()
}

// Revoke makes the server refuse username and password.
func (s *Server) Revoke(username, password string) {
	s.mu.Lock()
	delete(s.logins, [2]string{username, password})
	s.mu.Unlock()
}

// OnRefused calls f after each AUTH attempt the server refuses, before
// the refusal is answered: a test switches logins at that moment.
func (s *Server) OnRefused(f func()) {
	s.mu.Lock()
	s.onRefused = f
	s.mu.Unlock()
}

// Refused is how many AUTH attempts the server refused.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Messages returns the accepted messages.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

type backend struct{ s *Server }

func (b backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{s: b.s, c: c}, nil
}

type session struct {
	s    *Server
	c    *gosmtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.s.mu.Lock()
		ok := s.s.logins[[2]string{username, password}]
		if !ok {
			s.s.refused++
		}
		hook := s.s.onRefused
		s.s.mu.Unlock()
		if !ok && hook != nil {
			hook()
		}
		if !ok {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.user == "" {
		return &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.s.mu.Lock()
	bad := s.s.reject[to]
	s.s.mu.Unlock()
	if bad {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return errors.New("unparsable message")
	}
	body, _ := io.ReadAll(m.Body)
	_, isTLS := s.c.TLSConnectionState()
	s.s.mu.Lock()
	s.s.msgs = append(s.s.msgs, Message{From: s.from, To: s.to, Header: m.Header, Body: body, TLS: isTLS, User: s.user, RawData: raw})
	s.s.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtptest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}
