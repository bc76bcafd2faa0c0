package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alertrca/alertrca/rules"
)

// binary finds an OS-package binary: skipped locally when missing, a
// failure in CI (make test installs it as root).
func binary(t *testing.T, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; in CI, make test installs it", names[0])
	}
	t.Skipf("%s not found; install with: sudo apt-get install -y prometheus prometheus-alertmanager (fails instead of skipping when CI=true)", names[0])
	return ""
}

// startProcess runs a binary until the test ends and waits for base/-/ready.
func startProcess(t *testing.T, what, base, bin string, args ...string) {
	t.Helper()
	runUntilCleanup(t, what, base, exec.Command(bin, args...))
}

// runUntilCleanup starts cmd, kills it when the test ends (showing its logs
// if the test failed) and waits for base/-/ready.
func runUntilCleanup(t *testing.T, what, base string, cmd *exec.Cmd) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s logs:\n%s", what, logs.String())
		}
	})
	waitReady(t, what, base)
	return logs
}

const e2eRules = `rules:
  - name: HighCPUUsage
    expr: cpu_usage
    op: ">"
    value: 80
    severity: high
    annotations:
      summary: "CPU usage above 80% on {{ $labels.instance }}"
`

// TestEndToEnd: a metric the test controls, a real Prometheus evaluating the
// rule file generated from alertrca's rules, a real Alertmanager posting to
// alertrca, and alertrca polling the same Prometheus with the same rules.
// One incident seen by both paths is one anomaly with one RCA.
func TestEndToEnd(t *testing.T) {
	promBin := binary(t, "prometheus")
	amBin := binary(t, "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()

	var cpu atomic.Int64
	cpu.Store(50)
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE cpu_usage gauge\ncpu_usage %d\n", cpu.Load())
	}))
	t.Cleanup(exporter.Close)

	llm, llmCalls := fakeLLM(t, `{"summary":"CPU saturated","simplified":"the machine is too busy","cause":"a runaway process","fix":"find and stop it"}`)

	// The rule file Prometheus evaluates, generated from the same definitions.
	rulesPath := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rulesPath, []byte(e2eRules), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Parse([]byte(e2eRules), 3)
	if err != nil {
		t.Fatal(err)
	}
	var gen bytes.Buffer
	if err := rules.WriteRuleFile(&gen, "e2e", rs, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "generated.rules.yml"), gen.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	const token = "e2e-token"
	promAddr := freePort(t)
	svc := start(t, t.TempDir(), "LLM_URL="+llm, "WEBHOOK_TOKEN="+token, "MONITOR_INTERVAL=1",
		"RULES_FILE="+rulesPath, "PROM_URL=http://"+promAddr)
	amURL := startAlertmanager(t, amBin, svc.url, token)
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: [%q]
`, filepath.Join(dir, "generated.rules.yml"), amURL[len("http://"):], exporter.Listener.Addr().String())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "Prometheus", "http://"+promAddr, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+promAddr)

	// The poller reaches Prometheus and sees the series.
	waitFor(t, "a poller snapshot with the series", func() bool {
		var snaps []map[string]any
		getJSON(t, svc.url+"/prom-metrics", &snaps)
		return len(snaps) > 0 && snaps[0]["series_count"] == 1.0
	})

	cpu.Store(95)
	var anomalies []map[string]any
	waitFor(t, "one anomaly seen by both the poller and Alertmanager, analysed", func() bool {
		getJSON(t, svc.url+"/anomalies", &anomalies)
		if len(anomalies) != 1 {
			return false
		}
		var sources []string
		for _, s := range anomalies[0]["sources"].([]any) {
			sources = append(sources, s.(string))
		}
		return slices.Contains(sources, "poller") && slices.Contains(sources, "alertmanager") && anomalies[0]["rca_status"] == "done"
	})
	if n := llmCalls.Load(); n != 1 {
		t.Fatalf("%d LLM calls, want 1", n)
	}
	a := anomalies[0]
	if a["name"] != "HighCPUUsage" || a["value"] != 95.0 || a["labels"].(map[string]any)["job"] != "exporter" {
		t.Fatalf("anomaly: %v", a)
	}

	cpu.Store(50)
	waitFor(t, "the incident resolved, and Alertmanager's resolve received", func() bool {
		getJSON(t, svc.url+"/anomalies", &anomalies)
		fromAM := 0.0 // Alertmanager's firing and resolved notifications, whatever their outcome
		for _, o := range []string{"new", "repeat", "resolved"} {
			fromAM += metricValue(t, svc.url, `alertrca_alerts_received_total{outcome="`+o+`",source="alertmanager"}`)
		}
		return len(anomalies) >= 1 && anomalies[0]["status"] == "resolved" && fromAM >= 2
	})
	getJSON(t, svc.url+"/anomalies", &anomalies)
	if len(anomalies) != 1 || llmCalls.Load() != 1 {
		t.Fatalf("after resolve: %d anomalies, %d LLM calls; want 1 and 1: %v", len(anomalies), llmCalls.Load(), anomalies)
	}
}
