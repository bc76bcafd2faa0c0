package enrich

import (
	"context"
	"log/slog"
	"strings"

	"github.com/alertrca/alertrca/store"
)

// ChannelPolicy decides which channels are told about an anomaly.
type ChannelPolicy struct {
	Slack       bool // SLACK_ENABLED with SLACK_WEBHOOK_URL
	Email       bool // SMTP_HOST set; recipients and the switch come from the store
	EmailConfig interface {
		GetEmailConfig(ctx context.Context) (store.EmailConfig, bool, error)
	}
	MinSeverity string // NOTIFY_MIN_SEVERITY; empty: every severity
	Log         *slog.Logger
}

// severityRank orders the usual severity names. Names it does not know rank
// 0 and are always notified: an unfamiliar severity is no reason to stay quiet.
var severityRank = map[string]int{
	"info": 1, "low": 1, "none": 1,
	"warning": 2, "warn": 2, "medium": 2,
	"high": 3, "error": 3, "major": 3,
	"critical": 4, "page": 4, "emergency": 4,
}

// ValidSeverity tells whether s can be a NOTIFY_MIN_SEVERITY.
func ValidSeverity(s string) bool { _, ok := severityRank[strings.ToLower(s)]; return ok || s == "" }

// For lists the channels for a.
func (c ChannelPolicy) For(ctx context.Context, a *store.Anomaly) []string {
	if c.MinSeverity != "" {
		rank := severityRank[strings.ToLower(a.Severity)]
		if rank != 0 && rank < severityRank[strings.ToLower(c.MinSeverity)] {
			return nil
		}
	}
	var out []string
	if c.Email && c.EmailConfig != nil {
		ec, _, err := c.EmailConfig.GetEmailConfig(ctx)
		switch {
		case err != nil && c.Log != nil:
			c.Log.Warn("cannot read the email configuration; not emailing this incident", "anomaly", a.ID, "err", err)
		case err == nil && ec.Enabled && len(ec.Recipients) > 0:
			out = append(out, "email")
		}
	}
	if c.Slack {
		out = append(out, "slack")
	}
	return out
}
