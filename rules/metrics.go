package rules

import "github.com/prometheus/client_golang/prometheus"

type pollerMetrics struct {
	polls    *prometheus.CounterVec
	duration prometheus.Histogram
	series   *prometheus.GaugeVec
	opened   *prometheus.CounterVec
	resolved *prometheus.CounterVec
	tracked  *prometheus.GaugeVec
	dropped  *prometheus.CounterVec
}

func newPollerMetrics(reg prometheus.Registerer) *pollerMetrics {
	m := &pollerMetrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_polls_total", Help: "Polls of a Prometheus target, by target and outcome (ok, error).",
		}, []string{"target", "outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "alertrca_poll_duration_seconds", Help: "Duration of a whole poll of every target.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		series: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "alertrca_poll_series_evaluated", Help: "Series evaluated by the last poll of a target.",
		}, []string{"target"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_poller_anomalies_opened_total", Help: "Episodes opened by the poller, by rule and severity.",
		}, []string{"rule", "severity"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_poller_anomalies_resolved_total", Help: "Episodes resolved by the poller, by rule and severity.",
		}, []string{"rule", "severity"}),
		tracked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "alertrca_zscore_tracked_series", Help: "Series with a z-score window, by rule and target.",
		}, []string{"rule", "target"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_zscore_series_not_scored_total", Help: "Samples of new series not scored because the tracked-series cap was reached.",
		}, []string{"rule", "target"}),
	}
	reg.MustRegister(m.polls, m.duration, m.series, m.opened, m.resolved, m.tracked, m.dropped)
	return m
}
