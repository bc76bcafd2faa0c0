package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// InstrumentedLLM counts the calls, tokens and latency of an LLM by backend
// and purpose (rca, chat).
type InstrumentedLLM struct {
	LLM
	calls   *prometheus.CounterVec
	tokens  *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// Instrument wraps l; its metrics go on reg.
func Instrument(l LLM, reg prometheus.Registerer) *InstrumentedLLM {
	i := &InstrumentedLLM{
		LLM: l,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_llm_calls_total",
			Help: "LLM calls by backend, purpose (rca, chat) and outcome (ok, error, timeout).",
		}, []string{"backend", "purpose", "outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_llm_tokens_total",
			Help: "Tokens used by LLM calls, by backend, purpose and kind (prompt, completion).",
		}, []string{"backend", "purpose", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "alertrca_llm_latency_seconds",
			Help:    "Duration of LLM calls by backend and purpose.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120},
		}, []string{"backend", "purpose"}),
	}
	reg.MustRegister(i.calls, i.tokens, i.latency)
	return i
}

// Generate implements LLM.
func (i *InstrumentedLLM) Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error) {
	start := time.Now()
	gen, err := i.LLM.Generate(ctx, prompt, schema)
	i.observe(ctx, "rca", start, gen, err)
	return gen, err
}

// Chat implements LLM.
func (i *InstrumentedLLM) Chat(ctx context.Context, messages []ChatMessage) (Generation, error) {
	start := time.Now()
	gen, err := i.LLM.Chat(ctx, messages)
	i.observe(ctx, "chat", start, gen, err)
	return gen, err
}

func (i *InstrumentedLLM) observe(ctx context.Context, purpose string, start time.Time, gen Generation, err error) {
	b := i.Backend()
	outcome := "ok"
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)):
		outcome = "timeout"
	case err != nil:
		outcome = "error"
	}
	i.calls.WithLabelValues(b, purpose, outcome).Inc()
	i.latency.WithLabelValues(b, purpose).Observe(time.Since(start).Seconds())
	i.tokens.WithLabelValues(b, purpose, "prompt").Add(float64(gen.PromptTokens))
	i.tokens.WithLabelValues(b, purpose, "completion").Add(float64(gen.CompletionTokens))
}
