package enrich_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/store"
)

// onInstance is the test alert on another instance: the same kind of incident.
func onInstance(instance string) store.Alert {
	a := firing()
	a.Fingerprint = ""
	a.Labels = map[string]string{"alertname": "InstanceDown", "instance": instance, "job": "api", "severity": "critical"}
	return a
}

func analysed(t *testing.T, e *env, a store.Alert) *store.RCA {
	t.Helper()
	submit(t, e.p, a)
	return waitRCA(t, e.store, store.NewAnomaly(a, time.Now()).ID)
}

func TestRCACache(t *testing.T) {
	e := newEnv(t, enrich.Config{CacheTTL: time.Hour}, answer(validRCA))
	e.run(t)
	first := analysed(t, e, onInstance("api-1:8080"))
	second := analysed(t, e, onInstance("api-2:8080"))
	if e.llm.calls.Load() != 1 {
		t.Fatalf("%d LLM calls for two incidents of one kind, want 1", e.llm.calls.Load())
	}
	if first.Cached || !second.Cached || second.SourceRCAID != first.ID || second.Summary != first.Summary || second.AnomalyID == first.AnomalyID {
		t.Fatalf("first %+v\nsecond %+v", first, second)
	}
	if hits := metric(t, e.reg, "alertrca_rca_cache_total"); hits != 2 { // one miss, one hit
		t.Fatalf("cache lookups %v, want 2", hits)
	}
	// Another kind (another job) is analysed afresh.
	other := onInstance("api-3:8080")
	other.Labels["job"] = "payments"
	if r := analysed(t, e, other); r.Cached || e.llm.calls.Load() != 2 {
		t.Fatalf("other kind: cached %v, %d calls", r.Cached, e.llm.calls.Load())
	}
}

func TestRCACacheOtherModel(t *testing.T) {
	e := newEnv(t, enrich.Config{CacheTTL: time.Hour}, answer(validRCA))
	stop := e.run(t)
	analysed(t, e, onInstance("api-1:8080"))
	stop() // only the other model's pipeline analyses from here on
	// A replica with another model on the same store: its key differs.
	p := enrich.New(e.store, enrich.NewOllama(e.llmURL, "other-model"), enrich.Config{CacheTTL: time.Hour, PollInterval: 50 * time.Millisecond},
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	e.p = p
	e.run(t)
	if r := analysed(t, e, onInstance("api-2:8080")); r.Cached || r.Model != "other-model" || e.llm.calls.Load() != 2 {
		t.Fatalf("other model: %+v, %d calls", r, e.llm.calls.Load())
	}
}

func TestRCACacheExpired(t *testing.T) {
	e := newEnv(t, enrich.Config{CacheTTL: time.Nanosecond}, answer(validRCA))
	e.run(t)
	analysed(t, e, onInstance("api-1:8080"))
	if r := analysed(t, e, onInstance("api-2:8080")); r.Cached || e.llm.calls.Load() != 2 {
		t.Fatalf("expired entry reused: %+v, %d calls", r, e.llm.calls.Load())
	}
}

func TestCacheKey(t *testing.T) {
	an := func(a store.Alert) *store.Anomaly { return store.NewAnomaly(a, time.Now()) }
	k := func(model, version string, a store.Alert) string { return enrich.CacheKey(model, version, an(a)) }
	base := k("m", "1", onInstance("a:1"))
	if base != k("m", "1", onInstance("b:2")) {
		t.Error("instance changes the key")
	}
	other := onInstance("a:1")
	other.Labels["job"] = "x"
	for name, got := range map[string]string{
		"model": k("m2", "1", onInstance("a:1")), "prompt version": k("m", "2", onInstance("a:1")), "job label": k("m", "1", other),
	} {
		if got == base {
			t.Errorf("%s does not change the key", name)
		}
	}
}

// TestChatBothBackends: the chat speaks each API and accounts its tokens.
func TestChatBothBackends(t *testing.T) {
	for _, api := range backends {
		t.Run(api, func(t *testing.T) {
			e := newEnvAPI(t, t.TempDir(), api, enrich.Config{}, answer("Restart the exporter first."))
			chat := enrich.NewChat(e.store, newLLM(api, e.llmURL), enrich.ChatConfig{}, nil)
			reply, cs, err := chat.Ask(t.Context(), "", "which fix first?", "")
			if err != nil || reply != "Restart the exporter first." {
				t.Fatalf("reply %q, %v", reply, err)
			}
			if cs.PromptTokens != 100 || cs.CompletionTokens != 20 || len(cs.Messages) != 2 {
				t.Fatalf("session %+v", cs)
			}
			e.llm.mu.Lock()
			req := e.llm.requests[0]
			e.llm.mu.Unlock()
			msgs, _ := req["messages"].([]any)
			if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[1].(map[string]any)["content"] != "which fix first?" {
				t.Fatalf("messages %v", req["messages"])
			}
			if api == "ollama" && req["stream"] != false {
				t.Fatalf("ollama chat without stream false: %v", req)
			}
			if api == "openai" && req["response_format"] != nil {
				t.Fatalf("chat asked for a response format: %v", req)
			}
		})
	}
}
