package enrich_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/sqlite"
)

// fakeOllama is a fake LLM server of either API: it answers Ollama's
// /api/generate and /api/chat and the OpenAI-compatible
// /v1/chat/completions with the replies in order (the last one repeats), and
// records every request.
type fakeOllama struct {
	mu       sync.Mutex
	replies  []func(w http.ResponseWriter, r *http.Request)
	requests []map[string]any
	auths    []string
	calls    atomic.Int64
}

func (f *fakeOllama) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if (r.URL.Path != "/api/generate" && r.URL.Path != "/api/chat" && r.URL.Path != "/v1/chat/completions") || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	n := f.calls.Add(1)
	f.mu.Lock()
	f.requests = append(f.requests, body)
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	reply := f.replies[min(int(n)-1, len(f.replies)-1)]
	f.mu.Unlock()
	reply(w, r)
}

// answer replies text in the shape of the API asked (100 prompt and 20
// completion tokens).
func answer(text string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/chat/completions":
			_ = json.NewEncoder(w).Encode(map[string]any{
				"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": text}}},
				"usage":   map[string]any{"prompt_tokens": 100, "completion_tokens": 20},
			})
		case "/api/chat":
			_ = json.NewEncoder(w).Encode(map[string]any{
				"model": "test-model", "message": map[string]any{"role": "assistant", "content": text}, "done": true,
				"prompt_eval_count": 100, "eval_count": 20,
			})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{
				"model": "test-model", "response": text, "done": true,
				"prompt_eval_count": 100, "eval_count": 20,
			})
		}
	}
}

// failure replies an HTTP error with msg where each API puts it.
func failure(code int, msg string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		if r.URL.Path == "/v1/chat/completions" {
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg}})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"error": msg})
	}
}

// backends are the LLM APIs every LLM test runs against.
var backends = []string{"ollama", "openai"}

func newLLM(api, url string) enrich.LLM {
	if api == "openai" {
		return enrich.NewOpenAI(url+"/v1", "test-model", "test-key")
	}
	return enrich.NewOllama(url, "test-model")
}

const validRCA = `{"summary":"api-1 is down","simplified":"a server stopped","cause":"process crashed","fix":"restart it"}`

type env struct {
	p      *enrich.Pipeline
	store  *sqlite.Store
	llm    *fakeOllama
	reg    *prometheus.Registry
	dir    string
	llmURL string
}

func newEnv(t *testing.T, cfg enrich.Config, replies ...func(http.ResponseWriter, *http.Request)) *env {
	t.Helper()
	dir := t.TempDir()
	return newEnvIn(t, dir, cfg, replies...)
}

func newEnvIn(t *testing.T, dir string, cfg enrich.Config, replies ...func(http.ResponseWriter, *http.Request)) *env {
	t.Helper()
	return newEnvAPI(t, dir, "ollama", cfg, replies...)
}

func newEnvAPI(t *testing.T, dir, api string, cfg enrich.Config, replies ...func(http.ResponseWriter, *http.Request)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fake := &fakeOllama{replies: replies}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	if cfg.LLMTimeout == 0 {
		cfg.LLMTimeout = 5 * time.Second
	}
	cfg.PollInterval = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	p := enrich.New(st, enrich.Instrument(newLLM(api, srv.URL), reg), cfg, reg, slog.New(slog.DiscardHandler))
	return &env{p: p, store: st, llm: fake, reg: reg, dir: dir, llmURL: srv.URL}
}

