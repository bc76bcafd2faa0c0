package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/alertrca/alertrca/store"
)

// Target is one Prometheus server the poller queries.
type Target struct {
	Name     string
	Endpoint string // base URL of the Prometheus HTTP API
	Job      string // when set, only series with this job label are evaluated
}

// QueryFunc runs an instant query against a target.
type QueryFunc func(ctx context.Context, t Target, expr string, ts time.Time) (model.Vector, error)

// TargetsFunc lists the targets to poll now.
type TargetsFunc func(ctx context.Context) ([]Target, error)

// Submitter takes alerts into the pipeline (the webhook's path too).
type Submitter interface {
	Submit(ctx context.Context, alerts ...store.Alert) (store.SubmitResult, error)
}

// EpisodeReader lists stored anomalies (to find the poller's open episodes
// after a restart).
type EpisodeReader interface {
	ListAnomalies(ctx context.Context, f store.AnomalyFilter) ([]store.Anomaly, error)
}

// SnapshotWriter stores what a poll saw.
type SnapshotWriter interface {
	InsertMetrics(ctx context.Context, m *store.MetricSnapshot) error
}

// PollerConfig tunes the poller. Zero values get the defaults noted.
type PollerConfig struct {
	Interval     time.Duration // between polls (MONITOR_INTERVAL)
	MaxSeries    int           // tracked z-score series per rule and target (default 1,000,000)
	SnapshotSize int           // series kept in a metrics snapshot (default 15)
}

// Poller evaluates the rules against Prometheus every interval and hands each
// change of an episode (opened, resolved) to the pipeline.
type Poller struct {
	rules   []Rule
	cfg     PollerConfig
	query   QueryFunc
	targets TargetsFunc
	sub     Submitter
	snaps   SnapshotWriter
	open    EpisodeReader
	now     func() time.Time
	log     *slog.Logger
	m       *pollerMetrics
	state   map[string]*targetState // by target name
	failing map[string]bool         // targets whose last poll failed: logged once, not every poll
}

// targetState is what the poller remembers of one target, per rule.
type targetState struct {
	zscores  []*ZScoreDetector           // nil for threshold rules
	capped   []bool                      // the z-score detector refused series in the last poll
	seeded   bool                        // the open episodes of the store are loaded
	episodes []map[uint64]*seriesEpisode // by the alert's fingerprint
}

// seriesEpisode is a condition that is (or was just) true for one series.
type seriesEpisode struct {
	labels    map[string]string // the alert's labels
	annots    map[string]string
	since     time.Time // first poll the condition held
	open      bool      // the firing alert was accepted by the pipeline
	value     float64
	reason    string
	lastTrue  uint64 // poll number
	generator string // Prometheus graph link of the rule's expression, as Prometheus writes it
}

// NewPoller builds a poller. open and now may be nil (no restart recovery; time.Now).
func NewPoller(rs []Rule, cfg PollerConfig, query QueryFunc, targets TargetsFunc, sub Submitter, snaps SnapshotWriter,
	open EpisodeReader, now func() time.Time, reg prometheus.Registerer, logger *slog.Logger) *Poller {
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = 1_000_000
	}
	if cfg.SnapshotSize <= 0 {
		cfg.SnapshotSize = 15
	}
	if now == nil {
		now = time.Now
	}
	return &Poller{
		rules: rs, cfg: cfg, query: query, targets: targets, sub: sub, snaps: snaps, open: open, now: now,
		log: logger.With("component", "poller"), m: newPollerMetrics(reg), state: map[string]*targetState{},
		failing: map[string]bool{},
	}
}

// PrometheusQuery is the QueryFunc of the Prometheus HTTP API client.
func PrometheusQuery() QueryFunc {
	clients := map[string]v1.API{}
	return func(ctx context.Context, t Target, expr string, ts time.Time) (model.Vector, error) {
		c, ok := clients[t.Endpoint]
		if !ok {
			client, err := api.NewClient(api.Config{Address: t.Endpoint})
			if err != nil {
				return nil, fmt.Errorf("prometheus client for %s: %w", t.Endpoint, err)
			}
			c = v1.NewAPI(client)
			clients[t.Endpoint] = c
		}
		res, _, _, err := c.Query(ctx, expr, ts)
		if err != nil {
			return nil, err
		}
		vec, ok := res.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("query %q returned a %s, want an instant vector", expr, res.Type())
		}
		return vec, nil
	}
}

