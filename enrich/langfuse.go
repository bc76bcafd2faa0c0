package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/store"
)

// Langfuse sends a trace with a generation inside for every RCA call and
// every chat turn to Langfuse's ingestion API (POST /api/public/ingestion,
// Basic auth public:secret), batched in the background. Recording never
// blocks: when the queue is full, or Langfuse fails, events are dropped and
// counted.
type Langfuse struct {
	host, public, secret string
	client               *http.Client
	events               chan langfuseEvent
	batchSize            int
	every                time.Duration
	log                  *slog.Logger
	sent, dropped        prometheus.Counter
}

type langfuseEvent struct {
	ID        string         `json:"id"`
	Timestamp string         `json:"timestamp"`
	Type      string         `json:"type"`
	Body      map[string]any `json:"body"`
}

// NewLangfuse returns a tracer for the Langfuse at host (LANGFUSE_HOST).
// every is how often a partial batch is sent (default 2s).
func NewLangfuse(host, public, secret string, every time.Duration, reg prometheus.Registerer, logger *slog.Logger) *Langfuse {
	if every <= 0 {
		every = 2 * time.Second
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alertrca_langfuse_events_total",
		Help: "Langfuse events by outcome (sent, dropped: queue full or Langfuse failed).",
	}, []string{"outcome"})
	reg.MustRegister(events)
	return &Langfuse{
		host: strings.TrimRight(host, "/"), public: public, secret: secret,
		client: &http.Client{Timeout: 10 * time.Second}, events: make(chan langfuseEvent, 1000),
		batchSize: 50, every: every, log: logger.With("component", "langfuse"),
		sent: events.WithLabelValues("sent"), dropped: events.WithLabelValues("dropped"),
	}
}

// RCA implements Tracer: all calls of one anomaly's analysis share one trace.
func (l *Langfuse) RCA(anomalyID, model, prompt string, gen Generation, err error, start, end time.Time) {
	trace := "rca-" + anomalyID
	l.record(trace, "rca", "", model, prompt, gen, err, start, end, map[string]any{"anomaly_id": anomalyID})
}

// Chat implements Tracer: one trace per turn, grouped by session.
func (l *Langfuse) Chat(sessionID, model string, input []ChatMessage, gen Generation, err error, start, end time.Time) {
	l.record(store.NewID(), "chat", sessionID, model, input, gen, err, start, end, nil)
}

func (l *Langfuse) record(traceID, name, sessionID, model string, input any, gen Generation, err error, start, end time.Time, meta map[string]any) {
	ts := end.UTC().Format(time.RFC3339Nano)
	trace := map[string]any{"id": traceID, "name": name, "input": input, "output": gen.Text, "timestamp": start.UTC().Format(time.RFC3339Nano)}
	if sessionID != "" {
		trace["sessionId"] = sessionID
	}
	if meta != nil {
		trace["metadata"] = meta
	}
	generation := map[string]any{
		"id": store.NewID(), "traceId": traceID, "name": name, "model": model, "input": input, "output": gen.Text,
		"startTime": start.UTC().Format(time.RFC3339Nano), "endTime": ts,
		"usage": map[string]any{"input": gen.PromptTokens, "output": gen.CompletionTokens,
			"total": gen.PromptTokens + gen.CompletionTokens, "unit": "TOKENS"},
	}
	if err != nil {
		generation["level"], generation["statusMessage"] = "ERROR", err.Error()
	}
	l.enqueue(langfuseEvent{ID: store.NewID(), Timestamp: ts, Type: "trace-create", Body: trace})
	l.enqueue(langfuseEvent{ID: store.NewID(), Timestamp: ts, Type: "generation-create", Body: generation})
}

func (l *Langfuse) enqueue(ev langfuseEvent) {
	select {
	case l.events <- ev:
	default:
		l.dropped.Inc()
	}
}

// Run sends batches until ctx ends, then sends what is left (briefly).
func (l *Langfuse) Run(ctx context.Context) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	var batch []langfuseEvent
	for {
		select {
		case ev := <-l.events:
			batch = append(batch, ev)
			if len(batch) >= l.batchSize {
				l.send(ctx, batch)
				batch = nil
			}
		case <-t.C:
			if len(batch) > 0 {
				l.send(ctx, batch)
				batch = nil
			}
		case <-ctx.Done():
			for len(l.events) > 0 {
				batch = append(batch, <-l.events)
			}
			if len(batch) > 0 {
				last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				l.send(last, batch)
				cancel()
			}
			return
		}
	}
}

func (l *Langfuse) send(ctx context.Context, batch []langfuseEvent) {
	if err := l.post(ctx, batch); err != nil {
		l.dropped.Add(float64(len(batch)))
		l.log.Warn("Langfuse events dropped", "events", len(batch), "err", err)
		return
	}
	l.sent.Add(float64(len(batch)))
}

func (l *Langfuse) post(ctx context.Context, batch []langfuseEvent) error {
	body, err := json.Marshal(map[string]any{"batch": batch})
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.host+"/api/public/ingestion", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(l.public, l.secret)
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
