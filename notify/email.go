package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	"text/template"
	"time"

	"github.com/wneessen/go-mail"
)

// Email sends messages over SMTP (SMTP_* variables). Recipients come from the
// store's email_config at send time.
type Email struct {
	Host       string
	Port       int
	User       string // AUTH PLAIN when set
	Password   string
	From       string
	TLS        string // "starttls" (default), "tls" (implicit, e.g. port 465) or "none"
	TLSConfig  *tls.Config
	Timeout    time.Duration
	Recipients func(ctx context.Context) ([]string, error)
}

// Name implements Notifier.
func (e *Email) Name() string { return "email" }

// Notify implements Notifier.
func (e *Email) Notify(ctx context.Context, m Message) (bool, error) {
	rcpts, err := e.Recipients(ctx)
	if err != nil {
		return true, fmt.Errorf("email: read recipients: %w", err)
	}
	if len(rcpts) == 0 {
		return false, errors.New("email: no recipients configured")
	}
	msg, err := e.build(m, rcpts)
	if err != nil {
		return false, err
	}
	client, err := e.client()
	if err != nil {
		return false, err
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if err == nil {
		return false, nil
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		return se.IsTemp(), fmt.Errorf("email: %w", err)
	}
	// Dial, TLS and AUTH failures: the network may come back; bad credentials will not.
	if strings.Contains(err.Error(), "535") || strings.Contains(strings.ToLower(err.Error()), "authentication failed") {
		return false, fmt.Errorf("email: %w", err)
	}
	return true, fmt.Errorf("email: %w", err)
}

func (e *Email) client() (*mail.Client, error) {
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tlsCfg := &tls.Config{ServerName: e.Host, MinVersion: tls.VersionTLS12}
	if e.TLSConfig != nil {
		tlsCfg = e.TLSConfig.Clone()
		if tlsCfg.ServerName == "" {
			tlsCfg.ServerName = e.Host
		}
	}
	opts := []mail.Option{mail.WithPort(e.Port), mail.WithTimeout(timeout), mail.WithTLSConfig(tlsCfg)}
	switch e.TLS {
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if e.User != "" {
		auth := mail.SMTPAuthPlain
		if e.TLS == "none" {
			auth = mail.SMTPAuthPlainNoEnc // the operator chose no TLS
		}
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(e.User), mail.WithPassword(e.Password))
	}
	c, err := mail.NewClient(e.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("email: SMTP client for %s:%d: %w", e.Host, e.Port, err)
	}
	return c, nil
}

func (e *Email) build(m Message, rcpts []string) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(e.From); err != nil {
		return nil, fmt.Errorf("email: sender %q: %w", e.From, err)
	}
	if err := msg.To(rcpts...); err != nil {
		return nil, fmt.Errorf("email: recipients: %w", err)
	}
	msg.Subject(EmailSubject(m))
	msg.SetDate()
	msg.SetMessageID()
	text, html, err := EmailBodies(m)
	if err != nil {
		return nil, err
	}
	msg.SetBodyString(mail.TypeTextPlain, text)
	msg.AddAlternativeString(mail.TypeTextHTML, html)
	return msg, nil
}

// EmailSubject is "[SEVERITY] name on instance". CR and LF never reach a header.
func EmailSubject(m Message) string {
	var s string
	switch m.Kind {
	case KindResolved:
		s = fmt.Sprintf("[RESOLVED] %s on %s", m.Name, orDash(m.Instance))
	case KindDigest:
		s = fmt.Sprintf("%d more incidents in the last minute", len(m.Digest))
	case KindTest:
		s = "[TEST] alertrca email configuration"
	default:
		s = fmt.Sprintf("[%s] %s on %s", strings.ToUpper(orDash(m.Severity)), m.Name, orDash(m.Instance))
	}
	return oneLine(s)
}

func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

var emailFuncs = map[string]any{"upper": strings.ToUpper, "when": when, "dash": orDash}

var textBody = template.Must(template.New("text").Funcs(emailFuncs).Parse(`{{if eq .Kind "digest"}}{{len .Digest}} more incidents in the last minute:
{{range .Digest}}- [{{upper .Severity}}] {{.Name}} on {{dash .Instance}}: {{.Summary}}
{{end}}{{else}}{{if eq .Kind "resolved"}}RESOLVED: {{.Name}} on {{dash .Instance}}
Ended: {{when .EndsAt}}{{else}}[{{upper (dash .Severity)}}] {{.Name}} on {{dash .Instance}}{{end}}
Status: {{dash .Status}}   Job: {{dash .Job}}   Started: {{dash (when .StartsAt)}}
{{if .Summary}}
Summary: {{.Summary}}
In plain words: {{.Simplified}}
Likely cause: {{.Cause}}
Fix: {{.Fix}}
{{if .Fallback}}(The LLM gave no usable answer: this analysis was built from the alert itself.)
{{end}}{{end}}{{if .GeneratorURL}}
Source: {{.GeneratorURL}}{{end}}{{if .Link}}
Incident: {{.Link}}{{end}}
{{end}}`))

var htmlBody = htmltemplate.Must(htmltemplate.New("html").Funcs(emailFuncs).Parse(`<!DOCTYPE html>
<html><body style="font-family: sans-serif">
{{if eq .Kind "digest"}}<h2>{{len .Digest}} more incidents in the last minute</h2>
<ul>{{range .Digest}}<li><b>[{{upper .Severity}}] {{.Name}}</b> on {{dash .Instance}}: {{.Summary}}</li>{{end}}</ul>
{{else}}<h2>{{if eq .Kind "resolved"}}RESOLVED: {{.Name}}{{else}}[{{upper (dash .Severity)}}] {{.Name}}{{end}}</h2>
<table>
<tr><td><b>Status</b></td><td>{{dash .Status}}</td></tr>
<tr><td><b>Instance</b></td><td>{{dash .Instance}}</td></tr>
<tr><td><b>Job</b></td><td>{{dash .Job}}</td></tr>
<tr><td><b>Started</b></td><td>{{dash (when .StartsAt)}}</td></tr>
{{if eq .Kind "resolved"}}<tr><td><b>Ended</b></td><td>{{dash (when .EndsAt)}}</td></tr>{{end}}
</table>
{{if .Summary}}<h3>Summary</h3><p>{{.Summary}}</p>
<h3>In plain words</h3><p>{{.Simplified}}</p>
<h3>Likely cause</h3><p>{{.Cause}}</p>
<h3>Fix</h3><p>{{.Fix}}</p>
{{if .Fallback}}<p><i>The LLM gave no usable answer: this analysis was built from the alert itself.</i></p>{{end}}{{end}}
{{if .GeneratorURL}}<p><a href="{{.GeneratorURL}}">Source</a></p>{{end}}{{if .Link}}<p><a href="{{.Link}}">Incident</a></p>{{end}}
{{end}}</body></html>
`))

// EmailBodies renders the plain-text and HTML parts; html/template escapes
// every alert- and LLM-derived string (and refuses non-http(s) links).
func EmailBodies(m Message) (text, html string, err error) {
	var t, h bytes.Buffer
	if err := textBody.Execute(&t, m); err != nil {
		return "", "", fmt.Errorf("email: render text: %w", err)
	}
	if err := htmlBody.Execute(&h, m); err != nil {
		return "", "", fmt.Errorf("email: render html: %w", err)
	}
	return t.String(), h.String(), nil
}