// Run polls every interval until ctx ends. A poll that outlasts the interval
// delays the next one: two polls never overlap.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll evaluates every rule on every target once. Each target is bounded by
// a timeout below the interval; a target that fails is logged and counted,
// and the others still run.
func (p *Poller) Poll(ctx context.Context) {
	start := p.now()
	targets, err := p.targets(ctx)
	if err != nil {
		p.log.Warn("cannot list targets; skipping this poll", "err", err)
		return
	}
	for _, t := range targets {
		tctx, cancel := context.WithTimeout(ctx, p.cfg.Interval*8/10)
		err := p.pollTarget(tctx, t, start)
		cancel()
		outcome := "ok"
		switch {
		case err != nil && ctx.Err() == nil:
			outcome = "error"
			if !p.failing[t.Name] {
				p.log.Warn("poll failed; retrying every interval (logged again when it recovers)",
					"target", t.Name, "endpoint", redact(t.Endpoint), "err", err)
			}
			p.failing[t.Name] = true
		case err == nil && p.failing[t.Name]:
			p.log.Info("poll recovered", "target", t.Name)
			delete(p.failing, t.Name)
		}
		p.m.polls.WithLabelValues(t.Name, outcome).Inc()
	}
	p.m.duration.Observe(p.now().Sub(start).Seconds())
}

type change struct {
	rule int
	key  uint64
	ep   *seriesEpisode
}

func (p *Poller) pollTarget(ctx context.Context, t Target, now time.Time) error {
	st := p.stateOf(ctx, t)
	var alerts []store.Alert
	var opened, resolved []change
	var errs []error
	snap := &store.MetricSnapshot{TS: now.UTC(), Target: t.Name, Sample: []store.MetricSample{}}
	seenInSnap := map[uint64]bool{}
	for i := range p.rules {
		r := &p.rules[i]
		vec, err := p.query(ctx, t, r.Expr, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", r.Name, err))
			continue // this rule's episodes stay as they are: no data is not "resolved"
		}
		if z := st.zscores[i]; z != nil {
			z.BeginPoll()
		}
		poll := uint64(now.UnixNano())
		for _, s := range vec {
			if t.Job != "" && string(s.Metric[model.JobLabel]) != t.Job {
				continue
			}
			snap.SeriesCount++
			key := uint64(s.Metric.Fingerprint())
			if len(snap.Sample) < p.cfg.SnapshotSize && !seenInSnap[key] {
				seenInSnap[key] = true
				snap.Sample = append(snap.Sample, store.MetricSample{Labels: labelMap(s.Metric), Value: store.Float(s.Value)})
			}
			firing, details, reason := p.evaluate(st, i, key, float64(s.Value))
			if !firing {
				continue
			}
			labels := alertLabels(r, s.Metric)
			epKey := alertKey(labels)
			ep := st.episodes[i][epKey]
			if ep == nil {
				ep = &seriesEpisode{since: now}
				st.episodes[i][epKey] = ep
			}
			ep.lastTrue, ep.value, ep.reason = poll, float64(s.Value), reason
			if ep.open || now.Sub(ep.since) < time.Duration(r.For) {
				continue
			}
			ep.labels = labels
			ep.generator = generatorURL(t.Endpoint, r.Expr, 10*p.cfg.Interval)
			ep.annots = expandAnnotations(r.Annotations, ep.labels, ep.value, details)
			ep.annots[TargetAnnotation] = t.Name
			alerts = append(alerts, p.alert(ep, store.StatusFiring, now))
			opened = append(opened, change{i, epKey, ep})
		}
		if z := st.zscores[i]; z != nil {
			p.m.tracked.WithLabelValues(r.Name, t.Name).Set(float64(z.Tracked()))
			if z.Dropped > 0 {
				p.m.dropped.WithLabelValues(r.Name, t.Name).Add(float64(z.Dropped))
			}
			// Said once when the cap is reached and once when it is no longer.
			if capped := z.Dropped > 0; capped != st.capped[i] {
				st.capped[i] = capped
				if capped {
					p.log.Warn("z-score series cap reached: new series are not scored (see alertrca_zscore_series_not_scored_total)",
						"rule", r.Name, "target", t.Name, "cap", p.cfg.MaxSeries, "not_scored", z.Dropped)
				} else {
					p.log.Info("z-score series back under the cap", "rule", r.Name, "target", t.Name)
				}
			}
		}
		// Episodes whose condition no longer holds (or whose series went away) end.
		for key, ep := range st.episodes[i] {
			if ep.lastTrue == poll {
				continue
			}
			if !ep.open {
				delete(st.episodes[i], key) // pending ("for") only: nothing was sent
				continue
			}
			alerts = append(alerts, p.alert(ep, store.StatusResolved, now))
			resolved = append(resolved, change{i, key, ep})
		}
	}
	p.m.series.WithLabelValues(t.Name).Set(float64(snap.SeriesCount))
	if len(alerts) > 0 {
		if _, err := p.sub.Submit(ctx, alerts...); err != nil {
			// Nothing is marked: the next poll sends the same changes again.
			return errors.Join(append(errs, fmt.Errorf("submit %d alerts: %w", len(alerts), err))...)
		}
		for _, c := range opened {
			c.ep.open = true
			p.m.opened.WithLabelValues(p.rules[c.rule].Name, p.rules[c.rule].Severity).Inc()
		}
		for _, c := range resolved {
			delete(st.episodes[c.rule], c.key)
			p.m.resolved.WithLabelValues(p.rules[c.rule].Name, p.rules[c.rule].Severity).Inc()
		}
	}
	if err := p.snaps.InsertMetrics(ctx, snap); err != nil {
		errs = append(errs, fmt.Errorf("store snapshot: %w", err))
	}
	return errors.Join(errs...)
}

