package enrich_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/store"
)

// fakePromAPI answers query_range with two series (one of the alert's
// instance) and query with 20 related series, and records the requests.
type fakePromAPI struct {
	mu   sync.Mutex
	reqs []url.Values
	path []string
}

func (f *fakePromAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Form)
	f.path = append(f.path, r.URL.Path)
	f.mu.Unlock()
	var data any
	switch r.URL.Path {
	case "/api/v1/query_range":
		data = map[string]any{"resultType": "matrix", "result": []any{
			map[string]any{"metric": map[string]string{"__name__": "up", "instance": "127.0.0.1:1", "job": "api"},
				"values": []any{[]any{1, "1"}, []any{2, "1"}, []any{3, "0"}}},
			map[string]any{"metric": map[string]string{"__name__": "up", "instance": "other:1", "job": "api"},
				"values": []any{[]any{1, "1"}}},
		}}
	case "/api/v1/query":
		var res []any
		for i := range 20 {
			res = append(res, map[string]any{"metric": map[string]string{"__name__": fmt.Sprintf("metric_%02d", i), "instance": "127.0.0.1:1"},
				"value": []any{1, strconv.Itoa(i)}})
		}
		data = map[string]any{"resultType": "vector", "result": res}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

func evidenceAnomaly(generator string) *store.Anomaly {
	a := firing()
	a.Labels = map[string]string{"alertname": "InstanceDown", "instance": "127.0.0.1:1", "job": "api", "severity": "critical"}
	a.StartsAt = time.Now().Add(-time.Hour).UTC()
	a.GeneratorURL = generator
	return store.NewAnomaly(a, time.Now())
}

func TestPrometheusEvidence(t *testing.T) {
	fake := &fakePromAPI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ev := &enrich.PrometheusEvidence{DefaultURL: "http://127.0.0.1:1"}
	a := evidenceAnomaly(srv.URL + "/graph?g0.expr=up+%3D%3D+0&g0.tab=1")
	got := ev.Gather(context.Background(), a)
	for _, want := range []string{
		"Expression up == 0",
		`up{instance="127.0.0.1:1", job="api"}: 3 points, first 1, min 0, max 1, last 0`,
		"Related series ({instance=\"127.0.0.1:1\"}) at the start, 15 of 20",
		`metric_00{instance="127.0.0.1:1"} = 0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("evidence lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "other:1") || strings.Contains(got, "metric_15") {
		t.Errorf("evidence has series it should not:\n%s", got)
	}
	// The range is the 30 minutes before the start (and a little after).
	start, _ := strconv.ParseFloat(fake.reqs[0].Get("start"), 64)
	if d := a.StartsAt.Sub(time.Unix(int64(start), 0)); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("range starts %v before the alert, want 30m", d)
	}

	// The poller's links carry their own span.
	fake.reqs = nil
	ev.Gather(context.Background(), evidenceAnomaly(srv.URL+"/graph?g0.expr=cpu_usage&g0.tab=1&g0.range_input=5m"))
	start, _ = strconv.ParseFloat(fake.reqs[0].Get("start"), 64)
	if d := a.StartsAt.Sub(time.Unix(int64(start), 0)); d < 4*time.Minute || d > 6*time.Minute {
		t.Errorf("range_input=5m: range starts %v before the alert", d)
	}

	// No generator URL: only the related series, from PROM_URL.
	fake.reqs, fake.path = nil, nil
	ev2 := &enrich.PrometheusEvidence{DefaultURL: srv.URL}
	got = ev2.Gather(context.Background(), evidenceAnomaly(""))
	if len(fake.path) != 1 || fake.path[0] != "/api/v1/query" || !strings.Contains(got, "15 of 20") {
		t.Errorf("without generator URL: requests %v, evidence:\n%s", fake.path, got)
	}
}

func TestEvidenceInPromptAndRCA(t *testing.T) {
	fake := &fakePromAPI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, tc := range []struct {
		name, generator, want string
	}{
		{"reachable", srv.URL + "/graph?g0.expr=up+%3D%3D+0&g0.tab=1", "3 points, first 1, min 0"},
		{"unreachable", "http://127.0.0.1:1/graph?g0.expr=up&g0.tab=1", "analysed without metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, enrich.Config{Evidence: &enrich.PrometheusEvidence{DefaultURL: srv.URL}}, answer(validRCA))
			e.run(t)
			a := firing()
			a.GeneratorURL = tc.generator
			a.Labels["instance"] = "127.0.0.1:1"
			a.Fingerprint = ""
			submit(t, e.p, a)
			id := store.NewAnomaly(a, time.Now()).ID
			r := waitRCA(t, e.store, id)
			if !strings.Contains(r.Evidence, tc.want) || r.Fallback {
				t.Fatalf("stored evidence %q (fallback %v), want it to contain %q", r.Evidence, r.Fallback, tc.want)
			}
			e.llm.mu.Lock()
			prompt := e.llm.requests[0]["prompt"].(string)
			e.llm.mu.Unlock()
			if !strings.Contains(prompt, "evidence_from_prometheus") || !strings.Contains(prompt, strings.ReplaceAll(tc.want, `"`, `\"`)) {
				t.Fatalf("prompt lacks the evidence:\n%s", prompt)
			}
		})
	}
}
