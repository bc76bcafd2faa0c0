package enrich_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/notify"
	"github.com/alertrca/alertrca/notify/notifytest"
	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/sqlite"
)

// fakeSlack is a Slack incoming webhook: it records the messages it accepts
// and answers 500 while down.
type fakeSlack struct {
	mu   sync.Mutex
	msgs []map[string]any
	down atomic.Bool
}

func (f *fakeSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if f.down.Load() {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
}

func (f *fakeSlack) texts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.msgs {
		out = append(out, m["text"].(string))
	}
	return out
}

type notifyEnv struct {
	*env
	slack *fakeSlack
	smtp  *notifytest.SMTPServer
	d     *enrich.Deliverer
}

// newNotifyEnv is a pipeline whose anomalies notify Slack, and a deliverer.
func newNotifyEnv(t *testing.T, dir string, now func() time.Time, emailOn bool) *notifyEnv {
	t.Helper()
	fs := &fakeSlack{}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	smtpSrv := notifytest.StartSMTP(t)
	host, port, _ := net.SplitHostPort(smtpSrv.Addr)
	p, _ := strconv.Atoi(port)
	e := newEnvIn(t, dir, enrich.Config{}, answer(validRCA))
	email := &notify.Email{Host: host, Port: p, User: notifytest.User, Password: notifytest.Password,
		From: "alertrca@example.com", TLSConfig: &tls.Config{RootCAs: smtpSrv.Pool},
		Recipients: func(ctx context.Context) ([]string, error) {
			ec, _, err := e.store.GetEmailConfig(ctx)
			return ec.Recipients, err
		}}
	if err := e.store.PutEmailConfig(context.Background(), store.EmailConfig{Enabled: true, Recipients: []string{"oncall@example.com"}}); err != nil {
		t.Fatal(err)
	}
	policy := enrich.ChannelPolicy{Slack: true, Email: emailOn, EmailConfig: e.store}
	e.p = enrich.New(e.store, enrich.NewOllama(e.llmURL, "test-model"), enrich.Config{Channels: policy.For, PollInterval: 50 * time.Millisecond}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	d := enrich.NewDeliverer(e.store, []notify.Notifier{notify.NewSlack(srv.URL), email}, enrich.DeliverConfig{
		PollInterval: 20 * time.Millisecond, MaxPerMinute: 20,
		Backoff: notify.Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond},
	}, now, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	return &notifyEnv{env: e, slack: fs, smtp: smtpSrv, d: d}
}

func (n *notifyEnv) runDeliverer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestOneIncidentOneMessageThenResolved(t *testing.T) {
	n := newNotifyEnv(t, t.TempDir(), nil, true)
	n.run(t)
	n.runDeliverer(t)
	a := firing()
	for range 3 { // the same webhook three times
		submit(t, n.p, a)
	}
	waitFor(t, "the firing message on both channels", func() bool { return len(n.slack.texts()) == 1 && len(n.smtp.Messages()) == 1 })
	if got := n.slack.texts()[0]; !strings.HasPrefix(got, "[CRITICAL] InstanceDown on api-1:8080: api-1 is down") {
		t.Fatalf("message %q", got)
	}
	r := a
	r.Status, r.EndsAt = store.StatusResolved, a.StartsAt.Add(time.Minute)
	submit(t, n.p, r)
	submit(t, n.p, r)
	waitFor(t, "the resolved message on both channels", func() bool { return len(n.slack.texts()) == 2 && len(n.smtp.Messages()) == 2 })
	if got := n.slack.texts()[1]; !strings.HasPrefix(got, "[RESOLVED] InstanceDown") {
		t.Fatalf("resolved message %q", got)
	}
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	var ds []store.Delivery
	waitFor(t, "the four messages recorded as sent", func() bool {
		ds, _ = n.store.ListDeliveries(context.Background(), id)
		sent := 0
		for _, d := range ds {
			if d.Status == store.DeliverySent {
				sent++
			}
		}
		return sent == 4
	})
	if len(ds) != 4 {
		t.Fatalf("deliveries %+v, want firing and resolved on two channels", ds)
	}
	for _, d := range ds {
		if d.Status != store.DeliverySent || d.SentAt == nil || d.Attempts != 1 {
			t.Fatalf("delivery %+v", d)
		}
	}
	if got := len(n.slack.texts()); got != 2 || len(n.smtp.Messages()) != 2 {
		t.Fatalf("%d Slack messages and %d emails, want 2 and 2", got, len(n.smtp.Messages()))
	}
	if !bytes.Contains(n.smtp.Messages()[1].Data, []byte("Subject: [RESOLVED] InstanceDown on api-1:8080")) {
		t.Fatalf("resolved email:\n%s", n.smtp.Messages()[1].Data)
	}
}

func TestChannelDownThenUp(t *testing.T) {
	n := newNotifyEnv(t, t.TempDir(), nil, false)
	n.slack.down.Store(true)
	n.run(t)
	n.runDeliverer(t)
	a := firing()
	submit(t, n.p, a)
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	waitFor(t, "a few failed attempts", func() bool {
		ds, _ := n.store.ListDeliveries(context.Background(), id)
		return len(ds) == 1 && ds[0].Attempts >= 3 && ds[0].Status == store.DeliveryPending && ds[0].LastError == "slack: HTTP 500"
	})
	n.slack.down.Store(false)
	waitFor(t, "the message after recovery", func() bool {
		ds, _ := n.store.ListDeliveries(context.Background(), id)
		return ds[0].Status == store.DeliverySent
	})
	if got := len(n.slack.texts()); got != 1 {
		t.Fatalf("%d messages, want 1", got)
	}
}

func TestRestartWithPendingDelivery(t *testing.T) {
	dir := t.TempDir()
	n := newNotifyEnv(t, dir, nil, false)
	stop := n.run(t)
	a := firing()
	submit(t, n.p, a)
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	waitRCA(t, n.store, id) // analysed and queued, never sent: the deliverer did not run
	stop()
	_ = n.store.Close()

	n2 := newNotifyEnv(t, dir, nil, false)
	n2.runDeliverer(t)
	waitFor(t, "the queued message after restart", func() bool { return len(n2.slack.texts()) == 1 })
	var ds []store.Delivery
	waitFor(t, "the message recorded as sent", func() bool { // the record follows the send
		ds, _ = n2.store.ListDeliveries(context.Background(), id)
		return len(ds) == 1 && ds[0].Status == store.DeliverySent
	})
	if len(ds) != 1 || ds[0].Status != store.DeliverySent || ds[0].Attempts != 1 {
		t.Fatalf("deliveries %+v", ds)
	}
}

func TestStormDigest(t *testing.T) {
	clock := time.Date(2026, 11, 26, 12, 0, 5, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	n := newNotifyEnv(t, t.TempDir(), now, false)
	ctx := context.Background()
	st := n.store
	for i := range 50 {
		a := firing()
		a.Fingerprint, a.Labels = "", map[string]string{"alertname": "Storm", "instance": fmt.Sprintf("node-%d", i), "severity": "high"}
		an := store.NewAnomaly(a, clock)
		if _, err := st.Ingest(ctx, []*store.Anomaly{an}); err != nil {
			t.Fatal(err)
		}
		if err := st.SaveRCA(ctx, &store.RCA{AnomalyID: an.ID, Summary: "s", CreatedAt: clock}, []string{"slack"}); err != nil {
			t.Fatal(err)
		}
	}
	for n.d.SendOne(ctx) {
	}
	if got := len(n.slack.texts()); got != 20 {
		t.Fatalf("%d single messages in the minute, want 20", got)
	}
	n.d.SendDigests(ctx) // the minute is not over: nothing yet
	if got := len(n.slack.texts()); got != 20 {
		t.Fatalf("digest sent before the minute ended")
	}
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	n.d.SendDigests(ctx)
	texts := n.slack.texts()
	if len(texts) != 21 || texts[20] != "30 more incidents in the last minute" {
		t.Fatalf("after the minute: %d messages, last %q", len(texts), texts[len(texts)-1])
	}
	n.d.SendDigests(ctx)
	if len(n.slack.texts()) != 21 {
		t.Fatalf("digest sent twice")
	}
}

func TestChannelPolicy(t *testing.T) {
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	an := func(sev string) *store.Anomaly { return &store.Anomaly{ID: "x", Severity: sev} }
	ctx := context.Background()
	p := enrich.ChannelPolicy{Slack: true, Email: true, EmailConfig: st, MinSeverity: "high"}
	if got := p.For(ctx, an("critical")); fmt.Sprint(got) != "[slack]" {
		t.Fatalf("no email config yet: %v", got)
	}
	if err := st.PutEmailConfig(ctx, store.EmailConfig{Enabled: true, Recipients: []string{"a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	for sev, want := range map[string]string{"critical": "[email slack]", "high": "[email slack]", "warning": "[]", "info": "[]", "custom-sev": "[email slack]"} {
		if got := fmt.Sprint(p.For(ctx, an(sev))); got != want {
			t.Errorf("severity %s: %s, want %s", sev, got, want)
		}
	}
	_ = st.PutEmailConfig(ctx, store.EmailConfig{Enabled: false, Recipients: []string{"a@example.com"}})
	if got := fmt.Sprint(p.For(ctx, an("critical"))); got != "[slack]" {
		t.Errorf("email switched off: %s", got)
	}
}
