package receiver

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/alertmanager/template"

	"github.com/alertrca/alertrca/store"
)

// webhookPayload is Alertmanager's webhook, version 4. Unknown fields (newer
// Alertmanagers add some) are ignored.
type webhookPayload struct {
	template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// webhook handles POST /webhook/alertmanager. It answers 2xx only once every
// alert is durably stored. Alertmanager drops a notification for good on any
// 4xx and retries on 5xx, so everything that may succeed later is a 503.
func (s *Server) webhook(c *gin.Context) {
	if !s.webhookAuthorized(c.Request) {
		c.Header("WWW-Authenticate", `Bearer realm="alertrca", Basic realm="alertrca"`)
		fail(c, http.StatusUnauthorized, "missing or wrong credentials: send Authorization: Bearer <WEBHOOK_TOKEN> or Basic auth with the token as password")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes (WEBHOOK_MAX_BODY_BYTES)", s.cfg.MaxBodyBytes))
			return
		}
		fail(c, http.StatusBadRequest, "cannot read body: "+err.Error())
		return
	}
	alerts, err := decodeWebhook(body)
	if err != nil {
		s.log.Warn("rejected webhook", "err", err, "remote", c.ClientIP())
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.sub.Submit(c.Request.Context(), alerts...)
	if err != nil {
		s.log.Error("webhook not stored; asking Alertmanager to retry", "err", err, "alerts", len(alerts))
		c.Header("Retry-After", "30")
		fail(c, http.StatusServiceUnavailable, "alerts not stored, retry later: "+err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok", "received": res.Received, "new": res.New, "repeats": res.Repeats, "resolved": res.Resolved})
}

// decodeWebhook parses and checks an Alertmanager webhook body.
func decodeWebhook(body []byte) ([]store.Alert, error) {
	var p webhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if p.Version != "4" {
		return nil, fmt.Errorf("not an Alertmanager webhook: version is %q, want \"4\"", p.Version)
	}
	out := make([]store.Alert, 0, len(p.Alerts))
	for i, a := range p.Alerts {
		if a.Status != store.StatusFiring && a.Status != store.StatusResolved {
			return nil, fmt.Errorf("alert %d: status is %q, want \"firing\" or \"resolved\"", i, a.Status)
		}
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alert %d: no labels", i)
		}
		if a.StartsAt.IsZero() {
			return nil, fmt.Errorf("alert %d: no startsAt", i)
		}
		al := store.Alert{
			Source: store.SourceAlertmanager, Status: a.Status,
			Labels: a.Labels, Annotations: a.Annotations,
			Reason:       firstNonEmpty(a.Annotations["description"], a.Annotations["summary"]),
			Fingerprint:  a.Fingerprint,
			StartsAt:     a.StartsAt,
			GeneratorURL: a.GeneratorURL,
		}
		// Firing alerts carry a provisional endsAt (or none); only a resolve ends an episode.
		if a.Status == store.StatusResolved {
			al.EndsAt = a.EndsAt
		}
		out = append(out, al)
	}
	return out, nil
}

// webhookAuthorized accepts Bearer <token>, or Basic auth whose password is
// the token, compared in constant time. No token configured: open.
func (s *Server) webhookAuthorized(r *http.Request) bool {
	if s.cfg.WebhookToken == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	var got string
	switch strings.ToLower(scheme) {
	case "bearer":
		got = strings.TrimSpace(cred)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return false
		}
		_, got, _ = strings.Cut(string(raw), ":")
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.WebhookToken)) == 1
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
