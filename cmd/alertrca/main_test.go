package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary run as the service itself, so that tests can
// start it as a real process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("ALERTRCA_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type service struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the service as a child process with env added to a clean
// environment, in dir, and waits until it is ready.
func start(t *testing.T, dir string, env ...string) *service {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Dir = dir
	cmd.Env = append([]string{"ALERTRCA_RUN_MAIN=1", "LISTEN_ADDR=" + addr, "PATH=" + os.Getenv("PATH")}, env...)
	s := &service{cmd: cmd, url: "http://" + addr}
	s.logs = runUntilCleanup(t, "the service", s.url, cmd)
	return s
}

// waitReady waits until base/-/ready answers 200.
func waitReady(t *testing.T, what, base string) {
	t.Helper()
	waitFor(t, what+" to be ready", func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postFixture(t *testing.T, url, name string) map[string]any {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", "testdata", "alertmanager-0.25", name))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		t.Fatalf("webhook %s: %d %v", name, resp.StatusCode, out)
	}
	return out
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatal(err)
	}
}

// TestStartsWithNothingRunning: the default configuration needs no MongoDB,
// Prometheus or LLM; it says what it cannot reach, stores alerts, and stops
// cleanly on SIGTERM.
func TestStartsWithNothingRunning(t *testing.T) {
	dir := t.TempDir()
	dead := "http://" + freePort(t) // nothing listens there any more
	s := start(t, dir, "LLM_URL="+dead, "PROM_URL="+dead, "LLM_TIMEOUT=1s")
	waitFor(t, "the unreachable-dependency log lines", func() bool {
		l := s.logs.String()
		return strings.Contains(l, "LLM not reachable") && strings.Contains(l, "Prometheus not reachable")
	})
	if out := postFixture(t, s.url, "firing-instance-down.json"); out["new"] != 1.0 {
		t.Fatalf("webhook: %v", out)
	}
	var rcas []map[string]any
	waitFor(t, "a fallback RCA", func() bool {
		getJSON(t, s.url+"/rca", &rcas)
		return len(rcas) == 1
	})
	if rcas[0]["fallback"] != true {
		t.Fatalf("RCA without an LLM: %v", rcas[0])
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "alertrca.db")); err != nil {
		t.Fatalf("embedded store not under ./data: %v", err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(s.logs.String(), "msg=stopped") {
		t.Fatalf("no clean stop in the logs")
	}
}

func TestBadConfigStopsStartup(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"ALERTRCA_RUN_MAIN=1", "MONITOR_INTERVAL=abc"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("started with MONITOR_INTERVAL=abc")
	}
	if got := strings.TrimSpace(string(out)); got != `alertrca: invalid configuration: MONITOR_INTERVAL="abc": must be a whole number of seconds from 1 to 86400` {
		t.Fatalf("output %q", got)
	}
}

func TestBadRulesFileStopsStartup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(path, []byte("rules:\n- name: HighCPU\n  expr: cpu\n  severity: high\n  op: '=>'\n  value: 80\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Dir = dir
	cmd.Env = []string{"ALERTRCA_RUN_MAIN=1", "RULES_FILE=" + path, "LISTEN_ADDR=" + freePort(t)}
	out, err := cmd.CombinedOutput()
	want := `alertrca: RULES_FILE: rules file ` + path + `: rule 1 ("HighCPU"): op "=>" is not one of > >= < <= == !=`
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("err %v, output:\n%s\nwant a line %q", err, out, want)
	}
}

// TestKillDuringAnalysis kills the service with SIGKILL while the LLM is
// answering; after a restart every acknowledged alert is there and analysed.
func TestKillDuringAnalysis(t *testing.T) {
	var phase atomic.Int32 // 0: hang (the process gets killed), 1: answer
	asked := make(chan struct{}, 10)
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/generate" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client's death
		if phase.Load() == 0 {
			select {
			case asked <- struct{}{}:
			default:
			}
			<-r.Context().Done()
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"done": true,
			"response": `{"summary":"api-1 down","simplified":"a server stopped","cause":"crash","fix":"restart"}`})
	}))
	t.Cleanup(llm.Close) // registered first: runs after the services are stopped

	dir := t.TempDir()
	env := []string{"LLM_URL=" + llm.URL, "LLM_TIMEOUT=2s", "LLM_CONCURRENCY=1", "PROM_URL=" + llm.URL}
	s := start(t, dir, env...)
	postFixture(t, s.url, "firing-instance-down.json")
	<-asked // the analysis is in flight
	postFixture(t, s.url, "prometheus-rule-instance-down.json")
	if err := s.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup at all
		t.Fatal(err)
	}
	_ = s.cmd.Wait()

	phase.Store(1)
	s2 := start(t, dir, env...)
	var anomalies []map[string]any
	waitFor(t, "both anomalies analysed after the restart", func() bool {
		getJSON(t, s2.url+"/anomalies", &anomalies)
		done := 0
		for _, a := range anomalies {
			if a["rca_status"] == "done" {
				done++
			}
		}
		return done == 2
	})
	if len(anomalies) != 2 {
		t.Fatalf("%d anomalies, want 2", len(anomalies))
	}
	var rcas []map[string]any
	getJSON(t, s2.url+"/rca", &rcas)
	if len(rcas) != 2 || rcas[0]["summary"] != "api-1 down" || rcas[0]["fallback"] != false {
		t.Fatalf("RCAs after restart: %v", rcas)
	}
}

func TestAlertEmailsSeedEmailConfig(t *testing.T) {
	dead := freePort(t)
	host, port, _ := strings.Cut(dead, ":")
	s := start(t, t.TempDir(), "SMTP_HOST="+host, "SMTP_PORT="+port, "SMTP_FROM=alertrca@example.com",
		"ALERT_EMAILS=oncall@example.com, sre@example.com", "LLM_URL=http://"+dead, "PROM_URL=http://"+dead)
	var ec map[string]any
	getJSON(t, s.url+"/agent/email-config", &ec)
	if ec["enabled"] != true || fmt.Sprint(ec["recipients"]) != "[oncall@example.com sre@example.com]" || ec["smtp_configured"] != true {
		t.Fatalf("email config: %v", ec)
	}
}
