package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Slack limits (Block Kit reference): longer text is cut with a marker.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackTextMax    = 3000 // the notification text; Slack accepts more, but shows less
	slackDigestMax  = 40   // incidents listed in a digest
	truncatedMarker = " … (truncated)"
)

// Slack posts to an incoming webhook (SLACK_WEBHOOK_URL).
type Slack struct {
	URL    string
	Client *http.Client
}

// NewSlack returns a Slack notifier with its own HTTP client.
func NewSlack(webhookURL string) *Slack {
	return &Slack{URL: webhookURL, Client: &http.Client{Timeout: 30 * time.Second}}
}

// Name implements Notifier.
func (s *Slack) Name() string { return "slack" }

// Notify implements Notifier.
func (s *Slack) Notify(ctx context.Context, m Message) (bool, error) {
	err := slack.PostWebhookCustomHTTPContext(ctx, s.URL, s.Client, SlackMessage(m))
	if err == nil {
		return false, nil
	}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	switch {
	case errors.As(err, &rl):
		return true, &RetryAfterError{Err: fmt.Errorf("slack: rate limited (HTTP 429)"), After: rl.RetryAfter}
	case errors.As(err, &sc):
		return RetryableHTTP(sc.Code), fmt.Errorf("slack: HTTP %d", sc.Code)
	}
	// Transport errors: the URL is a secret, so do not repeat the client's text.
	var ue *url.Error
	if errors.As(err, &ue) {
		return RetryableTransport(ue.Err) || ue.Timeout(), fmt.Errorf("slack: %s", strings.ReplaceAll(ue.Err.Error(), s.URL, "<webhook>"))
	}
	return RetryableTransport(err), fmt.Errorf("slack: %w", err)
}

// SlackMessage renders m as a Block Kit webhook message.
func SlackMessage(m Message) *slack.WebhookMessage {
	var blocks []slack.Block
	text := ""
	switch m.Kind {
	case KindDigest:
		title := fmt.Sprintf("%d more incidents in the last minute", len(m.Digest))
		text = title
		var lines []string
		for i, d := range m.Digest {
			if i == slackDigestMax {
				lines = append(lines, fmt.Sprintf("… and %d more", len(m.Digest)-slackDigestMax))
				break
			}
			lines = append(lines, fmt.Sprintf("• *[%s] %s* on %s: %s", esc(strings.ToUpper(d.Severity)), esc(d.Name),
				esc(orDash(d.Instance)), esc(firstLine(d.Summary))))
		}
		blocks = append(blocks, header(title), section(strings.Join(lines, "\n")))
	case KindResolved:
		title := fmt.Sprintf("[RESOLVED] %s", m.Name)
		text = fmt.Sprintf("%s on %s", title, orDash(m.Instance))
		blocks = append(blocks, header(title), fields(m, true))
	default:
		prefix := "[" + strings.ToUpper(orDash(m.Severity)) + "]"
		if m.Kind == KindTest {
			prefix = "[TEST]"
		}
		title := fmt.Sprintf("%s %s", prefix, m.Name)
		text = fmt.Sprintf("%s on %s: %s", title, orDash(m.Instance), m.Summary)
		blocks = append(blocks, header(title), fields(m, false))
		if m.Summary != "" {
			blocks = append(blocks, section("*Summary*\n"+esc(m.Summary)))
		}
		if m.Simplified != "" {
			blocks = append(blocks, section("*In plain words*\n"+esc(m.Simplified)))
		}
		if m.Cause != "" {
			blocks = append(blocks, section("*Likely cause*\n"+esc(m.Cause)))
		}
		if m.Fix != "" {
			blocks = append(blocks, section("*Fix*\n"+esc(m.Fix)))
		}
		if m.Fallback {
			blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
				"The LLM gave no usable answer: this analysis was built from the alert itself.", false, false)))
		}
	}
	if links := linkLine(m); links != "" {
		blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, links, false, false)))
	}
	return &slack.WebhookMessage{Text: truncate(esc(text), slackTextMax), Blocks: &slack.Blocks{BlockSet: blocks}}
}

func header(s string) slack.Block {
	return slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, truncate(esc(s), slackHeaderMax), false, false))
}

func section(mrkdwn string) slack.Block {
	return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, truncate(mrkdwn, slackSectionMax), false, false), nil, nil)
}

func fields(m Message, resolved bool) slack.Block {
	f := []*slack.TextBlockObject{
		field("Status", m.Status), field("Instance", m.Instance), field("Job", m.Job),
		field("Started", when(m.StartsAt)),
	}
	if resolved {
		f = append(f, field("Ended", when(m.EndsAt)))
	}
	return slack.NewSectionBlock(nil, f, nil)
}

func field(name, value string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, truncate("*"+name+"*\n"+esc(orDash(value)), slackFieldMax), false, false)
}

// linkLine links the alert's source and the incident, http(s) URLs only.
func linkLine(m Message) string {
	var parts []string
	for _, l := range []struct{ name, url string }{{"Source", m.GeneratorURL}, {"Incident", m.Link}} {
		if u, err := url.Parse(l.url); err == nil && (u.Scheme == "http" || u.Scheme == "https") && !strings.ContainsAny(l.url, "|") {
			parts = append(parts, "<"+esc(l.url)+"|"+l.name+">")
		}
	}
	return strings.Join(parts, " · ")
}

// esc escapes the three characters Slack's text formats interpret.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n bytes on a rune boundary, with a marker.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(truncatedMarker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMarker
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
