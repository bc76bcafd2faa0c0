package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpServer is a real SMTP server (go-smtp) with STARTTLS and AUTH PLAIN.
type smtpServer struct {
	addr    string
	pool    *x509.CertPool
	mu      sync.Mutex
	got     []received
	authed  []string
	replies []error // answers to DATA, in order; then success
}

type received struct {
	from  string
	rcpts []string
	data  []byte
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	cert, pool := selfSigned(t)
	s := &smtpServer{pool: pool}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{srv: s}, nil }))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

type session struct {
	srv  *smtpServer
	cur  received
	auth bool
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "alertrca" || pass != "pw" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.auth = true
		s.srv.mu.Lock()
		s.srv.authed = append(s.srv.authed, user)
		s.srv.mu.Unlock()
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.auth {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.cur = received{from: from}
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if len(s.srv.replies) > 0 {
		reply := s.srv.replies[0]
		s.srv.replies = s.srv.replies[1:]
		if reply != nil {
			return reply
		}
	}
	s.cur.data = b
	s.srv.got = append(s.srv.got, s.cur)
	return nil
}
func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func (s *smtpServer) email(rcpts ...string) *Email {
	host, port, _ := net.SplitHostPort(s.addr)
	p := 0
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	return &Email{
		Host: host, Port: p, User: "alertrca", Password: "pw", From: "alertrca@example.com", TLS: "starttls",
		TLSConfig: &tls.Config{RootCAs: s.pool}, Timeout: 5 * time.Second,
		Recipients: func(context.Context) ([]string, error) { return rcpts, nil },
	}
}

func TestEmailDelivered(t *testing.T) {
	srv := startSMTP(t)
	m := incident()
	m.Cause = `<script>alert("x")</script> & more`
	retry, err := srv.email("oncall@example.com", "sre@example.com").Notify(context.Background(), m)
	if err != nil {
		t.Fatalf("retry %v err %v", retry, err)
	}
	if len(srv.got) != 1 || len(srv.authed) != 1 {
		t.Fatalf("%d messages, %d logins", len(srv.got), len(srv.authed))
	}
	got := srv.got[0]
	if got.from != "alertrca@example.com" || strings.Join(got.rcpts, ",") != "oncall@example.com,sre@example.com" {
		t.Fatalf("envelope: from %s to %v", got.from, got.rcpts)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	if subj := msg.Header.Get("Subject"); subj != "[CRITICAL] InstanceDown on api-1:8080" {
		t.Fatalf("subject %q", subj)
	}
	body, _ := io.ReadAll(msg.Body)
	raw := string(body)
	for _, want := range []string{"text/plain", "text/html", "multipart/alternative"} {
		if !strings.Contains(raw+msg.Header.Get("Content-Type"), want) {
			t.Errorf("message lacks %s", want)
		}
	}
	text, html, _ := EmailBodies(m)
	if !strings.Contains(text, `Likely cause: <script>alert("x")</script> & more`) {
		t.Errorf("text part: %s", text)
	}
	if strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") {
		t.Errorf("HTML part not escaped: %s", html)
	}
}

func TestEmailHeaderInjection(t *testing.T) {
	srv := startSMTP(t)
	m := incident()
	m.Name = "Evil\r\nBcc: attacker@example.com\r\nX-Injected: yes"
	m.Instance = "host\nSubject: spoofed"
	if _, err := srv.email("oncall@example.com").Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.got[0]
	if len(got.rcpts) != 1 {
		t.Fatalf("recipients %v: the injection added one", got.rcpts)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v := msg.Header.Get(h); v != "" {
			t.Fatalf("injected header %s: %s", h, v)
		}
	}
	if subj := msg.Header.Get("Subject"); strings.ContainsAny(subj, "\r\n") || !strings.HasPrefix(subj, "[CRITICAL] Evil Bcc:") {
		t.Fatalf("subject %q", subj)
	}
}

func TestEmailTemporaryAndPermanentFailures(t *testing.T) {
	srv := startSMTP(t)
	srv.replies = []error{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}}
	e := srv.email("oncall@example.com")
	retry, err := e.Notify(context.Background(), incident())
	if err == nil || !retry || !strings.Contains(err.Error(), "451") {
		t.Fatalf("451: retry %v err %v, want a retryable error", retry, err)
	}
	// The retry goes through.
	if retry, err := e.Notify(context.Background(), incident()); err != nil || retry {
		t.Fatalf("after 451: retry %v err %v", retry, err)
	}
	if len(srv.got) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(srv.got))
	}
	srv.replies = []error{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}
	retry, err = e.Notify(context.Background(), incident())
	if err == nil || retry || !strings.Contains(err.Error(), "550") {
		t.Fatalf("550: retry %v err %v, want permanent", retry, err)
	}
	bad := srv.email("oncall@example.com")
	bad.Password = "wrong"
	if retry, err := bad.Notify(context.Background(), incident()); err == nil || retry {
		t.Fatalf("bad credentials: retry %v err %v, want permanent", retry, err)
	}
	down := srv.email("oncall@example.com")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if retry, err := down.Notify(context.Background(), incident()); err == nil || !retry {
		t.Fatalf("server down: retry %v err %v, want retryable", retry, err)
	}
	none := srv.email()
	if retry, err := none.Notify(context.Background(), incident()); err == nil || retry {
		t.Fatalf("no recipients: retry %v err %v", retry, err)
	}
}
