package enrich_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/store"
)

// fakeLangfuse is Langfuse's ingestion API: it records batches and auth.
type fakeLangfuse struct {
	mu      sync.Mutex
	batches [][]map[string]any
	auth    []string
}

func (f *fakeLangfuse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/public/ingestion" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var body struct {
		Batch []map[string]any `json:"batch"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	user, pass, _ := r.BasicAuth()
	f.mu.Lock()
	f.batches = append(f.batches, body.Batch)
	f.auth = append(f.auth, user+":"+pass)
	f.mu.Unlock()
	w.WriteHeader(http.StatusMultiStatus)
	_, _ = w.Write([]byte(`{"successes":[],"errors":[]}`))
}

func (f *fakeLangfuse) events() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

func runLangfuse(t *testing.T, url string) (*enrich.Langfuse, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	lf := enrich.NewLangfuse(url, "pk-lf-1", "sk-lf-1", 20*time.Millisecond, reg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { lf.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return lf, reg
}

func TestLangfuseTraces(t *testing.T) {
	fake := &fakeLangfuse{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	lf, reg := runLangfuse(t, srv.URL)

	e := newEnv(t, enrich.Config{Tracer: lf}, answer(`{"summary": "x"`), answer(validRCA)) // a repair: two generations
	e.run(t)
	a := firing()
	submit(t, e.p, a)
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	waitRCA(t, e.store, id)
	chat := enrich.NewChat(e.store, enrich.NewOllama(e.llmURL, "test-model"), enrich.ChatConfig{}, lf)
	_, session, err := chat.Ask(context.Background(), "", "what now?", id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "6 events (3 traces, 3 generations)", func() bool { return len(fake.events()) == 6 })

	fake.mu.Lock()
	auth, batches := fake.auth[0], len(fake.batches)
	fake.mu.Unlock()
	if auth != "pk-lf-1:sk-lf-1" {
		t.Errorf("basic auth %q", auth)
	}
	if batches >= 6 {
		t.Errorf("%d requests for 6 events: not batched", batches)
	}
	var rcaGens, chatTraces int
	traces := map[string]bool{}
	for _, ev := range fake.events() {
		body := ev["body"].(map[string]any)
		switch ev["type"] {
		case "trace-create":
			traces[body["id"].(string)] = true
			if body["name"] == "chat" {
				chatTraces++
				if body["sessionId"] != session.ID {
					t.Errorf("chat trace sessionId %v, want %s", body["sessionId"], session.ID)
				}
			}
		case "generation-create":
			usage := body["usage"].(map[string]any)
			if body["model"] != "test-model" || usage["input"] != 100.0 || usage["output"] != 20.0 || usage["total"] != 120.0 ||
				body["startTime"] == nil || body["endTime"] == nil || body["output"] == "" || !traces[body["traceId"].(string)] {
				t.Errorf("generation: %v", body)
			}
			if body["name"] == "rca" {
				rcaGens++
				if body["traceId"] != "rca-"+id {
					t.Errorf("rca generation in trace %v", body["traceId"])
				}
			}
		default:
			t.Errorf("event type %v", ev["type"])
		}
	}
	if rcaGens != 2 || chatTraces != 1 || len(traces) != 2 {
		t.Errorf("%d rca generations, %d chat traces, %d traces; want 2, 1, 2 (the repair shares the RCA's trace)", rcaGens, chatTraces, len(traces))
	}
	if sent := metric(t, reg, "alertrca_langfuse_events_total"); sent != 6 {
		t.Errorf("events metric %v, want 6 sent", sent)
	}
}

func TestLangfuseDownNeverBlocks(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	lf, reg := runLangfuse(t, dead)
	e := newEnv(t, enrich.Config{Tracer: lf}, answer(validRCA))
	e.run(t)
	a := firing()
	submit(t, e.p, a)
	id := store.EpisodeID(a.Fingerprint, a.StartsAt)
	if r := waitRCA(t, e.store, id); r.Fallback {
		t.Fatalf("analysis broken by Langfuse being down: %+v", r)
	}
	chat := enrich.NewChat(e.store, enrich.NewOllama(e.llmURL, "test-model"), enrich.ChatConfig{}, lf)
	if reply, _, err := chat.Ask(context.Background(), "", "hi", ""); err != nil || reply == "" {
		t.Fatalf("chat with Langfuse down: %q %v", reply, err)
	}
	// Far more events than the queue holds (1000): recording never waits,
	// the excess is dropped and counted at once.
	now := time.Now()
	for range 3000 {
		lf.Chat("s", "m", nil, enrich.Generation{}, nil, now, now)
	}
	// Every event is accounted for as dropped: queue full, or Langfuse down.
	waitFor(t, "all 6004 events counted as dropped", func() bool {
		return metric(t, reg, "alertrca_langfuse_events_total") == 6004
	})
}