func (p *Poller) stateOf(ctx context.Context, t Target) *targetState {
	st, ok := p.state[t.Name]
	if ok && st.seeded {
		return st
	}
	if ok { // an earlier poll could not read the open episodes: try again
		p.seed(ctx, t, st)
		return st
	}
	st = &targetState{zscores: make([]*ZScoreDetector, len(p.rules)), capped: make([]bool, len(p.rules)),
		episodes: make([]map[uint64]*seriesEpisode, len(p.rules))}
	for i, r := range p.rules {
		st.episodes[i] = map[uint64]*seriesEpisode{}
		if r.IsZScore() {
			// A series absent for a whole window has no useful history left.
			st.zscores[i] = NewZScoreDetector(r.ZScore.Window, r.ZScore.MinSamples, p.cfg.MaxSeries, r.ZScore.Window)
		}
	}
	p.state[t.Name] = st
	p.seed(ctx, t, st)
	return st
}

// TargetAnnotation names the target on the poller's alerts, so that after a
// restart the poller finds the episodes it had opened.
const TargetAnnotation = "poller_target"

// seed loads the episodes this target's rules left open in the store (before
// a restart), so that the poller resolves them when their condition is gone
// instead of leaving them firing.
func (p *Poller) seed(ctx context.Context, t Target, st *targetState) {
	if p.open == nil {
		st.seeded = true
		return
	}
	open, err := p.open.ListAnomalies(ctx, store.AnomalyFilter{Status: store.StatusFiring, Source: store.SourcePoller, Limit: 1000})
	if err != nil {
		p.log.Warn("cannot read the open episodes; will retry next poll", "target", t.Name, "err", err)
		return
	}
	for _, a := range open {
		if a.Annotations[TargetAnnotation] != t.Name {
			continue
		}
		for i, r := range p.rules {
			if r.Name != a.Name {
				continue
			}
			ep := &seriesEpisode{labels: a.Labels, annots: a.Annotations, since: a.StartsAt, open: true,
				reason: a.Reason, generator: a.GeneratorURL}
			if a.Value != nil {
				ep.value = float64(*a.Value)
			}
			st.episodes[i][alertKey(a.Labels)] = ep
		}
	}
	st.seeded = true
}