// run starts the pipeline and returns a function that stops it and waits.
func (e *env) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.p.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func firing() store.Alert {
	return store.Alert{
		Source: store.SourceAlertmanager, Status: store.StatusFiring,
		Labels:      map[string]string{"alertname": "InstanceDown", "instance": "api-1:8080", "job": "api", "severity": "critical"},
		Annotations: map[string]string{"summary": "Target down"},
		Fingerprint: "c822fd915cbb8e7b",
		StartsAt:    time.Date(2026, 11, 26, 13, 41, 47, 876819936, time.UTC),
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitRCA(t *testing.T, s store.Store, id string) *store.RCA {
	t.Helper()
	var r *store.RCA
	waitFor(t, "the RCA of "+id, func() bool {
		var err error
		r, err = s.GetRCA(context.Background(), id)
		return err == nil
	})
	return r
}

func submit(t *testing.T, p *enrich.Pipeline, alerts ...store.Alert) store.SubmitResult {
	t.Helper()
	res, err := p.Submit(context.Background(), alerts...)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return res
}

func TestLLMAnswers(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	cases := []llmCase{
		{"valid", []func(http.ResponseWriter, *http.Request){answer(validRCA)}, 1, false, "", "api-1 is down"},
		{"invalid then repaired", []func(http.ResponseWriter, *http.Request){answer(`{"summary": "x"`), answer(validRCA)}, 2, false, "", "api-1 is down"},
		{"missing field then repaired", []func(http.ResponseWriter, *http.Request){answer(`{"summary":"x","simplified":"y","cause":"z"}`), answer(validRCA)}, 2, false, "", "api-1 is down"},
		{"garbage twice", []func(http.ResponseWriter, *http.Request){answer("I think the server is down."), answer("still prose")}, 2, true, "after one repair", ""},
		{"http 500", []func(http.ResponseWriter, *http.Request){failure(500, "model crashed")}, 1, true, "answered HTTP 500: model crashed", ""},
		{"timeout", []func(http.ResponseWriter, *http.Request){slow}, 1, true, "timed out after 300ms", ""},
	}
	for _, api := range backends {
		for _, tc := range cases {
			t.Run(api+"/"+tc.name, func(t *testing.T) {
				testLLMAnswer(t, api, tc)
			})
		}
	}
}

// llmCase is one scripted LLM behaviour and what the pipeline must store.
type llmCase struct {
	name      string
	replies   []func(http.ResponseWriter, *http.Request)
	calls     int64
	fallback  bool
	errSubstr string
	summary   string
}

func testLLMAnswer(t *testing.T, api string, tc llmCase) {
	e := newEnvAPI(t, t.TempDir(), api, enrich.Config{LLMTimeout: 300 * time.Millisecond}, tc.replies...)
	e.run(t)
	a := firing()
	if res := submit(t, e.p, a); res.New != 1 {
		t.Fatalf("Submit: %+v, want 1 new", res)
	}
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	r := waitRCA(t, e.store, id)
	if got := e.llm.calls.Load(); got != tc.calls {
		t.Errorf("LLM calls = %d, want %d", got, tc.calls)
	}
	if r.Fallback != tc.fallback || !strings.Contains(r.Error, tc.errSubstr) {
		t.Errorf("fallback=%v error=%q, want fallback=%v error containing %q", r.Fallback, r.Error, tc.fallback, tc.errSubstr)
	}
	if tc.summary != "" && r.Summary != tc.summary {
		t.Errorf("summary %q, want %q", r.Summary, tc.summary)
	}
	if r.Summary == "" || r.Simplified == "" || r.Cause == "" || r.Fix == "" {
		t.Errorf("stored RCA has an empty field: %+v", r)
	}
	if r.Model != "test-model" || r.AnomalyID != id || r.Fingerprint != a.Fingerprint {
		t.Errorf("RCA identity: %+v", r)
	}
	an, err := e.store.GetAnomaly(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := store.RCADone
	if tc.fallback {
		wantStatus = store.RCAFallback
	}
	if an.RCAStatus != wantStatus {
		t.Errorf("rca_status %s, want %s", an.RCAStatus, wantStatus)
	}
	if !tc.fallback && (r.PromptTokens != int(100*tc.calls) || r.CompletionTokens != int(20*tc.calls)) {
		t.Errorf("tokens %d/%d, want %d/%d", r.PromptTokens, r.CompletionTokens, 100*tc.calls, 20*tc.calls)
	}
	e.llm.mu.Lock()
	req := e.llm.requests[0]
	e.llm.mu.Unlock()
	prompt := checkRCARequest(t, api, req)
	if auth := e.llm.auths[0]; (api == "openai") != (auth == "Bearer test-key") {
		t.Errorf("Authorization %q with the %s API", auth, api)
	}
	if !strings.Contains(prompt, "<<<ALERT_DATA") || !strings.Contains(prompt, `"instance": "api-1:8080"`) || !strings.Contains(prompt, "Target down") {
		t.Errorf("prompt lacks the fenced alert:\n%s", prompt)
	}
	wantFallbacks := 0.0
	if tc.fallback {
		wantFallbacks = 1
	}
	// The metric follows the store write: wait for it rather than race it.
	waitFor(t, "the analysis metrics", func() bool {
		return metric(t, e.reg, "alertrca_rca_stored_total") == 1
	})
	if got := metric(t, e.reg, "alertrca_rca_fallbacks_total"); got != wantFallbacks {
		t.Errorf("fallback metric %v, want %v", got, wantFallbacks)
	}
	if got := metric(t, e.reg, "alertrca_llm_calls_total"); got != float64(tc.calls) {
		t.Errorf("LLM calls metric %v, want %v", got, tc.calls)
	}
}

// checkRCARequest checks the request shape of each API and returns the prompt.
func checkRCARequest(t *testing.T, api string, req map[string]any) string {
	t.Helper()
	if req["model"] != "test-model" {
		t.Errorf("model %v", req["model"])
	}
	if api == "openai" {
		rf, _ := req["response_format"].(map[string]any)
		js, _ := rf["json_schema"].(map[string]any)
		schema, _ := js["schema"].(map[string]any)
		required, _ := schema["required"].([]any)
		if rf["type"] != "json_schema" || js["strict"] != true || js["name"] != "rca" || len(required) != 4 || schema["additionalProperties"] != false {
			t.Errorf("response_format %v; want a strict json_schema with the 4 fields", req["response_format"])
		}
		msgs, _ := req["messages"].([]any)
		if len(msgs) != 1 {
			t.Fatalf("messages %v", req["messages"])
		}
		return msgs[0].(map[string]any)["content"].(string)
	}
	format, _ := req["format"].(map[string]any)
	required, _ := format["required"].([]any)
	if req["stream"] != false || len(required) != 4 {
		t.Errorf("request: stream=%v format=%v; want stream false and the 4-field schema", req["stream"], req["format"])
	}
	prompt, _ := req["prompt"].(string)
	return prompt
}

// metric sums every series of a counter or gauge family in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func TestSamePayloadThreeTimesOneLLMCall(t *testing.T) {
	e := newEnv(t, enrich.Config{}, answer(validRCA))
	e.run(t)
	a := firing()
	results := []store.SubmitResult{submit(t, e.p, a), submit(t, e.p, a), submit(t, e.p, a)}
	if results[0].New != 1 || results[1].Repeats != 1 || results[2].Repeats != 1 {
		t.Fatalf("results %+v, want new then two repeats", results)
	}
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	waitRCA(t, e.store, id)
	// A repeat after the analysis is stored must not start another one either.
	submit(t, e.p, a)
	list, _ := e.store.ListAnomalies(context.Background(), store.AnomalyFilter{Limit: 10})
	if len(list) != 1 {
		t.Fatalf("%d anomalies, want 1", len(list))
	}
	// The anomalies table is the queue: one row, analysed, means one analysis.
	if n, _ := e.store.CountPending(context.Background()); n != 0 {
		t.Fatalf("%d anomalies still queued", n)
	}
	if got := e.llm.calls.Load(); got != 1 {
		t.Fatalf("LLM calls = %d, want 1", got)
	}
	if got := metric(t, e.reg, "alertrca_duplicates_dropped_total"); got != 3 {
		t.Fatalf("duplicates metric %v, want 3", got)
	}
}

func TestResolvedAfterFiring(t *testing.T) {
	e := newEnv(t, enrich.Config{}, answer(validRCA))
	e.run(t)
	a := firing()
	submit(t, e.p, a)
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	waitRCA(t, e.store, id)
	r := a
	r.Status, r.EndsAt = store.StatusResolved, a.StartsAt.Add(5*time.Minute)
	if res := submit(t, e.p, r); res.Resolved != 1 {
		t.Fatalf("resolve: %+v", res)
	}
	got, err := e.store.GetAnomaly(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusResolved || got.EndsAt == nil || !got.EndsAt.Equal(r.EndsAt) || got.RCAStatus != store.RCADone {
		t.Fatalf("after resolve: %+v", got)
	}
	list, _ := e.store.ListAnomalies(context.Background(), store.AnomalyFilter{Limit: 10})
	if len(list) != 1 || e.llm.calls.Load() != 1 {
		t.Fatalf("%d anomalies and %d LLM calls, want 1 and 1", len(list), e.llm.calls.Load())
	}
}

func TestQueueFullRefusesFiringButTakesResolves(t *testing.T) {
	e := newEnv(t, enrich.Config{MaxPending: 1}, answer(validRCA)) // not running: nothing drains
	a := firing()
	submit(t, e.p, a)
	b := firing()
	b.Fingerprint, b.Labels = "", map[string]string{"alertname": "Other"}
	if _, err := e.p.Submit(context.Background(), b); !errors.Is(err, enrich.ErrQueueFull) {
		t.Fatalf("second firing alert: err %v, want ErrQueueFull", err)
	}
	r := a
	r.Status = store.StatusResolved
	if res := submit(t, e.p, r); res.Resolved != 1 {
		t.Fatalf("resolve while full: %+v", res)
	}
}

// TestStopMidAnalysis stops the pipeline while the LLM is still thinking: the
// claim is released, nothing is stored as analysed, and a new pipeline on the
// same database finishes the work.
func TestStopMidAnalysis(t *testing.T) {
	started := make(chan struct{}, 1)
	hang := func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}
	e := newEnv(t, enrich.Config{LLMTimeout: time.Minute, ShutdownGrace: 100 * time.Millisecond}, hang)
	stop := e.run(t)
	a := firing()
	submit(t, e.p, a)
	<-started
	stop()
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	an, err := e.store.GetAnomaly(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if an.RCAStatus != store.RCAPending || an.LeaseOwner != "" {
		t.Fatalf("after stop: rca_status %s owner %q, want pending and released", an.RCAStatus, an.LeaseOwner)
	}
	if _, err := e.store.GetRCA(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an interrupted analysis was stored: %v", err)
	}
	_ = e.store.Close()

	e2 := newEnvIn(t, e.dir, enrich.Config{}, answer(validRCA))
	e2.run(t)
	r := waitRCA(t, e2.store, id)
	if r.Fallback || r.Summary != "api-1 is down" {
		t.Fatalf("after restart: %+v", r)
	}
}
