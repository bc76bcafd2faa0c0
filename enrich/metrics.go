package enrich

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the pipeline, registered on the registry passed to New.
type Metrics struct {
	received    *prometheus.CounterVec
	stored      *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	queueDepth  prometheus.Gauge
	llmCalls    *prometheus.CounterVec
	llmLatency  prometheus.Histogram
	llmTokens   *prometheus.CounterVec
	rcaStored   *prometheus.CounterVec
	rcaFallback prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_alerts_received_total",
			Help: "Alerts handed to the pipeline, by source and outcome (new, repeat, resolved, rejected).",
		}, []string{"source", "outcome"}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_anomalies_stored_total",
			Help: "New anomaly episodes stored, by source.",
		}, []string{"source"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_duplicates_dropped_total",
			Help: "Alerts of an already known episode (repeats, HA peers), by source.",
		}, []string{"source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_submissions_rejected_total",
			Help: "Submissions refused (the sender should retry), by reason (queue_full, store_error).",
		}, []string{"reason"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alertrca_queue_depth",
			Help: "Anomalies waiting for their analysis.",
		}),
		llmCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_llm_calls_total",
			Help: "LLM calls by outcome (ok, invalid, error, timeout).",
		}, []string{"outcome"}),
		llmLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "alertrca_llm_latency_seconds",
			Help:    "Duration of LLM calls.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120},
		}),
		llmTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_llm_tokens_total",
			Help: "Tokens used by LLM calls, by kind (prompt, completion).",
		}, []string{"kind"}),
		rcaStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_rca_stored_total",
			Help: "Root-cause analyses stored, by result (done, fallback).",
		}, []string{"result"}),
		rcaFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alertrca_rca_fallbacks_total",
			Help: "Analyses built from the alert itself because the LLM gave no usable answer.",
		}),
	}
	reg.MustRegister(m.received, m.stored, m.duplicates, m.rejected, m.queueDepth,
		m.llmCalls, m.llmLatency, m.llmTokens, m.rcaStored, m.rcaFallback)
	return m
}
