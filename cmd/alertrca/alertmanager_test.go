package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// startAlertmanager runs a real, unclustered Alertmanager that sends every
// alert to webhookURL with a bearer token, and returns its URL.
func startAlertmanager(t *testing.T, bin, webhookURL, token string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: alertrca
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: alertrca
    webhook_configs:
      - url: %s/webhook/alertmanager
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: %s
`, webhookURL, token)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	url := "http://" + addr
	startProcess(t, "Alertmanager "+addr, url, bin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=")
	return url
}

// injectAlert posts one alert to Alertmanager's API v2.
func injectAlert(t *testing.T, amURL string, startsAt, endsAt time.Time) {
	t.Helper()
	alert := map[string]any{
		"labels":      map[string]string{"alertname": "DiskFull", "instance": "db-1:9100", "job": "node", "severity": "critical"},
		"annotations": map[string]string{"summary": "Disk almost full", "description": "/var at 97%"},
		"startsAt":    startsAt.Format(time.RFC3339Nano),
	}
	if !endsAt.IsZero() {
		alert["endsAt"] = endsAt.Format(time.RFC3339Nano)
	}
	body, _ := json.Marshal([]any{alert})
	resp, err := http.Post(amURL+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("inject alert into %s: %s", amURL, resp.Status)
	}
}

// TestRealAlertmanagerHAPeers: three Alertmanagers that all deliver the same
// alert (the worst case of an HA setup whose gossip is down) give one
// anomaly and one LLM call; their resolved notifications resolve it.
func TestRealAlertmanagerHAPeers(t *testing.T) {
	bin := binary(t, "prometheus-alertmanager", "alertmanager")
	llm, llmCalls := fakeLLM(t, `{"summary":"disk full on db-1","simplified":"a disk is full","cause":"logs","fix":"rotate logs"}`)

	const token = "am-token"
	s := start(t, t.TempDir(), "LLM_URL="+llm, "PROM_URL="+llm, "WEBHOOK_TOKEN="+token)
	var peers []string
	for range 3 {
		peers = append(peers, startAlertmanager(t, bin, s.url, token))
	}
	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	for _, am := range peers {
		injectAlert(t, am, startsAt, time.Time{})
	}

	var anomalies []map[string]any
	waitFor(t, "three deliveries folded into one analysed anomaly", func() bool {
		getJSON(t, s.url+"/anomalies", &anomalies)
		return len(anomalies) == 1 && anomalies[0]["rca_status"] == "done" &&
			metricValue(t, s.url, `alertrca_alerts_received_total{outcome="repeat",source="alertmanager"}`) >= 2
	})
	if n := llmCalls.Load(); n != 1 {
		t.Fatalf("%d LLM calls for one incident, want 1", n)
	}
	a := anomalies[0]
	if a["name"] != "DiskFull" || a["status"] != "firing" || a["reason"] != "/var at 97%" {
		t.Fatalf("anomaly: %v", a)
	}

	for _, am := range peers {
		injectAlert(t, am, startsAt, time.Now().UTC())
	}
	// All three resolved notifications: one resolves, two are repeats.
	waitFor(t, "the episode resolved by all three peers", func() bool {
		return metricValue(t, s.url, `alertrca_alerts_received_total{outcome="resolved",source="alertmanager"}`) == 1 &&
			metricValue(t, s.url, `alertrca_alerts_received_total{outcome="repeat",source="alertmanager"}`) >= 4
	})
	getJSON(t, s.url+"/anomalies", &anomalies)
	if anomalies[0]["status"] != "resolved" || anomalies[0]["ends_at"] == nil {
		t.Fatalf("after resolve: %v", anomalies[0])
	}
	if len(anomalies) != 1 || llmCalls.Load() != 1 {
		t.Fatalf("after resolve: %d anomalies, %d LLM calls; want 1 and 1", len(anomalies), llmCalls.Load())
	}
}

// metricValue reads one sample from the service's /metrics (0 if absent).
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	for _, line := range bytes.Split(buf.Bytes(), []byte("\n")) {
		if bytes.HasPrefix(line, []byte(series+" ")) {
			var v float64
			_, _ = fmt.Sscanf(string(line[len(series)+1:]), "%g", &v)
			return v
		}
	}
	return 0
}

// fakeLLM is an Ollama /api/generate that always answers answer; it counts calls.
func fakeLLM(t *testing.T, answer string) (string, *atomic.Int64) {
	t.Helper()
	calls := &atomic.Int64{}
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/generate" {
			http.NotFound(w, r)
			return
		}
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"done": true, "response": answer})
	}))
	t.Cleanup(llm.Close)
	return llm.URL, calls
}
