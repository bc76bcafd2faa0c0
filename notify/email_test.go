package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/alertrca/alertrca/notify/notifytest"
)

func emailTo(s *notifytest.SMTPServer, rcpts ...string) *Email {
	host, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	return &Email{
		Host: host, Port: p, User: notifytest.User, Password: notifytest.Password, From: "alertrca@example.com", TLS: "starttls",
		TLSConfig: &tls.Config{RootCAs: s.Pool}, Timeout: 5 * time.Second,
		Recipients: func(context.Context) ([]string, error) { return rcpts, nil },
	}
}

func TestEmailDelivered(t *testing.T) {
	srv := notifytest.StartSMTP(t)
	m := incident()
	m.Cause = `<script>alert("x")</script> & more`
	retry, err := emailTo(srv, "oncall@example.com", "sre@example.com").Notify(context.Background(), m)
	if err != nil {
		t.Fatalf("retry %v err %v", retry, err)
	}
	if len(srv.Messages()) != 1 || srv.Logins() != 1 {
		t.Fatalf("%d messages, %d logins", len(srv.Messages()), srv.Logins())
	}
	got := srv.Messages()[0]
	if got.From != "alertrca@example.com" || strings.Join(got.Rcpts, ",") != "oncall@example.com,sre@example.com" {
		t.Fatalf("envelope: from %s to %v", got.From, got.Rcpts)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
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
	srv := notifytest.StartSMTP(t)
	m := incident()
	m.Name = "Evil\r\nBcc: attacker@example.com\r\nX-Injected: yes"
	m.Instance = "host\nSubject: spoofed"
	if _, err := emailTo(srv, "oncall@example.com").Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()[0]
	if len(got.Rcpts) != 1 {
		t.Fatalf("recipients %v: the injection added one", got.Rcpts)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
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
	srv := notifytest.StartSMTP(t)
	srv.ReplyToData(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"})
	e := emailTo(srv, "oncall@example.com")
	retry, err := e.Notify(context.Background(), incident())
	if err == nil || !retry || !strings.Contains(err.Error(), "451") {
		t.Fatalf("451: retry %v err %v, want a retryable error", retry, err)
	}
	// The retry goes through.
	if retry, err := e.Notify(context.Background(), incident()); err != nil || retry {
		t.Fatalf("after 451: retry %v err %v", retry, err)
	}
	if len(srv.Messages()) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(srv.Messages()))
	}
	srv.ReplyToData(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	retry, err = e.Notify(context.Background(), incident())
	if err == nil || retry || !strings.Contains(err.Error(), "550") {
		t.Fatalf("550: retry %v err %v, want permanent", retry, err)
	}
	bad := emailTo(srv, "oncall@example.com")
	bad.Password = "wrong"
	if retry, err := bad.Notify(context.Background(), incident()); err == nil || retry {
		t.Fatalf("bad credentials: retry %v err %v, want permanent", retry, err)
	}
	down := emailTo(srv, "oncall@example.com")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if retry, err := down.Notify(context.Background(), incident()); err == nil || !retry {
		t.Fatalf("server down: retry %v err %v, want retryable", retry, err)
	}
	none := emailTo(srv)
	if retry, err := none.Notify(context.Background(), incident()); err == nil || retry {
		t.Fatalf("no recipients: retry %v err %v", retry, err)
	}
}
