package enrich

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the pipeline, registered on the registry passed to New.
type Metrics struct {
	received    *prometheus.CounterVec
	stored      *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	queueDepth  prometheus.Gauge
	llmInvalid  prometheus.Counter
	rcaCache    *prometheus.CounterVec
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
		llmInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alertrca_llm_invalid_answers_total",
			Help: "RCA answers of the LLM that failed validation (each gets one repair request).",
		}),
		rcaCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_rca_cache_total",
			Help: "RCA cache lookups by result (hit: an earlier analysis reused; miss: the LLM is asked).",
		}, []string{"result"}),
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
		m.llmInvalid, m.rcaCache, m.rcaStored, m.rcaFallback)
	return m
}