// alertKey identifies an episode by its alert's labels.
func alertKey(labels map[string]string) uint64 { return uint64(store.LabelsFingerprint(labels)) }

// evaluate tells whether rule i holds for the value v of the series key.
func (p *Poller) evaluate(st *targetState, i int, key uint64, v float64) (bool, map[string]string, string) {
	r := &p.rules[i]
	if !r.IsZScore() {
		if !r.Compare(v) {
			return false, nil, ""
		}
		return true, map[string]string{"threshold": fmtFloat(*r.Value)},
			fmt.Sprintf("value %s %s threshold %s", fmtFloat(v), r.Op, fmtFloat(*r.Value))
	}
	s := st.zscores[i].Observe(key, v)
	if !s.Ready || !(math.Abs(s.Z) > r.ZScore.Threshold) {
		return false, nil, ""
	}
	dir := "above"
	if s.Z < 0 {
		dir = "below"
	}
	return true, map[string]string{
			"z_score": fmtFloat(s.Z), "window_mean": fmtFloat(s.Mean), "window_stddev": fmtFloat(s.StdDev),
			"z_threshold": fmtFloat(r.ZScore.Threshold),
		},
		fmt.Sprintf("value %s is %s σ %s the mean %s (σ %s) of its previous %d values; |z| > %s",
			fmtFloat(v), fmtFloat(math.Abs(s.Z)), dir, fmtFloat(s.Mean), fmtFloat(s.StdDev), s.N, fmtFloat(r.ZScore.Threshold))
}

func (p *Poller) alert(ep *seriesEpisode, status string, now time.Time) store.Alert {
	v := store.Float(ep.value)
	a := store.Alert{
		Source: store.SourcePoller, Status: status, Labels: ep.labels, Annotations: ep.annots,
		Value: &v, Reason: ep.reason, StartsAt: ep.since, GeneratorURL: ep.generator,
	}
	if status == store.StatusResolved {
		a.EndsAt = now
	}
	return a
}

// alertLabels are the labels Prometheus would give the alert of the
// generated rule: the series' labels without __name__, the rule's labels,
// severity and alertname. Their fingerprint is then Alertmanager's.
func alertLabels(r *Rule, m model.Metric) map[string]string {
	out := make(map[string]string, len(m)+len(r.Labels)+2)
	for k, v := range m {
		if k != model.MetricNameLabel {
			out[string(k)] = string(v)
		}
	}
	for k, v := range AlertLabels(*r) {
		out[k] = v
	}
	out[model.AlertNameLabel] = r.Name
	return out
}

// expandAnnotations renders Prometheus-style templates ({{ $labels.x }},
// {{ $value }}) and adds the detector's details. A template that does not
// parse or run is kept as written.
func expandAnnotations(src, labels map[string]string, value float64, details map[string]string) map[string]string {
	out := make(map[string]string, len(src)+len(details))
	for k, v := range details {
		out[k] = v
	}
	data := struct {
		Labels map[string]string
		Value  float64
	}{labels, value}
	for k, text := range src {
		out[k] = text
		tmpl, err := template.New(k).Option("missingkey=zero").Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
		if err != nil {
			continue
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err == nil {
			out[k] = b.String()
		}
	}
	return out
}

// generatorURL links to the expression in Prometheus's graph page, like the
// generatorURL of Prometheus's alerts (credentials removed); range_input is
// the span the evidence looks at: here the last 10 polls.
func generatorURL(endpoint, expr string, span time.Duration) string {
	u, err := url.Parse(strings.TrimRight(endpoint, "/") + "/graph")
	if err != nil {
		return ""
	}
	u.User = nil
	q := url.Values{"g0.expr": {expr}, "g0.tab": {"1"}, "g0.range_input": {model.Duration(span).String()}}
	u.RawQuery = q.Encode()
	return u.String()
}

// redact hides credentials of an endpoint URL for logs.
func redact(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "<unparsable>"
	}
	return u.Redacted()
}

func labelMap(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

func fmtFloat(v float64) string { return store.FormatFloat(math.Round(v*1000) / 1000) }
