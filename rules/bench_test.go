package rules

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/store"
)

// BenchmarkDetector: one op is one poll that scores a value of every series.
func BenchmarkDetector(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run("series="+shortCount(n), func(b *testing.B) {
			keys := make([]uint64, n)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range keys {
				keys[i] = rng.Uint64()
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d := NewZScoreDetector(10, 5, n, 10)
			for range 10 { // fill every window
				d.BeginPoll()
				for _, k := range keys {
					d.Observe(k, 50+rng.Float64())
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.BeginPoll()
				v := 50 + float64(i%7)
				for _, k := range keys {
					d.Observe(k, v)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/series")
			runtime.KeepAlive(d)
		})
	}
}

func shortCount(n int) string {
	switch {
	case n >= 1_000_000:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1_000:
		return strconv.Itoa(n/1_000) + "k"
	}
	return strconv.Itoa(n)
}

// BenchmarkPoll100k: one whole poll of a z-score rule over 100,000 series:
// the Prometheus HTTP API answer decoded by client_golang, then detection.
// The decode-only sub-benchmark shows where the time goes.
func BenchmarkPoll100k(b *testing.B) {
	const n = 100_000
	var body bytes.Buffer
	body.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"metric":{"__name__":"cpu_usage","instance":"node-%d:9100","job":"node"},"value":[1764000000,"%d"]}`, i, 50+i%3)
	}
	body.WriteString(`]}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body.Bytes())
	}))
	defer srv.Close()
	target := Target{Name: "bench", Endpoint: srv.URL}
	query := PrometheusQuery()

	b.Run("decode-only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			vec, err := query(context.Background(), target, "cpu_usage", time.Now())
			if err != nil || len(vec) != n {
				b.Fatalf("%d series, %v", len(vec), err)
			}
		}
	})
	b.Run("decode+detect", func(b *testing.B) {
		rs, err := Parse([]byte("rules:\n- name: CPUUsageAnomaly\n  expr: cpu_usage\n  severity: warning\n  zscore: {}\n"), 3)
		if err != nil {
			b.Fatal(err)
		}
		rec := discard{}
		p := NewPoller(rs, PollerConfig{Interval: time.Minute}, query,
			func(context.Context) ([]Target, error) { return []Target{target}, nil },
			rec, rec, nil, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		for range 10 { // fill the windows
			p.Poll(context.Background())
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p.Poll(context.Background())
		}
	})
}

type discard struct{}

func (discard) Submit(_ context.Context, as ...store.Alert) (store.SubmitResult, error) {
	return store.SubmitResult{Received: len(as)}, nil
}
func (discard) InsertMetrics(context.Context, *store.MetricSnapshot) error { return nil }
