package receiver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/notify"
	"github.com/alertrca/alertrca/receiver"
	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/sqlite"
)

const (
	token       = "s3cret-token" // the token in the captured request headers
	fixturesDir = "testdata/alertmanager-0.25"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

type env struct {
	srv   *httptest.Server
	store *sqlite.Store
	reg   *prometheus.Registry
	slack *int32 // messages the fake Slack received
	chats *chatLLM
}

// chatLLM is a fake Ollama /api/chat that records the conversations it gets
// and answers with how many messages it saw.
type chatLLM struct {
	mu    sync.Mutex
	convs [][]map[string]string
}

func (f *chatLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Messages []map[string]string `json:"messages"`
		Stream   bool                `json:"stream"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	if r.URL.Path != "/api/chat" || body.Stream {
		http.Error(w, "want /api/chat with stream false", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.convs = append(f.convs, body.Messages)
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"done": true, "prompt_eval_count": 50, "eval_count": 10,
		"message": map[string]string{"role": "assistant", "content": fmt.Sprintf("saw %d messages", len(body.Messages))}})
}

func (f *chatLLM) last() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.convs[len(f.convs)-1]
}

func newEnv(t *testing.T, cfg receiver.Config) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	p := enrich.New(st, enrich.NewOllama("http://127.0.0.1:1", "m"), enrich.Config{}, reg, log)
	cfg.StoreKind = st.Kind()
	// Real notifiers: Slack against a fake incoming webhook, email against a
	// port where no SMTP server listens.
	var slackMsgs int32
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(&slackMsgs, 1)
	}))
	t.Cleanup(slack.Close)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	email := &notify.Email{Host: "127.0.0.1", Port: deadPort, From: "alertrca@example.com", TLS: "none", Timeout: 2 * time.Second,
		Recipients: func(ctx context.Context) ([]string, error) {
			ec, _, err := st.GetEmailConfig(ctx)
			return ec.Recipients, err
		}}
	chats := &chatLLM{}
	llm := httptest.NewServer(chats)
	t.Cleanup(llm.Close)
	chat := enrich.NewChat(st, enrich.NewOllama(llm.URL, "chat-model"), enrich.ChatConfig{MaxStored: 6, MaxSent: 4}, nil)
	notes := enrich.NewDeliverer(st, []notify.Notifier{notify.NewSlack(slack.URL), email}, enrich.DeliverConfig{},
		nil, reg, log)
	s := receiver.New(receiver.Deps{Submitter: p, Store: st, Notifications: notes, Chat: chat,
		Registerer: reg, Gatherer: reg, Logger: log}, cfg)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, store: st, reg: reg, slack: &slackMsgs, chats: chats}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixturesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body to the webhook with the given Authorization header value.
func (e *env) post(t *testing.T, auth string, body []byte) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/webhook/alertmanager", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

func (e *env) get(t *testing.T, path string, into any) int {
	t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if into != nil {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil && resp.StatusCode == 200 {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// TestFixturesMatchShared keeps the vendored fixtures identical to the
// captured ones when the shared folder is next to the repository.
func TestFixturesMatchShared(t *testing.T) {
	shared := filepath.Join("..", "..", "shared", "fixtures", "alertmanager-0.25")
	entries, err := os.ReadDir(shared)
	if err != nil {
		t.Logf("no shared fixtures beside the repository (%v); using the vendored copies", err)
		return
	}
	for _, e := range entries {
		want, _ := os.ReadFile(filepath.Join(shared, e.Name()))
		got, err := os.ReadFile(filepath.Join(fixturesDir, e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the shared fixture; copy it again", e.Name())
		}
	}
}

func TestWebhookFixtures(t *testing.T) {
	cases := []struct {
		file                 string
		new, resolved        float64
		id, name, status     string
		rcaStatus, generator string
	}{
		{"firing-instance-down.json", 1, 0, "c822fd915cbb8e7b", "InstanceDown", "firing", "pending", ""},
		{"prometheus-rule-instance-down.json", 1, 0, "e6ceb00c1d6a8ef1", "InstanceDown", "firing", "pending", "http://vm:19090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"},
		{"resolved-high-cpu.json", 0, 1, "ade7a8c0784ef879", "HighCPU", "resolved", "skipped", ""},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			e := newEnv(t, receiver.Config{WebhookToken: token})
			resp, body := e.post(t, "Bearer "+token, fixture(t, tc.file))
			if resp.StatusCode != http.StatusOK || body["new"] != tc.new || body["resolved"] != tc.resolved || body["received"] != 1.0 {
				t.Fatalf("status %d body %v", resp.StatusCode, body)
			}
			var list []store.Anomaly
			if code := e.get(t, "/anomalies", &list); code != 200 || len(list) != 1 {
				t.Fatalf("GET /anomalies: %d, %d anomalies", code, len(list))
			}
			a := list[0]
			if a.Fingerprint != tc.id || a.Name != tc.name || a.Status != tc.status || a.RCAStatus != tc.rcaStatus ||
				a.Source != "alertmanager" || a.GeneratorURL != tc.generator || a.Labels["job"] == "" {
				t.Fatalf("stored anomaly: %+v", a)
			}
			if tc.status == "resolved" && (a.EndsAt == nil || a.EndsAt.Format(time.RFC3339) != "2026-11-26T13:41:55Z") {
				t.Fatalf("resolved ends_at %v", a.EndsAt)
			}
			// The same payload again is a repeat, not a new episode.
			if _, body := e.post(t, "Bearer "+token, fixture(t, tc.file)); body["repeats"] != 1.0 {
				t.Fatalf("second post: %v", body)
			}
		})
	}
}

// TestCapturedRequest replays the request line and headers Alertmanager sent.
func TestCapturedRequest(t *testing.T) {
	e := newEnv(t, receiver.Config{WebhookToken: token})
	f, err := os.Open(filepath.Join(fixturesDir, "request-headers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	method, path, _ := strings.Cut(sc.Text(), " ")
	path, _, _ = strings.Cut(path, " ")
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(fixture(t, "firing-instance-down.json")))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok && k != "Host" && k != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusOK || body["new"] != 1.0 {
		t.Fatalf("captured request: %d %v", resp.StatusCode, body)
	}
}

func TestWebhookStatusCodes(t *testing.T) {
	good := fixture(t, "firing-instance-down.json")
	basic := func(user, pass string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, pass)
		return req.Header.Get("Authorization")
	}
	cases := []struct {
		name string
		auth string
		body []byte
		code int
	}{
		{"bearer", "Bearer " + token, good, 200},
		{"basic with token as password", basic("alertmanager", token), good, 200},
		{"missing credentials", "", good, 401},
		{"wrong bearer", "Bearer nope", good, 401},
		{"token prefix only", "Bearer " + token[:5], good, 401},
		{"wrong basic password", basic("alertmanager", "nope"), good, 401},
		{"basic not base64", "Basic !!!", good, 401},
		{"other scheme", "Token " + token, good, 401},
		{"malformed JSON", "Bearer " + token, []byte(`{"version": "4", "alerts": [`), 400},
		{"not a webhook", "Bearer " + token, []byte(`{"hello": "world"}`), 400},
		{"wrong version", "Bearer " + token, bytes.Replace(good, []byte(`"version": "4"`), []byte(`"version": "3"`), 1), 400},
		{"bad alert status", "Bearer " + token, bytes.Replace(good, []byte(`"status": "firing",
      "labels"`), []byte(`"status": "burning",
      "labels"`), 1), 400},
		{"empty body", "Bearer " + token, nil, 400},
	}
	e := newEnv(t, receiver.Config{WebhookToken: token})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(t, tc.auth, tc.body)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d (%v), want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.code != 200 && body["error"] == nil {
				t.Errorf("error answer without a message: %v", body)
			}
			// A bad request loses nothing else: the next good one is stored.
			if resp, _ := e.post(t, "Bearer "+token, fixture(t, "prometheus-rule-instance-down.json")); resp.StatusCode != 200 {
				t.Fatalf("good request after %q: %d", tc.name, resp.StatusCode)
			}
		})
	}
	var list []store.Anomaly
	e.get(t, "/anomalies", &list)
	if len(list) != 2 {
		t.Fatalf("%d anomalies stored, want 2 (the fixture and the follow-up)", len(list))
	}
}

func TestWebhookWithoutTokenIsOpen(t *testing.T) {
	e := newEnv(t, receiver.Config{})
	if resp, _ := e.post(t, "", fixture(t, "firing-instance-down.json")); resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

func TestWebhookOversize(t *testing.T) {
	body := fixture(t, "firing-instance-down.json")
	e := newEnv(t, receiver.Config{MaxBodyBytes: int64(len(body) - 1)})
	resp, out := e.post(t, "", body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(out["error"].(string), "WEBHOOK_MAX_BODY_BYTES") {
		t.Fatalf("got %d %v, want 413 naming the limit", resp.StatusCode, out)
	}
	e2 := newEnv(t, receiver.Config{MaxBodyBytes: int64(len(body))})
	if resp, _ := e2.post(t, "", body); resp.StatusCode != 200 {
		t.Fatalf("body at the limit: %d", resp.StatusCode)
	}
}

func TestStoreDown(t *testing.T) {
	e := newEnv(t, receiver.Config{})
	if code := e.get(t, "/-/ready", nil); code != 200 {
		t.Fatalf("ready with store up: %d", code)
	}
	_ = e.store.Close()
	resp, body := e.post(t, "", fixture(t, "firing-instance-down.json"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("webhook with store down: %d %v (Retry-After %q), want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if code := e.get(t, "/-/ready", nil); code != 503 {
		t.Fatalf("ready with store down: %d", code)
	}
	if code := e.get(t, "/-/healthy", nil); code != 200 {
		t.Fatalf("healthy with store down: %d", code)
	}
	if code := e.get(t, "/anomalies", nil); code != 503 {
		t.Fatalf("read with store down: %d", code)
	}
}

func TestReads(t *testing.T) {
	e := newEnv(t, receiver.Config{Version: "1.2.3"})
	for _, f := range []string{"firing-instance-down.json", "prometheus-rule-instance-down.json", "resolved-high-cpu.json"} {
		if resp, _ := e.post(t, "", fixture(t, f)); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", f, resp.StatusCode)
		}
	}
	ctx := context.Background()
	id := store.EpisodeID("e6ceb00c1d6a8ef1", time.Date(2026, 11, 26, 13, 42, 13, 568000000, time.UTC))
	if err := e.store.SaveRCA(ctx, &store.RCA{AnomalyID: id, Summary: "target down", Simplified: "s", Cause: "c", Fix: "f", Model: "m", CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}

	var root map[string]any
	if e.get(t, "/", &root); root["service"] != "alertrca" || root["version"] != "1.2.3" || root["store"] != "embedded" || root["slack_enabled"] != false {
		t.Errorf("GET /: %v", root)
	}
	var stats store.Counts
	if e.get(t, "/stats", &stats); stats != (store.Counts{Anomalies: 3, RCA: 1}) {
		t.Errorf("GET /stats: %+v", stats)
	}
	var list []map[string]any
	for q, want := range map[string]int{
		"": 3, "?limit=2": 2, "?status=firing": 2, "?status=resolved": 1, "?severity=high": 1,
		"?severity=critical&status=firing": 2, "?source=poller": 0, "?source=alertmanager&limit=1": 1,
	} {
		list = nil
		if code := e.get(t, "/anomalies"+q, &list); code != 200 || len(list) != want {
			t.Errorf("GET /anomalies%s: %d, %d items, want %d", q, code, len(list), want)
		}
	}
	e.get(t, "/anomalies", &list)
	for _, k := range []string{"id", "source", "name", "severity", "status", "labels", "annotations", "value", "reason", "fingerprint", "starts_at", "ends_at", "detected_at", "rca_status"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("anomaly JSON lacks %q: %v", k, list[0])
		}
	}
	for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?status=open", "?source=grafana"} {
		var out map[string]any
		if code := e.get(t, "/anomalies"+bad, &out); code != 400 || out["error"] == nil {
			t.Errorf("GET /anomalies%s: %d %v, want 400 with a message", bad, code, out)
		}
	}
	var one map[string]any
	if code := e.get(t, "/anomalies/"+id, &one); code != 200 || one["id"] != id || one["rca"].(map[string]any)["summary"] != "target down" {
		t.Errorf("GET /anomalies/:id: %d %v", code, one)
	}
	if code := e.get(t, "/anomalies/nope", nil); code != 404 {
		t.Errorf("unknown anomaly: %d", code)
	}
	var rcas []map[string]any
	if e.get(t, "/rca", &rcas); len(rcas) != 1 || rcas[0]["anomaly_id"] != id || rcas[0]["fallback"] != false {
		t.Errorf("GET /rca: %v", rcas)
	}
	var snaps []any
	if code := e.get(t, "/prom-metrics", &snaps); code != 200 || snaps == nil || len(snaps) != 0 {
		t.Errorf("GET /prom-metrics: %d %v", code, snaps)
	}
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`alertrca_http_requests_total{code="200",method="POST",route="/webhook/alertmanager"} 3`,
		`alertrca_alerts_received_total{outcome="new",source="alertmanager"} 2`,
		`alertrca_queue_depth 2`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func (e *env) send(t *testing.T, method, path, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestTargetsAPI(t *testing.T) {
	off := newEnv(t, receiver.Config{})
	if code, body := off.send(t, "PUT", "/targets/eu", "", `{"endpoint":"http://prom:9090"}`); code != 403 || !strings.Contains(body, "API_TOKEN") {
		t.Fatalf("without API_TOKEN: %d %s, want 403 saying how to enable", code, body)
	}
	e := newEnv(t, receiver.Config{APIToken: "api"})
	good := `{"endpoint":"http://scraper:hunter2@prom-eu:9090/","job":"node"}`
	cases := []struct {
		name, method, path, auth, body string
		code                           int
	}{
		{"no token", "PUT", "/targets/eu", "", good, 401},
		{"wrong token", "PUT", "/targets/eu", "Bearer nope", good, 401},
		{"bad name", "PUT", "/targets/bad%20name", "Bearer api", good, 400},
		{"bad endpoint", "PUT", "/targets/eu", "Bearer api", `{"endpoint":"prom-eu:9090"}`, 400},
		{"not JSON", "PUT", "/targets/eu", "Bearer api", `endpoint=x`, 400},
		{"create", "PUT", "/targets/eu", "Bearer api", good, 200},
		{"second", "PUT", "/targets/us", "Bearer api", `{"endpoint":"https://prom-us:9090","enabled":false}`, 200},
		{"delete unknown", "DELETE", "/targets/nope", "Bearer api", "", 404},
		{"delete", "DELETE", "/targets/us", "Bearer api", "", 204},
	}
	for _, tc := range cases {
		code, body := e.send(t, tc.method, tc.path, tc.auth, tc.body)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
		if strings.Contains(body, "hunter2") {
			t.Errorf("%s: credentials echoed: %s", tc.name, body)
		}
	}
	var ts []store.Target
	e.get(t, "/targets", &ts)
	if len(ts) != 1 || ts[0] != (store.Target{Name: "eu", Endpoint: "http://prom-eu:9090", Job: "node", Enabled: true}) {
		t.Fatalf("GET /targets: %+v", ts)
	}
	stored, _ := e.store.ListTargets(context.Background())
	if stored[0].Endpoint != "http://scraper:hunter2@prom-eu:9090" {
		t.Fatalf("stored endpoint lost its credentials: %s", stored[0].Endpoint)
	}
}

func TestAgentEndpoints(t *testing.T) {
	off := newEnv(t, receiver.Config{})
	if code, body := off.send(t, "PUT", "/agent/email-config", "", `{"enabled":true,"recipients":[]}`); code != 403 || !strings.Contains(body, "API_TOKEN") {
		t.Fatalf("without API_TOKEN: %d %s", code, body)
	}
	e := newEnv(t, receiver.Config{APIToken: "api", SMTPConfigured: true, SlackEnabled: true, SlackConfigured: true})
	var ec map[string]any
	if e.get(t, "/agent/email-config", &ec); ec["enabled"] != false || ec["smtp_configured"] != true {
		t.Fatalf("GET email-config: %v", ec)
	}
	for _, tc := range []struct {
		auth, body string
		code       int
		want       string
	}{
		{"", `{"enabled":true,"recipients":["a@example.com"]}`, 401, "API_TOKEN"},
		{"Bearer api", `{"enabled":true,"recipients":["a@example.com","not-an-address"]}`, 400, `recipient \"not-an-address\" is not an email address`},
		{"Bearer api", `{"enabled":true}`, 400, "recipients"},
		{"Bearer api", `{"enabled":true,"recipients":["a@example.com","Ops <ops@example.com>"]}`, 200, "ops@example.com"},
	} {
		code, body := e.send(t, "PUT", "/agent/email-config", tc.auth, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("PUT %s: %d %s, want %d with %s", tc.body, code, body, tc.code, tc.want)
		}
	}
	if got, ok, _ := e.store.GetEmailConfig(context.Background()); !ok || !got.Enabled || len(got.Recipients) != 2 {
		t.Fatalf("stored email config: %+v", got)
	}
	// Slack: status never shows the URL; the test message goes out at once.
	var st map[string]any
	if e.get(t, "/agent/slack-status", &st); st["enabled"] != true || st["configured"] != true || len(st) != 2 {
		t.Fatalf("slack-status: %v", st)
	}
	if code, body := e.send(t, "POST", "/agent/test-slack", "Bearer api", ""); code != 200 || atomic.LoadInt32(e.slack) != 1 {
		t.Fatalf("test-slack: %d %s, %d messages", code, body, atomic.LoadInt32(e.slack))
	}
	// Email: the SMTP error comes back in the answer.
	if code, body := e.send(t, "POST", "/agent/test-email", "Bearer api", ""); code != 502 || !strings.Contains(body, "email test failed") {
		t.Fatalf("test-email with no SMTP server: %d %s", code, body)
	}
	if code, _ := e.send(t, "POST", "/agent/test-email", "", ""); code != 401 {
		t.Fatalf("test-email without token: %d", code)
	}
	unconfigured := newEnv(t, receiver.Config{APIToken: "api"})
	if code, body := unconfigured.send(t, "POST", "/agent/test-slack", "Bearer api", ""); code != 400 || !strings.Contains(body, "SLACK_WEBHOOK_URL") {
		t.Fatalf("test-slack unconfigured: %d %s", code, body)
	}
}

func (e *env) ask(t *testing.T, auth, body string) (int, map[string]any) {
	t.Helper()
	code, raw := e.send(t, "POST", "/api/chat", auth, body)
	var out map[string]any
	_ = json.Unmarshal([]byte(raw), &out)
	return code, out
}

func TestChat(t *testing.T) {
	e := newEnv(t, receiver.Config{})
	code, out := e.ask(t, "", `{"message": "what does this CPU alert mean?", "context": {}, "session_id": null}`)
	sid, _ := out["session_id"].(string)
	if code != 200 || sid == "" || out["response"] != "saw 2 messages" {
		t.Fatalf("new session: %d %v", code, out)
	}
	// A known id continues the session: its history goes to the model.
	code, out = e.ask(t, "", `{"message": "which fix first?", "session_id": "`+sid+`"}`)
	if code != 200 || out["session_id"] != sid || out["response"] != "saw 4 messages" {
		t.Fatalf("continued: %d %v", code, out)
	}
	conv := e.chats.last()
	if conv[0]["role"] != "system" || conv[1]["content"] != "what does this CPU alert mean?" || conv[2]["content"] != "saw 2 messages" || conv[3]["content"] != "which fix first?" {
		t.Fatalf("conversation sent: %v", conv)
	}
	var session store.ChatSession
	if code := e.get(t, "/api/chat/"+sid, &session); code != 200 || len(session.Messages) != 4 || session.PromptTokens != 100 || session.CompletionTokens != 20 {
		t.Fatalf("GET session: %d %+v", code, session)
	}
	// History caps: 6 turns stored, 4 sent (oldest dropped first).
	for i := range 3 {
		e.ask(t, "", fmt.Sprintf(`{"message": "question %d", "session_id": %q}`, i, sid))
	}
	conv = e.chats.last()
	if len(conv) != 6 || conv[1]["content"] != "question 0" || conv[5]["content"] != "question 2" {
		t.Fatalf("sent history %v, want system + 4 latest turns + the question", conv)
	}
	e.get(t, "/api/chat/"+sid, &session)
	if len(session.Messages) != 6 || session.Messages[0].Content != "question 0" {
		t.Fatalf("stored history %+v, want the 6 latest turns", session.Messages)
	}
	if code, out := e.ask(t, "", `{"message": "hello?", "session_id": "nope"}`); code != 404 || !strings.Contains(out["error"].(string), "nope") {
		t.Fatalf("unknown session: %d %v", code, out)
	}
	if code := e.get(t, "/api/chat/nope", nil); code != 404 {
		t.Fatalf("GET unknown session: %d", code)
	}
	long := strings.Repeat("é", receiver.MaxChatChars+1)
	if code, out := e.ask(t, "", `{"message": "`+long+`"}`); code != 400 || !strings.Contains(out["error"].(string), "4000") {
		t.Fatalf("oversize: %d %v", code, out)
	}
	if code, _ := e.ask(t, "", `{"message": ""}`); code != 400 {
		t.Fatalf("empty message: %d", code)
	}
	var stats store.Counts
	if e.get(t, "/stats", &stats); stats.ChatSessions != 1 {
		t.Fatalf("stats: %+v", stats)
	}
}

func TestChatAboutAnIncident(t *testing.T) {
	e := newEnv(t, receiver.Config{})
	e.post(t, "", fixture(t, "prometheus-rule-instance-down.json"))
	id := store.EpisodeID("e6ceb00c1d6a8ef1", time.Date(2026, 11, 26, 13, 42, 13, 568000000, time.UTC))
	if err := e.store.SaveRCA(context.Background(), &store.RCA{AnomalyID: id, Summary: "target 127.0.0.1:1 down",
		Cause: "nothing listens on port 1", Fix: "start it", Evidence: "up: 3 points, last 0", CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	code, out := e.ask(t, "", `{"message": "what now?", "context": {"anomaly_id": "`+id+`"}}`)
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	system := e.chats.last()[0]["content"]
	for _, want := range []string{"<<<ALERT_DATA", `"instance": "127.0.0.1:1"`, "nothing listens on port 1", "up: 3 points, last 0"} {
		if !strings.Contains(system, want) {
			t.Errorf("system prompt lacks %q:\n%s", want, system)
		}
	}
	// The session remembers its incident.
	e.ask(t, "", fmt.Sprintf(`{"message": "and then?", "session_id": %q}`, out["session_id"]))
	if !strings.Contains(e.chats.last()[0]["content"], "nothing listens on port 1") {
		t.Error("the incident was not given to the model on the next turn")
	}
	if code, out := e.ask(t, "", `{"message": "?", "context": {"anomaly_id": "nope"}}`); code != 404 || !strings.Contains(out["error"].(string), "nope") {
		t.Fatalf("unknown anomaly: %d %v", code, out)
	}
}

func TestChatNeedsAPITokenWhenSet(t *testing.T) {
	e := newEnv(t, receiver.Config{APIToken: "api"})
	if code, _ := e.ask(t, "", `{"message": "hi"}`); code != 401 {
		t.Fatalf("without token: %d", code)
	}
	if code, _ := e.ask(t, "Bearer api", `{"message": "hi"}`); code != 200 {
		t.Fatalf("with token: %d", code)
	}
}
