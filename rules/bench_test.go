package rules

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
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
