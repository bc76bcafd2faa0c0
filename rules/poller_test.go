package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/alertrca/alertrca/store"
)

type series struct {
	labels map[string]string
	value  string
}

// fakeProm answers /api/v1/query from a script: expr → poll number → series.
type fakeProm struct {
	mu     sync.Mutex
	poll   int
	script map[string]func(poll int) []series
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	gen, poll := f.script[r.Form.Get("query")], f.poll
	f.mu.Unlock()
	result := []map[string]any{}
	if gen != nil {
		for _, s := range gen(poll) {
			result = append(result, map[string]any{"metric": s.labels, "value": []any{1, s.value}})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
}

func (f *fakeProm) next() {
	f.mu.Lock()
	f.poll++
	f.mu.Unlock()
}

// recorder is a Submitter and SnapshotWriter that keeps what it gets.
type recorder struct {
	mu     sync.Mutex
	alerts []store.Alert
	snaps  []store.MetricSnapshot
	fail   int // the next fail submissions fail
}

func (r *recorder) Submit(_ context.Context, as ...store.Alert) (store.SubmitResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return store.SubmitResult{}, errors.New("store down")
	}
	r.alerts = append(r.alerts, as...)
	return store.SubmitResult{Received: len(as)}, nil
}

func (r *recorder) InsertMetrics(_ context.Context, m *store.MetricSnapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps = append(r.snaps, *m)
	return nil
}

// ListAnomalies makes the recorder an EpisodeReader: the episodes its
// alerts left open (opened and not resolved), as the store would keep them.
func (r *recorder) ListAnomalies(_ context.Context, f store.AnomalyFilter) ([]store.Anomaly, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	open := map[string]store.Anomaly{}
	for _, a := range r.alerts {
		an := store.NewAnomaly(a, time.Now())
		if a.Status == store.StatusFiring {
			open[an.Fingerprint] = *an
		} else {
			delete(open, an.Fingerprint)
		}
	}
	out := []store.Anomaly{}
	for _, a := range open {
		out = append(out, a)
	}
	return out, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestPoller(t *testing.T, yaml string, targets []Target, rec *recorder, c *clock) (*Poller, *prometheus.Registry) {
	t.Helper()
	rs, err := Parse([]byte(yaml), 3)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p := NewPoller(rs, PollerConfig{Interval: time.Second}, PrometheusQuery(),
		func(context.Context) ([]Target, error) { return targets, nil }, rec, rec, rec, c.now, reg, slog.New(slog.DiscardHandler))
	return p, reg
}

const cpuRule = `rules:
- name: HighCPUUsage
  expr: cpu_usage
  op: ">"
  value: 80
  severity: high
  labels: {team: infra}
  annotations: {summary: "CPU at {{ $value }} on {{ $labels.instance }}"}
`

func cpu(values ...string) func(int) []series {
	return func(poll int) []series {
		return []series{{map[string]string{"__name__": "cpu_usage", "instance": "node-1:9100", "job": "node"}, values[min(poll, len(values)-1)]}}
	}
}

func TestPollerEpisodeOpensOnceResolvesOnce(t *testing.T) {
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": cpu("50", "95", "97", "96", "50", "50")}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	rec := &recorder{}
	c := &clock{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	p, reg := newTestPoller(t, cpuRule, []Target{{Name: "default", Endpoint: srv.URL}}, rec, c)
	for range 6 {
		p.Poll(context.Background())
		prom.next()
		c.t = c.t.Add(time.Second)
	}
	if len(rec.alerts) != 2 {
		t.Fatalf("%d alerts submitted, want 2 (open, resolve): %+v", len(rec.alerts), rec.alerts)
	}
	open, res := rec.alerts[0], rec.alerts[1]
	if open.Status != store.StatusFiring || res.Status != store.StatusResolved || !open.StartsAt.Equal(res.StartsAt) {
		t.Fatalf("open %+v\nresolve %+v", open, res)
	}
	wantLabels := map[string]string{"alertname": "HighCPUUsage", "instance": "node-1:9100", "job": "node", "severity": "high", "team": "infra"}
	if fmt.Sprint(open.Labels) != fmt.Sprint(wantLabels) || open.Source != store.SourcePoller {
		t.Fatalf("labels %v, want %v", open.Labels, wantLabels)
	}
	if *open.Value != 95 || open.Reason != "value 95 > threshold 80" || open.Annotations["summary"] != "CPU at 95 on node-1:9100" || open.Annotations["threshold"] != "80" {
		t.Fatalf("open alert: value %v reason %q annotations %v", *open.Value, open.Reason, open.Annotations)
	}
	if !open.StartsAt.Equal(time.Date(2026, 11, 26, 12, 0, 1, 0, time.UTC)) || !res.EndsAt.Equal(time.Date(2026, 11, 26, 12, 0, 4, 0, time.UTC)) {
		t.Fatalf("times: starts %v ends %v", open.StartsAt, res.EndsAt)
	}
	if want := srv.URL + "/graph?g0.expr=cpu_usage&g0.range_input=10s&g0.tab=1"; open.GeneratorURL != want {
		t.Fatalf("generator URL %q, want %q", open.GeneratorURL, want)
	}
	// The fingerprint is the one Alertmanager computes for the generated rule's alert.
	if got := store.NewAnomaly(open, c.t).Fingerprint; got != store.Fingerprint(wantLabels) {
		t.Fatalf("fingerprint %s", got)
	}
	if len(rec.snaps) != 6 || rec.snaps[1].SeriesCount != 1 || rec.snaps[1].Sample[0].Value != 95 || rec.snaps[1].Target != "default" {
		t.Fatalf("snapshots: %+v", rec.snaps)
	}
	if got := testutil.ToFloat64(p.m.opened.WithLabelValues("HighCPUUsage", "high")); got != 1 {
		t.Fatalf("opened metric %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "alertrca_polls_total"); n != 1 {
		t.Fatalf("polls_total series: %d", n)
	}
}

func TestPollerForAndSubmitRetry(t *testing.T) {
	yaml := strings.Replace(cpuRule, "severity: high", "severity: high\n  for: 2s", 1)
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": cpu("95", "95", "95", "95", "95")}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	rec := &recorder{fail: 1}
	c := &clock{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	p, _ := newTestPoller(t, yaml, []Target{{Name: "default", Endpoint: srv.URL}}, rec, c)
	step := func() {
		p.Poll(context.Background())
		prom.next()
		c.t = c.t.Add(time.Second)
	}
	step() // t=0: pending
	step() // t=1: pending
	if len(rec.alerts) != 0 {
		t.Fatalf("fired before 'for' elapsed: %+v", rec.alerts)
	}
	step() // t=2: fires, but the store is down: nothing marked
	step() // t=3: sent again and accepted
	step() // t=4: still open: nothing new
	if len(rec.alerts) != 1 || !rec.alerts[0].StartsAt.Equal(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("alerts %+v, want one firing alert starting when the condition began", rec.alerts)
	}
}

func TestPollerTargetDownOthersRun(t *testing.T) {
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": cpu("95")}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	rec := &recorder{}
	c := &clock{time.Now()}
	p, _ := newTestPoller(t, cpuRule, []Target{{Name: "dead", Endpoint: dead}, {Name: "live", Endpoint: srv.URL}}, rec, c)
	p.Poll(context.Background())
	if len(rec.alerts) != 1 || testutil.ToFloat64(p.m.polls.WithLabelValues("dead", "error")) != 1 ||
		testutil.ToFloat64(p.m.polls.WithLabelValues("live", "ok")) != 1 {
		t.Fatalf("alerts %d, polls dead/error %v live/ok %v", len(rec.alerts),
			testutil.ToFloat64(p.m.polls.WithLabelValues("dead", "error")), testutil.ToFloat64(p.m.polls.WithLabelValues("live", "ok")))
	}
	// The dead target's failure does not resolve anything either.
	p.Poll(context.Background())
	if len(rec.alerts) != 1 {
		t.Fatalf("%d alerts after a second poll", len(rec.alerts))
	}
}

func TestPollerJobFilterAndZScore(t *testing.T) {
	noisy := []string{"50", "51", "49", "50", "52", "48", "50", "51", "49", "50", "95"}
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": func(poll int) []series {
		v := noisy[min(poll, len(noisy)-1)]
		return []series{
			{map[string]string{"__name__": "cpu_usage", "instance": "a", "job": "node"}, v},
			{map[string]string{"__name__": "cpu_usage", "instance": "b", "job": "other"}, v},
		}
	}}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	rec := &recorder{}
	c := &clock{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	p, _ := newTestPoller(t, "rules:\n- name: CPUUsageAnomaly\n  expr: cpu_usage\n  severity: warning\n  zscore: {}\n",
		[]Target{{Name: "t", Endpoint: srv.URL, Job: "node"}}, rec, c)
	for range len(noisy) {
		p.Poll(context.Background())
		prom.next()
		c.t = c.t.Add(time.Second)
	}
	if len(rec.alerts) != 1 || rec.alerts[0].Labels["instance"] != "a" {
		t.Fatalf("alerts %+v, want one for instance a (job node only)", rec.alerts)
	}
	a := rec.alerts[0].Annotations
	if a["window_mean"] != "50" || a["z_score"] == "" || !strings.Contains(rec.alerts[0].Reason, "above the mean 50") {
		t.Fatalf("z-score details: %v %q", a, rec.alerts[0].Reason)
	}
}

func TestPollerNeverOverlaps(t *testing.T) {
	rules := cpuRule + "- name: Other\n  expr: cpu_usage\n  op: '<'\n  value: 0\n  severity: low\n"
	rs, err := Parse([]byte(rules), 3)
	if err != nil {
		t.Fatal(err)
	}
	var inFlight, maxIn, calls atomic.Int32
	// Each query takes 30ms and a poll makes two: longer than the 40ms interval.
	slow := func(ctx context.Context, _ Target, _ string, _ time.Time) (model.Vector, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		calls.Add(1)
		if n > maxIn.Load() {
			maxIn.Store(n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(30 * time.Millisecond):
			return model.Vector{}, nil
		}
	}
	rec := &recorder{}
	p := NewPoller(rs, PollerConfig{Interval: 40 * time.Millisecond}, slow,
		func(context.Context) ([]Target, error) { return []Target{{Name: "t", Endpoint: "http://unused"}}, nil },
		rec, rec, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for calls.Load() < 8 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if m := maxIn.Load(); m != 1 {
		t.Fatalf("%d queries ran at once; polls overlapped", m)
	}
}

func TestPollerSeriesCap(t *testing.T) {
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": func(int) []series {
		return []series{
			{map[string]string{"__name__": "cpu_usage", "instance": "a"}, "1"},
			{map[string]string{"__name__": "cpu_usage", "instance": "b"}, "1"},
			{map[string]string{"__name__": "cpu_usage", "instance": "c"}, "1"},
		}
	}}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	rs, err := Parse([]byte("rules:\n- name: CPUUsageAnomaly\n  expr: cpu_usage\n  severity: warning\n  zscore: {}\n"), 3)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	p := NewPoller(rs, PollerConfig{Interval: time.Second, MaxSeries: 2}, PrometheusQuery(),
		func(context.Context) ([]Target, error) { return []Target{{Name: "t", Endpoint: srv.URL}}, nil },
		rec, rec, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	p.Poll(context.Background())
	p.Poll(context.Background())
	if tracked := testutil.ToFloat64(p.m.tracked.WithLabelValues("CPUUsageAnomaly", "t")); tracked != 2 {
		t.Fatalf("tracked %v, want the cap (2)", tracked)
	}
	if refused := testutil.ToFloat64(p.m.dropped.WithLabelValues("CPUUsageAnomaly", "t")); refused != 2 {
		t.Fatalf("not scored %v, want 1 per poll", refused)
	}
	if rec.snaps[1].SeriesCount != 3 {
		t.Fatalf("the capped series must still be counted in the snapshot: %d", rec.snaps[1].SeriesCount)
	}
}

// TestPollerRestartResolvesWhatItOpened: an episode the poller opened before
// a restart is resolved by the new poller once its condition is gone.
func TestPollerRestartResolvesWhatItOpened(t *testing.T) {
	prom := &fakeProm{script: map[string]func(int) []series{"cpu_usage": cpu("95", "95", "50")}}
	srv := httptest.NewServer(prom)
	defer srv.Close()
	rec := &recorder{}
	c := &clock{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	targets := []Target{{Name: "default", Endpoint: srv.URL}}
	first, _ := newTestPoller(t, cpuRule, targets, rec, c)
	first.Poll(context.Background()) // opens the episode
	prom.next()
	c.t = c.t.Add(time.Second)
	if len(rec.alerts) != 1 || rec.alerts[0].Annotations[TargetAnnotation] != "default" {
		t.Fatalf("alerts %+v", rec.alerts)
	}
	// Restart: a new poller, the condition still true, then gone.
	second, _ := newTestPoller(t, cpuRule, targets, rec, c)
	second.Poll(context.Background())
	if len(rec.alerts) != 1 {
		t.Fatalf("the restarted poller opened the episode again: %+v", rec.alerts[1:])
	}
	prom.next()
	c.t = c.t.Add(time.Second)
	second.Poll(context.Background())
	if len(rec.alerts) != 2 || rec.alerts[1].Status != store.StatusResolved || !rec.alerts[1].StartsAt.Equal(rec.alerts[0].StartsAt) {
		t.Fatalf("after the condition cleared: %+v", rec.alerts)
	}
	// Another target's poller leaves it alone.
	rec2 := &recorder{alerts: rec.alerts[:1]}
	other, _ := newTestPoller(t, cpuRule, []Target{{Name: "other", Endpoint: srv.URL}}, rec2, c)
	other.Poll(context.Background())
	if len(rec2.alerts) != 1 {
		t.Fatalf("another target resolved this target's episode: %+v", rec2.alerts)
	}
}
