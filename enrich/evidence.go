package enrich

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/alertrca/alertrca/store"
)

// EvidenceSource gathers metric context for an anomaly before its analysis.
// It returns a compact text for the prompt and the stored RCA; when it cannot
// reach its source it says so in that text instead of failing.
type EvidenceSource interface {
	Gather(ctx context.Context, a *store.Anomaly) string
}

// PrometheusEvidence asks Prometheus for the recent values of the alert's
// expression and for related series of the same instance or job.
//
// The expression and the Prometheus to ask come from the anomaly's generator
// URL (Prometheus's own alerts carry one; the poller writes one the same
// way), with its g0.range_input as the range (default 30m). Without a
// generator URL only the related series are asked for, from DefaultURL.
type PrometheusEvidence struct {
	DefaultURL  string        // PROM_URL
	Timeout     time.Duration // for all queries of one anomaly (default 5s)
	MaxSeries   int           // series of the expression summarised (default 3)
	MaxRelated  int           // related series listed (default 15)
	DefaultSpan time.Duration // range before the start when the URL gives none (default 30m)
}

// Gather implements EvidenceSource.
func (p *PrometheusEvidence) Gather(ctx context.Context, a *store.Anomaly) string {
	timeout := orDefault(p.Timeout, 5*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	base, expr, span := p.source(a)
	if base == "" {
		return "No Prometheus to ask for evidence."
	}
	client, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		return fmt.Sprintf("Prometheus at %s is not usable (%v); analysed without metrics.", redactURL(base), err)
	}
	prom := v1.NewAPI(client)
	var b strings.Builder
	if expr != "" {
		end := a.StartsAt.Add(span / 10) // a little past the start: the change itself
		if end.After(time.Now()) {
			end = time.Now()
		}
		start := a.StartsAt.Add(-span)
		step := max(span/60, time.Second)
		res, _, _, err := prom.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step})
		if err != nil {
			return fmt.Sprintf("Prometheus at %s was unreachable or failed (%v); analysed without metrics.", redactURL(base), err)
		}
		fmt.Fprintf(&b, "Expression %s from %s to %s:\n", expr, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
		b.WriteString(p.summariseMatrix(res, a.Labels))
	}
	if sel := relatedSelector(a.Labels); sel != "" {
		res, _, _, err := prom.Query(ctx, sel, a.StartsAt)
		if err != nil {
			fmt.Fprintf(&b, "Related series (%s): query failed (%v).\n", sel, err)
		} else {
			b.WriteString(p.summariseRelated(sel, res))
		}
	}
	if b.Len() == 0 {
		return "No expression or instance/job to ask Prometheus about."
	}
	return b.String()
}

// source finds the Prometheus base URL, expression and range of a.
func (p *PrometheusEvidence) source(a *store.Anomaly) (base, expr string, span time.Duration) {
	span = orDefault(p.DefaultSpan, 30*time.Minute)
	u, err := url.Parse(a.GeneratorURL)
	if a.GeneratorURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return strings.TrimRight(p.DefaultURL, "/"), "", span
	}
	q := u.Query()
	expr = q.Get("g0.expr")
	if d, err := model.ParseDuration(q.Get("g0.range_input")); err == nil && d > 0 {
		span = time.Duration(d)
	}
	path := strings.TrimSuffix(u.Path, "/graph")
	if path == u.Path { // not a Prometheus graph link: no expression to trust
		expr = ""
	}
	u.Path, u.RawQuery, u.Fragment = path, "", ""
	return strings.TrimRight(u.String(), "/"), expr, span
}

func (p *PrometheusEvidence) summariseMatrix(v model.Value, alert map[string]string) string {
	m, ok := v.(model.Matrix)
	if !ok {
		return "  (not a range result)\n"
	}
	var b strings.Builder
	shown := 0
	for _, s := range m {
		if !sameSeries(s.Metric, alert) {
			continue
		}
		if shown == orDefault(p.MaxSeries, 3) {
			fmt.Fprintf(&b, "  … more series not shown\n")
			break
		}
		shown++
		fmt.Fprintf(&b, "  %s: %s\n", s.Metric, describeValues(s.Values))
	}
	if shown == 0 {
		b.WriteString("  no values for this series in that range\n")
	}
	return b.String()
}

func (p *PrometheusEvidence) summariseRelated(sel string, v model.Value) string {
	vec, ok := v.(model.Vector)
	if !ok || len(vec) == 0 {
		return fmt.Sprintf("Related series (%s): none.\n", sel)
	}
	sort.Slice(vec, func(i, j int) bool { return vec[i].Metric.String() < vec[j].Metric.String() })
	limit := orDefault(p.MaxRelated, 15)
	var b strings.Builder
	fmt.Fprintf(&b, "Related series (%s) at the start, %d of %d:\n", sel, min(limit, len(vec)), len(vec))
	for _, s := range vec[:min(limit, len(vec))] {
		fmt.Fprintf(&b, "  %s = %s\n", s.Metric, store.FormatFloat(float64(s.Value)))
	}
	return b.String()
}

// sameSeries: every label of the series (but its name) is on the alert with
// the same value, as Prometheus copies them onto the alert.
func sameSeries(m model.Metric, alert map[string]string) bool {
	for k, v := range m {
		if k != model.MetricNameLabel && alert[string(k)] != string(v) {
			return false
		}
	}
	return true
}

// relatedSelector selects the series of the alert's instance, else its job.
func relatedSelector(labels map[string]string) string {
	for _, l := range []string{"instance", "job"} {
		if v := labels[l]; v != "" {
			return fmt.Sprintf("{%s=%q}", l, v)
		}
	}
	return ""
}

func describeValues(ps []model.SamplePair) string {
	if len(ps) == 0 {
		return "no values"
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range ps {
		lo, hi = math.Min(lo, float64(p.Value)), math.Max(hi, float64(p.Value))
	}
	return fmt.Sprintf("%d points, first %s, min %s, max %s, last %s", len(ps),
		store.FormatFloat(float64(ps[0].Value)), store.FormatFloat(lo), store.FormatFloat(hi),
		store.FormatFloat(float64(ps[len(ps)-1].Value)))
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable>"
	}
	return u.Redacted()
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
