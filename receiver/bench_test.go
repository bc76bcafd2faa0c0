package receiver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/sqlite"
)

// payload renders an Alertmanager webhook with n firing alerts whose episodes
// are all new (seq makes every startsAt unique).
func payload(n int, seq int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"receiver":"rca","status":"firing","alerts":[`)
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":"firing","labels":{"alertname":"HighCPU","instance":"node-%d:9100","job":"node","severity":"high"},`+
			`"annotations":{"summary":"CPU usage above 80%%","description":"CPU at 93%% for 5m"},"startsAt":%q,`+
			`"endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"%016x"}`,
			i, start.Add(time.Duration(seq)*time.Millisecond).Format(time.RFC3339Nano), i)
	}
	b.WriteString(`],"groupLabels":{"alertname":"HighCPU"},"commonLabels":{"alertname":"HighCPU"},"commonAnnotations":{},` +
		`"externalURL":"http://am:9093","version":"4","groupKey":"{}:{alertname=\"HighCPU\"}","truncatedAlerts":0}`)
	return b.Bytes()
}

func benchServer(b *testing.B) (*Server, *sqlite.Store) {
	b.Helper()
	gin.SetMode(gin.ReleaseMode)
	st, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	p := enrich.New(st, enrich.NewOllama("http://127.0.0.1:1", "m"), enrich.Config{MaxPending: 1 << 40}, reg, log)
	return New(Deps{Submitter: p, Store: st, Registerer: reg, Gatherer: reg, Logger: log},
		Config{StoreKind: st.Kind(), WebhookToken: "t"}), st
}

// BenchmarkWebhookIngest: alerts per second durably accepted (stored with
// synchronous=FULL before the 200) through the real handler and the embedded
// store, against a ceiling that only decodes the same JSON.
func BenchmarkWebhookIngest(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run("alerts="+strconv.Itoa(n), func(b *testing.B) {
			srv, _ := benchServer(b)
			h := srv.Handler()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest(http.MethodPost, "/webhook/alertmanager", bytes.NewReader(payload(n, i)))
				req.Header.Set("Authorization", "Bearer t")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "alerts/s")
		})
		b.Run("decode-only/alerts="+strconv.Itoa(n), func(b *testing.B) {
			body := payload(n, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := decodeWebhook(body); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "alerts/s")
		})
	}
}

// BenchmarkAPIRead: GET /anomalies with 100,000 stored anomalies.
func BenchmarkAPIRead(b *testing.B) {
	srv, st := benchServer(b)
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const total, batch = 100_000, 1000
	for i := 0; i < total; i += batch {
		as := make([]*store.Anomaly, batch)
		for j := range as {
			k := i + j
			status := store.StatusFiring
			if k%4 == 0 {
				status = store.StatusResolved
			}
			as[j] = store.NewAnomaly(store.Alert{
				Source: store.SourceAlertmanager, Status: status,
				Labels:      map[string]string{"alertname": "HighCPU", "instance": fmt.Sprintf("node-%d:9100", k), "job": "node", "severity": "high"},
				Annotations: map[string]string{"summary": "CPU usage above 80%"},
				StartsAt:    start.Add(time.Duration(k) * time.Second),
			}, start.Add(time.Duration(k)*time.Second))
		}
		if _, err := st.Ingest(ctx, as); err != nil {
			b.Fatal(err)
		}
	}
	h := srv.Handler()
	for _, q := range []string{"/anomalies?limit=20", "/anomalies?limit=20&status=firing", "/anomalies?limit=20&status=resolved&severity=high"} {
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, q, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
