package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func incident() Message {
	return Message{
		Kind: KindFiring, Name: "InstanceDown", Severity: "critical", Status: "firing",
		Instance: "api-1:8080", Job: "api",
		Labels:   map[string]string{"alertname": "InstanceDown", "instance": "api-1:8080"},
		StartsAt: time.Date(2026, 11, 26, 13, 41, 47, 0, time.UTC),
		Summary:  "api-1 stopped answering scrapes", Simplified: "A server of the API is down.",
		Cause: "The process crashed <oom-killer> & was not restarted.", Fix: "Restart it; raise its memory limit.",
		GeneratorURL: "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
		Link:         "http://alertrca:8000/anomalies/c822fd915cbb8e7b-18eb9c190efc83e0",
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./notify -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./notify -update rewrites it):\n%s", name, got)
	}
}

func TestSlackGolden(t *testing.T) {
	resolved := incident()
	resolved.Kind, resolved.Status, resolved.EndsAt = KindResolved, "resolved", resolved.StartsAt.Add(7*time.Minute)
	digest := Message{Kind: KindDigest, Digest: []Message{incident(), incident()}}
	for name, m := range map[string]Message{"slack_firing.json": incident(), "slack_resolved.json": resolved, "slack_digest.json": digest} {
		b, err := json.MarshalIndent(SlackMessage(m), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, append(b, '\n'))
	}
}

func TestSlackEscapingAndTruncation(t *testing.T) {
	m := incident()
	m.Name = "<!channel> & <http://evil|click>"
	m.Summary = strings.Repeat("é", 4000) // multi-byte: cut on a rune boundary
	m.Cause = "<b>bold</b>"
	m.Instance = "host>1"
	b, _ := json.Marshal(SlackMessage(m))
	body := string(b)
	for _, bad := range []string{"<!channel>", "<http://evil", "<b>", "host>1"} {
		if strings.Contains(body, bad) {
			t.Errorf("unescaped %q in %s", bad, body)
		}
	}
	for _, want := range []string{"&lt;!channel&gt; &amp; &lt;http://evil|click&gt;", "&lt;b&gt;bold&lt;/b&gt;", "host&gt;1"} {
		if !strings.Contains(body, strings.ReplaceAll(want, "&", `\u0026`)) && !strings.Contains(body, want) {
			t.Errorf("missing escaped %q", want)
		}
	}
	msg := SlackMessage(m)
	for _, blk := range msg.Blocks.BlockSet {
		raw, _ := json.Marshal(blk)
		var v struct {
			Text *struct{ Text string } `json:"text"`
		}
		_ = json.Unmarshal(raw, &v)
		if v.Text == nil {
			continue
		}
		if len(v.Text.Text) > slackSectionMax {
			t.Errorf("block text of %d bytes, limit %d", len(v.Text.Text), slackSectionMax)
		}
		if strings.HasPrefix(v.Text.Text, "*Summary*") && !strings.HasSuffix(v.Text.Text, truncatedMarker) {
			t.Errorf("long summary not marked as truncated")
		}
	}
	if len(msg.Text) > slackTextMax || !strings.HasSuffix(msg.Text, truncatedMarker) {
		t.Errorf("text: %d bytes", len(msg.Text))
	}
}

func TestSlackRetryClassification(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		retryAfter string
		retry      bool
		after      time.Duration
	}{
		{"ok", 200, "", false, 0},
		{"server error", 500, "", true, 0},
		{"unavailable", 503, "", true, 0},
		{"rate limited", 429, "7", true, 7 * time.Second},
		{"rate limited without Retry-After", 429, "", true, 0},
		{"bad request", 400, "", false, 0},
		{"gone webhook", 404, "", false, 0},
		{"forbidden", 403, "", false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ = io.ReadAll(r.Body)
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			s := NewSlack(srv.URL + "/services/T000/B000/secret")
			retry, err := s.Notify(context.Background(), incident())
			if (err == nil) != (tc.status == 200) || retry != tc.retry {
				t.Fatalf("retry %v err %v, want retry %v", retry, err, tc.retry)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Fatalf("error shows the webhook URL: %v", err)
			}
			var ra *RetryAfterError
			if tc.after > 0 && (!errors.As(err, &ra) || ra.After != tc.after) {
				t.Fatalf("want Retry-After %v in %v", tc.after, err)
			}
			if !bytes.Contains(got, []byte(`"type":"header"`)) {
				t.Fatalf("request body is not a Block Kit message: %s", got)
			}
		})
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String() + "/services/secret"
	l.Close()
	retry, err := NewSlack(dead).Notify(context.Background(), incident())
	if !retry || err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("connection refused: retry %v err %v, want a retry without the URL", retry, err)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Minute, Rand: func() float64 { return 1 }}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := b.Delay(i+1, errors.New("x")); got != w {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w)
		}
	}
	if got := b.Delay(40, nil); got != time.Minute {
		t.Errorf("cap: %v", got)
	}
	low := Backoff{Initial: time.Second, Max: time.Minute, Rand: func() float64 { return 0 }}
	if got := low.Delay(3, nil); got != 2*time.Second {
		t.Errorf("jitter floor: %v, want half of 4s", got)
	}
	if got := b.Delay(1, &RetryAfterError{Err: errors.New("429"), After: 30 * time.Second}); got != 30*time.Second {
		t.Errorf("Retry-After: %v", got)
	}
	if got := b.Delay(1, &RetryAfterError{Err: errors.New("429"), After: time.Hour}); got != time.Minute {
		t.Errorf("Retry-After beyond the cap: %v", got)
	}
}
