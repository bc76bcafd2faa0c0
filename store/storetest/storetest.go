// Package storetest is the conformance suite every store implementation passes.
// The pipeline relies only on what is checked here.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alertrca/alertrca/store"
)

// Opener returns a new, empty store; the suite closes it.
type Opener func(t *testing.T) store.Store

// base is a start time with nanoseconds, to catch any rounding.
var base = time.Date(2026, 11, 26, 13, 41, 47, 876819936, time.UTC)

// Run runs the whole suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"IngestIsIdempotent", testIngestIdempotent},
		{"ResolveEpisode", testResolve},
		{"ResolvedWithoutFiring", testResolvedUnknown},
		{"SameIncidentFromTwoSources", testTwoSources},
		{"LateResolveOfAnOlderEpisode", testLateResolve},
		{"RoundTripOddLabelsAndValues", testRoundTrip},
		{"ClaimLeaseExpiryRelease", testClaim},
		{"ConcurrentClaimsNeverShare", testConcurrentClaims},
		{"SaveRCA", testSaveRCA},
		{"ListAnomaliesFilters", testListFilters},
		{"ListRCANewestFirst", testListRCA},
		{"Metrics", testMetrics},
		{"RetentionKeepsNewest", testRetention},
		{"Counts", testCounts},
		{"NotFound", testNotFound},
		{"Targets", testTargets},
		{"DeliveriesQueue", testDeliveries},
		{"EmailConfig", testEmailConfig},
		{"RCACache", testRCACache},
		{"ChatSessions", testChatSessions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// alert builds the n-th test alert; detected n seconds after base.
func alert(n int, status string, extra map[string]string) *store.Anomaly {
	labels := map[string]string{"alertname": fmt.Sprintf("Alert%d", n), "instance": fmt.Sprintf("host-%d:9100", n), "severity": "critical"}
	for k, v := range extra {
		labels[k] = v
	}
	a := store.Alert{
		Source: store.SourceAlertmanager, Status: status, Labels: labels,
		Annotations: map[string]string{"summary": "something broke"},
		Reason:      "test", StartsAt: base.Add(time.Duration(n) * time.Minute),
	}
	if status == store.StatusResolved {
		a.EndsAt = a.StartsAt.Add(time.Minute)
	}
	return store.NewAnomaly(a, base.Add(time.Duration(n)*time.Second))
}

func ingest(t *testing.T, s store.Store, as ...*store.Anomaly) []store.Outcome {
	t.Helper()
	out, err := s.Ingest(ctx(t), as)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if len(out) != len(as) {
		t.Fatalf("Ingest returned %d outcomes for %d anomalies", len(out), len(as))
	}
	return out
}

func get(t *testing.T, s store.Store, id string) *store.Anomaly {
	t.Helper()
	a, err := s.GetAnomaly(ctx(t), id)
	if err != nil {
		t.Fatalf("GetAnomaly(%s): %v", id, err)
	}
	return a
}

func testIngestIdempotent(t *testing.T, s store.Store) {
	a := alert(1, store.StatusFiring, nil)
	b := alert(2, store.StatusFiring, nil)
	if out := ingest(t, s, a, b); out[0] != store.OutcomeNew || out[1] != store.OutcomeNew {
		t.Fatalf("first ingest: got %v, want [new new]", out)
	}
	for i := 0; i < 3; i++ {
		again := alert(1, store.StatusFiring, nil)
		again.DetectedAt = again.DetectedAt.Add(time.Hour) // a later delivery of the same episode
		if out := ingest(t, s, again); out[0] != store.OutcomeRepeat {
			t.Fatalf("repeat %d: got %v, want repeat", i, out)
		}
	}
	got := get(t, s, a.ID)
	if !got.DetectedAt.Equal(a.DetectedAt) || got.RCAStatus != store.RCAPending {
		t.Fatalf("repeat changed the stored episode: %+v", got)
	}
	list, err := s.ListAnomalies(ctx(t), store.AnomalyFilter{Limit: 100})
	if err != nil || len(list) != 2 {
		t.Fatalf("ListAnomalies: %d anomalies, err %v; want 2", len(list), err)
	}
	if n, err := s.CountPending(ctx(t)); err != nil || n != 2 {
		t.Fatalf("CountPending = %d, %v; want 2", n, err)
	}
}

func testResolve(t *testing.T, s store.Store) {
	a := alert(1, store.StatusFiring, nil)
	ingest(t, s, a)
	r := alert(1, store.StatusResolved, nil)
	if out := ingest(t, s, r); out[0] != store.OutcomeResolved {
		t.Fatalf("resolve: got %v, want resolved", out)
	}
	got := get(t, s, a.ID)
	if got.Status != store.StatusResolved || got.EndsAt == nil || !got.EndsAt.Equal(*r.EndsAt) {
		t.Fatalf("after resolve: status %s ends_at %v, want resolved at %v", got.Status, got.EndsAt, r.EndsAt)
	}
	if got.RCAStatus != store.RCAPending {
		t.Fatalf("resolve changed rca_status to %s; the firing episode still needs its analysis", got.RCAStatus)
	}
	if out := ingest(t, s, r); out[0] != store.OutcomeRepeat {
		t.Fatalf("second resolve: got %v, want repeat", out)
	}
	// A late firing copy (another HA peer) never reopens the episode.
	if out := ingest(t, s, alert(1, store.StatusFiring, nil)); out[0] != store.OutcomeRepeat {
		t.Fatalf("late firing: got %v, want repeat", out)
	}
	if got := get(t, s, a.ID); got.Status != store.StatusResolved {
		t.Fatalf("late firing reopened the episode: %s", got.Status)
	}
}

func testResolvedUnknown(t *testing.T, s store.Store) {
	r := alert(1, store.StatusResolved, nil)
	if out := ingest(t, s, r); out[0] != store.OutcomeResolved {
		t.Fatalf("got %v, want resolved", out)
	}
	got := get(t, s, r.ID)
	if got.Status != store.StatusResolved || got.RCAStatus != store.RCASkipped {
		t.Fatalf("got status %s rca_status %s, want resolved/skipped", got.Status, got.RCAStatus)
	}
	if _, err := s.Claim(ctx(t), "w", base.Add(time.Hour), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a resolved-only episode was queued for analysis: %v", err)
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	values := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0.1, -1e-300, math.MaxFloat64, 42}
	for i, v := range values {
		a := alert(i, store.StatusFiring, map[string]string{
			"service.name": "checkout", "$dollar": "x", "k8s.pod.uid": "a.b.c", "empty": "", "utf8": "ünïcødé ✓",
		})
		a.Annotations = map[string]string{"description": "line1\nline2 \"quoted\" <b>", "runbook.url": "http://x/y?a=1&b=2"}
		f := store.Float(v)
		a.Value = &f
		a.GeneratorURL = "http://prom:9090/graph?g0.expr=up+%3D%3D+0"
		ingest(t, s, a)
		got := get(t, s, a.ID)
		if !reflect.DeepEqual(got.Labels, a.Labels) {
			t.Errorf("labels: got %v, want %v", got.Labels, a.Labels)
		}
		if !reflect.DeepEqual(got.Annotations, a.Annotations) {
			t.Errorf("annotations: got %v, want %v", got.Annotations, a.Annotations)
		}
		if got.Value == nil || math.Float64bits(float64(*got.Value)) != math.Float64bits(v) && !(math.IsNaN(v) && math.IsNaN(float64(*got.Value))) {
			t.Errorf("value: got %v, want %v", got.Value, v)
		}
		if !got.StartsAt.Equal(a.StartsAt) || !got.DetectedAt.Equal(a.DetectedAt) {
			t.Errorf("times: got starts %v detected %v, want %v %v", got.StartsAt, got.DetectedAt, a.StartsAt, a.DetectedAt)
		}
		if got.GeneratorURL != a.GeneratorURL || got.Fingerprint != a.Fingerprint || got.Name != a.Name || got.Severity != a.Severity {
			t.Errorf("fields: got %+v, want %+v", got, a)
		}
	}
	noValue := alert(100, store.StatusFiring, nil)
	ingest(t, s, noValue)
	if got := get(t, s, noValue.ID); got.Value != nil {
		t.Errorf("absent value came back as %v", *got.Value)
	}
}

func testClaim(t *testing.T, s store.Store) {
	c := ctx(t)
	older, newer := alert(1, store.StatusFiring, nil), alert(2, store.StatusFiring, nil)
	ingest(t, s, newer, older)
	now := base.Add(time.Hour)
	lease := time.Minute

	first, err := s.Claim(c, "w1", now, lease)
	if err != nil || first.ID != older.ID {
		t.Fatalf("first claim: %v, %v; want the oldest (%s)", first, err, older.ID)
	}
	if first.LeaseOwner != "w1" || !first.LeaseUntil.Equal(now.Add(lease)) || first.Attempts != 1 {
		t.Fatalf("claim fields: owner %q until %v attempts %d", first.LeaseOwner, first.LeaseUntil, first.Attempts)
	}
	second, err := s.Claim(c, "w2", now, lease)
	if err != nil || second.ID != newer.ID {
		t.Fatalf("second claim: %v, %v; want %s", second, err, newer.ID)
	}
	if _, err := s.Claim(c, "w3", now.Add(lease/2), lease); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim while both are leased: err %v, want ErrNotFound", err)
	}
	// The lease of a crashed worker expires and the work is claimed again.
	again, err := s.Claim(c, "w3", now.Add(lease+time.Second), lease)
	if err != nil || again.ID != older.ID || again.Attempts != 2 || again.LeaseOwner != "w3" {
		t.Fatalf("claim after expiry: %+v, %v; want %s with attempts 2 owned by w3", again, err, older.ID)
	}
	// Release by a former owner does nothing; by the owner it frees the work now.
	if err := s.Release(c, older.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(c, "w4", now.Add(lease+2*time.Second), lease); err == nil {
		// newer's lease (from now) has expired too; make sure older is still w3's
		if got := get(t, s, older.ID); got.LeaseOwner != "w3" {
			t.Fatalf("release by a non-owner freed the claim: owner %q", got.LeaseOwner)
		}
	}
	if err := s.Release(c, older.ID, "w3"); err != nil {
		t.Fatal(err)
	}
	freed, err := s.Claim(c, "w5", now.Add(lease+2*time.Second), lease)
	if err != nil || freed.ID != older.ID {
		t.Fatalf("claim after release: %v, %v; want %s", freed, err, older.ID)
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	const n = 12
	var as []*store.Anomaly
	for i := 0; i < n; i++ {
		as = append(as, alert(i, store.StatusFiring, nil))
	}
	ingest(t, s, as...)
	var mu sync.Mutex
	seen := map[string]string{}
	var errs []error
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(owner string) {
			defer wg.Done()
			for {
				a, err := s.Claim(ctx(t), owner, base.Add(time.Hour), time.Hour)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if prev, ok := seen[a.ID]; ok {
					errs = append(errs, fmt.Errorf("%s claimed by %s and %s", a.ID, prev, owner))
				} else {
					seen[a.ID] = owner
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(fmt.Sprintf("w%d", w))
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(seen) != n {
		t.Fatalf("%d of %d anomalies claimed", len(seen), n)
	}
}

func testSaveRCA(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := alert(1, store.StatusFiring, nil), alert(2, store.StatusFiring, nil)
	ingest(t, s, a, b)
	claimed, err := s.Claim(c, "w", base.Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := &store.RCA{AnomalyID: claimed.ID, Fingerprint: claimed.Fingerprint, Summary: "disk full",
		Simplified: "the disk is full", Cause: "logs", Fix: "rotate logs", Model: "m",
		Evidence:  "disk_used{instance=\"a\"}: 10 points, last 99",
		LatencyMS: 1234, PromptTokens: 10, CompletionTokens: 20, CreatedAt: base.Add(time.Hour)}
	if err := s.SaveRCA(c, r, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRCA(c, claimed.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *r
	want.ID = claimed.ID
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("GetRCA:\n got %+v\nwant %+v", *got, want)
	}
	an := get(t, s, claimed.ID)
	if an.RCAStatus != store.RCADone || an.LeaseOwner != "" {
		t.Fatalf("after SaveRCA: rca_status %s owner %q, want done and no lease", an.RCAStatus, an.LeaseOwner)
	}
	if n, _ := s.CountPending(c); n != 1 {
		t.Fatalf("CountPending = %d, want 1", n)
	}
	// Saving again (a retry after a crash) replaces, never duplicates.
	r2 := want
	r2.Summary, r2.Fallback = "second try", true
	if err := s.SaveRCA(c, &r2, nil); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ListRCA(c, 10)
	if err != nil || len(rs) != 1 || rs[0].Summary != "second try" {
		t.Fatalf("ListRCA after second save: %+v, %v", rs, err)
	}
	if an := get(t, s, claimed.ID); an.RCAStatus != store.RCAFallback {
		t.Fatalf("fallback RCA left rca_status %s", an.RCAStatus)
	}
	// The analysed anomaly is never claimed again, even after its lease time.
	next, err := s.Claim(c, "w", base.Add(2*time.Hour), time.Minute)
	if err != nil || next.ID == claimed.ID {
		t.Fatalf("claim after save: %v, %v", next, err)
	}
}

func testListFilters(t *testing.T, s store.Store) {
	c := ctx(t)
	var all []*store.Anomaly
	for i := 0; i < 9; i++ {
		status := store.StatusFiring
		if i%3 == 0 {
			status = store.StatusResolved
		}
		a := alert(i, status, map[string]string{"severity": []string{"critical", "warning"}[i%2]})
		if i >= 6 {
			a.Source = store.SourcePoller
		}
		all = append(all, a)
	}
	ingest(t, s, all...)
	ids := func(as []store.Anomaly) []string {
		out := []string{}
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	expect := func(pred func(*store.Anomaly) bool, limit int) []string {
		out := []string{}
		for i := len(all) - 1; i >= 0 && len(out) < limit; i-- { // newest first
			if pred(all[i]) {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	cases := []struct {
		f    store.AnomalyFilter
		pred func(*store.Anomaly) bool
	}{
		{store.AnomalyFilter{Limit: 100}, func(*store.Anomaly) bool { return true }},
		{store.AnomalyFilter{Limit: 4}, func(*store.Anomaly) bool { return true }},
		{store.AnomalyFilter{Status: "resolved", Limit: 100}, func(a *store.Anomaly) bool { return a.Status == "resolved" }},
		{store.AnomalyFilter{Severity: "warning", Limit: 2}, func(a *store.Anomaly) bool { return a.Severity == "warning" }},
		{store.AnomalyFilter{Source: "poller", Limit: 100}, func(a *store.Anomaly) bool { return a.Source == "poller" }},
		{store.AnomalyFilter{Status: "firing", Severity: "critical", Source: "alertmanager", Limit: 100}, func(a *store.Anomaly) bool {
			return a.Status == "firing" && a.Severity == "critical" && a.Source == "alertmanager"
		}},
		{store.AnomalyFilter{Status: "nope", Limit: 100}, func(*store.Anomaly) bool { return false }},
	}
	for _, tc := range cases {
		got, err := s.ListAnomalies(c, tc.f)
		if err != nil {
			t.Fatalf("%+v: %v", tc.f, err)
		}
		if want := expect(tc.pred, tc.f.Limit); !reflect.DeepEqual(ids(got), want) {
			t.Errorf("%+v:\n got %v\nwant %v", tc.f, ids(got), want)
		}
	}
}

func testListRCA(t *testing.T, s store.Store) {
	c := ctx(t)
	var want []string
	for i := 0; i < 5; i++ {
		a := alert(i, store.StatusFiring, nil)
		ingest(t, s, a)
		if err := s.SaveRCA(c, &store.RCA{AnomalyID: a.ID, Summary: "s", CreatedAt: base.Add(time.Duration(i) * time.Second)}, nil); err != nil {
			t.Fatal(err)
		}
		want = append([]string{a.ID}, want...)
	}
	got, err := s.ListRCA(c, 3)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.AnomalyID)
	}
	if !reflect.DeepEqual(gotIDs, want[:3]) {
		t.Fatalf("ListRCA(3) = %v, want %v", gotIDs, want[:3])
	}
}

func testMetrics(t *testing.T, s store.Store) {
	c := ctx(t)
	for i := 0; i < 12; i++ {
		m := &store.MetricSnapshot{TS: base.Add(time.Duration(i) * time.Second), Target: "default", SeriesCount: i,
			Sample: []store.MetricSample{
				{Labels: map[string]string{"__name__": "up", "service.name": "x"}, Value: store.Float(math.NaN())},
				{Labels: map[string]string{"__name__": "cpu"}, Value: store.Float(math.Inf(-1))},
				{Labels: map[string]string{"__name__": "mem"}, Value: 0.5},
			}}
		if err := s.InsertMetrics(c, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListMetrics(c, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0].SeriesCount != 11 || got[9].SeriesCount != 2 {
		t.Fatalf("ListMetrics(10): %d snapshots, first %d, want 10 newest first", len(got), got[0].SeriesCount)
	}
	smp := got[0].Sample
	sort.Slice(smp, func(i, j int) bool { return smp[i].Labels["__name__"] < smp[j].Labels["__name__"] })
	if !math.IsInf(float64(smp[0].Value), -1) || smp[1].Value != 0.5 || !math.IsNaN(float64(smp[2].Value)) ||
		smp[2].Labels["service.name"] != "x" || !got[0].TS.Equal(base.Add(11*time.Second)) {
		t.Fatalf("snapshot did not round-trip: %+v", got[0])
	}
}

func testRetention(t *testing.T, s store.Store) {
	c := ctx(t)
	const total, max = 12, 5
	var as []*store.Anomaly
	for i := 0; i < total; i++ {
		as = append(as, alert(i, store.StatusFiring, nil))
		if err := s.InsertMetrics(c, &store.MetricSnapshot{TS: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	ingest(t, s, as...)
	// Analyse all but the oldest: that one is still pending and must survive.
	for _, a := range as[1:] {
		if err := s.SaveRCA(c, &store.RCA{AnomalyID: a.ID, CreatedAt: a.DetectedAt}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Retain(c, max); err != nil {
		t.Fatal(err)
	}
	left, err := s.ListAnomalies(c, store.AnomalyFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := total - 1; i >= total-max; i-- {
		want = append(want, as[i].ID)
	}
	want = append(want, as[0].ID) // pending: kept
	var got []string
	for _, a := range left {
		got = append(got, a.ID)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("anomalies after retention:\n got %v\nwant %v", got, want)
	}
	rcas, _ := s.ListRCA(c, 100)
	metrics, _ := s.ListMetrics(c, 100)
	if len(rcas) != max || len(metrics) != max || rcas[0].AnomalyID != as[total-1].ID || !metrics[max-1].TS.Equal(base.Add((total-max)*time.Second)) {
		t.Fatalf("after retention: %d rca, %d metrics; want %d newest of each", len(rcas), len(metrics), max)
	}
	if n, err := s.Retain(c, max); err != nil || n != 0 {
		t.Fatalf("second retention deleted %d (%v), want 0", n, err)
	}
}

func testCounts(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := alert(1, store.StatusFiring, nil), alert(2, store.StatusFiring, nil)
	ingest(t, s, a, b)
	if err := s.SaveRCA(c, &store.RCA{AnomalyID: a.ID, CreatedAt: base}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertMetrics(c, &store.MetricSnapshot{TS: base}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Counts(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counts{Metrics: 1, Anomalies: 2, RCA: 1}); got != want {
		t.Fatalf("Counts = %+v, want %+v", got, want)
	}
	if err := s.Ping(c); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.GetAnomaly(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAnomaly: %v, want ErrNotFound", err)
	}
	if _, err := s.GetRCA(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRCA: %v, want ErrNotFound", err)
	}
	if _, err := s.Claim(c, "w", base, time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Claim on empty store: %v, want ErrNotFound", err)
	}
	if as, err := s.ListAnomalies(c, store.AnomalyFilter{Limit: 10}); err != nil || as == nil || len(as) != 0 {
		t.Errorf("ListAnomalies on empty store: %v, %v; want an empty, non-nil list", as, err)
	}
}

// episode builds an alert of one fixed label set (one fingerprint) from src,
// starting at base+start.
func episode(src, status string, start, end time.Duration) *store.Anomaly {
	a := store.Alert{
		Source: src, Status: status,
		Labels:   map[string]string{"alertname": "HighCPUUsage", "instance": "node-1:9100", "severity": "high"},
		StartsAt: base.Add(start),
	}
	if status == store.StatusResolved {
		a.EndsAt = base.Add(end)
	}
	return store.NewAnomaly(a, base.Add(start+time.Second))
}

func testTwoSources(t *testing.T, s store.Store) {
	poller := episode(store.SourcePoller, store.StatusFiring, 0, 0)
	if out := ingest(t, s, poller); out[0] != store.OutcomeNew {
		t.Fatalf("poller: %v", out)
	}
	// Alertmanager saw the same incident start 15s later: same fingerprint, other startsAt.
	if out := ingest(t, s, episode(store.SourceAlertmanager, store.StatusFiring, 15*time.Second, 0)); out[0] != store.OutcomeRepeat {
		t.Fatalf("alertmanager copy: %v, want repeat (attached)", out)
	}
	list, err := s.ListAnomalies(ctx(t), store.AnomalyFilter{Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("%d anomalies (%v), want 1", len(list), err)
	}
	if got := list[0].Sources; !reflect.DeepEqual(got, []string{store.SourcePoller, store.SourceAlertmanager}) {
		t.Fatalf("sources %v, want [poller alertmanager]", got)
	}
	if n, _ := s.CountPending(ctx(t)); n != 1 {
		t.Fatalf("%d pending analyses, want 1", n)
	}
	// Alertmanager's resolve of its copy resolves the shared episode.
	if out := ingest(t, s, episode(store.SourceAlertmanager, store.StatusResolved, 15*time.Second, 5*time.Minute)); out[0] != store.OutcomeResolved {
		t.Fatalf("resolve: %v", out)
	}
	got := get(t, s, poller.ID)
	if got.Status != store.StatusResolved || got.EndsAt == nil || !got.EndsAt.Equal(base.Add(5*time.Minute)) {
		t.Fatalf("after resolve: %s %v", got.Status, got.EndsAt)
	}
	// Late copies of the ended incident (a firing sent before the resolve,
	// the poller's own resolve) attach to it instead of opening another.
	if out := ingest(t, s, episode(store.SourcePoller, store.StatusResolved, 0, 5*time.Minute+time.Second)); out[0] != store.OutcomeRepeat {
		t.Fatalf("second source's resolve: %v, want repeat", out)
	}
	if out := ingest(t, s, episode("other", store.StatusResolved, 20*time.Second, 5*time.Minute+2*time.Second)); out[0] != store.OutcomeRepeat {
		t.Fatalf("third source's resolve of the ended incident: %v, want repeat", out)
	}
	if out := ingest(t, s, episode("other", store.StatusFiring, 2*time.Minute, 0)); out[0] != store.OutcomeRepeat {
		t.Fatalf("late firing copy: %v, want repeat", out)
	}
	if list, _ := s.ListAnomalies(ctx(t), store.AnomalyFilter{Limit: 10}); len(list) != 1 {
		t.Fatalf("%d anomalies after late copies, want 1", len(list))
	}
	// A new start after that is a new incident.
	if out := ingest(t, s, episode(store.SourceAlertmanager, store.StatusFiring, 10*time.Minute, 0)); out[0] != store.OutcomeNew {
		t.Fatalf("next incident: %v", out)
	}
}

func testLateResolve(t *testing.T, s store.Store) {
	ingest(t, s, episode(store.SourceAlertmanager, store.StatusFiring, 0, 0))
	ingest(t, s, episode(store.SourceAlertmanager, store.StatusResolved, 0, time.Minute))
	second := episode(store.SourceAlertmanager, store.StatusFiring, 10*time.Minute, 0)
	if out := ingest(t, s, second); out[0] != store.OutcomeNew {
		t.Fatalf("second episode: %v", out)
	}
	// Alertmanager repeats the first episode's resolve, and an unknown older
	// episode's resolve arrives: neither may end the second episode.
	if out := ingest(t, s, episode(store.SourceAlertmanager, store.StatusResolved, 0, time.Minute)); out[0] != store.OutcomeRepeat {
		t.Fatalf("repeated resolve: %v", out)
	}
	ingest(t, s, episode(store.SourceAlertmanager, store.StatusResolved, 2*time.Minute, 3*time.Minute))
	if got := get(t, s, second.ID); got.Status != store.StatusFiring {
		t.Fatalf("an older episode's resolve ended the open one")
	}
}

func testTargets(t *testing.T, s store.Store) {
	c := ctx(t)
	if ts, err := s.ListTargets(c); err != nil || ts == nil || len(ts) != 0 {
		t.Fatalf("empty: %v, %v", ts, err)
	}
	b := store.Target{Name: "b", Endpoint: "http://prom-b:9090", Job: "node", Enabled: true}
	a := store.Target{Name: "a.eu", Endpoint: "https://prom-a:9090", Enabled: false}
	for _, tg := range []store.Target{b, a} {
		if err := s.PutTarget(c, tg); err != nil {
			t.Fatal(err)
		}
	}
	b.Enabled, b.Job = false, ""
	if err := s.PutTarget(c, b); err != nil { // replace
		t.Fatal(err)
	}
	ts, err := s.ListTargets(c)
	if err != nil || !reflect.DeepEqual(ts, []store.Target{a, b}) {
		t.Fatalf("ListTargets = %+v, %v; want %+v", ts, err, []store.Target{a, b})
	}
	if err := s.DeleteTarget(c, "a.eu"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTarget(c, "a.eu"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if ts, _ := s.ListTargets(c); len(ts) != 1 || ts[0].Name != "b" {
		t.Fatalf("after delete: %+v", ts)
	}
}

func testDeliveries(t *testing.T, s store.Store) {
	c := ctx(t)
	now := base.Add(time.Hour)
	a := alert(1, store.StatusFiring, nil)
	ingest(t, s, a)
	if err := s.SaveRCA(c, &store.RCA{AnomalyID: a.ID, CreatedAt: now}, []string{"slack", "email"}); err != nil {
		t.Fatal(err)
	}
	ds, err := s.ListDeliveries(c, a.ID)
	if err != nil || len(ds) != 2 || ds[0].Channel != "email" || ds[1].Kind != "firing" || ds[0].Status != store.DeliveryPending {
		t.Fatalf("after SaveRCA: %+v, %v", ds, err)
	}
	// Saving again (a retry after a crash) creates nothing new.
	if err := s.SaveRCA(c, &store.RCA{AnomalyID: a.ID, CreatedAt: now}, []string{"slack", "email"}); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDelivery(c, "w1", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.ClaimDelivery(c, "w2", now, time.Minute)
	if err != nil || second.ID == first.ID {
		t.Fatalf("second claim: %+v, %v", second, err)
	}
	if _, err := s.ClaimDelivery(c, "w3", now, time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("third claim while both are leased: %v", err)
	}
	// email is sent; slack fails for now and is due again in a minute.
	email, slack := first, second
	if email.Channel != "email" {
		email, slack = second, first
	}
	sent := now.Add(time.Second)
	email.Status, email.Attempts, email.SentAt = store.DeliverySent, 1, &sent
	slack.Attempts, slack.LastError, slack.NextAttemptAt = 1, "HTTP 500", now.Add(time.Minute)
	for _, d := range []*store.Delivery{email, slack} {
		if err := s.FinishDelivery(c, d); err != nil {
			t.Fatal(err)
		}
	}
	// The incident resolves: a resolved message per channel that had a firing one.
	if out := ingest(t, s, alert(1, store.StatusResolved, nil)); out[0] != store.OutcomeResolved {
		t.Fatalf("resolve: %v", out)
	}
	ds, _ = s.ListDeliveries(c, a.ID)
	if len(ds) != 4 {
		t.Fatalf("%d deliveries after resolve, want 4: %+v", len(ds), ds)
	}
	// Only email's resolved message is due: slack's firing message is still pending.
	got, err := s.ClaimDelivery(c, "w1", now.Add(2*time.Second), time.Minute)
	if err != nil || got.ID != store.DeliveryID(a.ID, "email", "resolved") {
		t.Fatalf("claim after resolve: %+v, %v; want email's resolved message", got, err)
	}
	if _, err := s.ClaimDelivery(c, "w1", now.Add(3*time.Second), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("slack's messages claimed before their time: %v", err)
	}
	got.Status, got.Attempts, got.SentAt = store.DeliverySent, 1, &sent
	if err := s.FinishDelivery(c, got); err != nil {
		t.Fatal(err)
	}
	retry, err := s.ClaimDelivery(c, "w1", now.Add(time.Minute), time.Minute)
	if err != nil || retry.ID != slack.ID || retry.Attempts != 1 || retry.LastError != "HTTP 500" {
		t.Fatalf("retry of slack's firing message: %+v, %v", retry, err)
	}
	// Held for a digest: not claimable, listed by DueDigests once due.
	retry.Status, retry.NextAttemptAt = store.DeliveryDigest, now.Add(2*time.Minute)
	if err := s.FinishDelivery(c, retry); err != nil {
		t.Fatal(err)
	}
	if dd, _ := s.DueDigests(c, "slack", now.Add(time.Minute)); len(dd) != 0 {
		t.Fatalf("digest due early: %+v", dd)
	}
	dd, err := s.DueDigests(c, "slack", now.Add(2*time.Minute))
	if err != nil || len(dd) != 1 || dd[0].ID != slack.ID {
		t.Fatalf("DueDigests: %+v, %v", dd, err)
	}
	if _, err := s.ClaimDelivery(c, "w1", now.Add(3*time.Minute), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resolved message claimed while its firing message waits for a digest: %v", err)
	}

	// An anomaly resolved before its analysis gets both messages at once.
	b := alert(2, store.StatusFiring, nil)
	ingest(t, s, b)
	ingest(t, s, alert(2, store.StatusResolved, nil))
	if err := s.SaveRCA(c, &store.RCA{AnomalyID: b.ID, CreatedAt: now}, []string{"slack"}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.ListDeliveries(c, b.ID); len(ds) != 2 || ds[0].Kind != "firing" || ds[1].Kind != "resolved" {
		t.Fatalf("resolved before analysis: %+v", ds)
	}
}

func testEmailConfig(t *testing.T, s store.Store) {
	c := ctx(t)
	got, ok, err := s.GetEmailConfig(c)
	if err != nil || ok || got.Enabled || got.Recipients == nil {
		t.Fatalf("empty: %+v %v %v", got, ok, err)
	}
	want := store.EmailConfig{Enabled: true, Recipients: []string{"a@example.com", "Ops <ops@example.com>"}}
	if err := s.PutEmailConfig(c, want); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.GetEmailConfig(c); err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	want = store.EmailConfig{Enabled: false, Recipients: []string{}}
	if err := s.PutEmailConfig(c, want); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetEmailConfig(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("replace: %+v", got)
	}
}

func testRCACache(t *testing.T, s store.Store) {
	c := ctx(t)
	save := func(n int, r store.RCA) {
		t.Helper()
		a := alert(n, store.StatusFiring, nil)
		ingest(t, s, a)
		r.AnomalyID = a.ID
		if err := s.SaveRCA(c, &r, nil); err != nil {
			t.Fatal(err)
		}
	}
	save(1, store.RCA{Summary: "old", CacheKey: "k", CreatedAt: base})
	save(2, store.RCA{Summary: "newer", CacheKey: "k", CreatedAt: base.Add(time.Minute)})
	save(3, store.RCA{Summary: "fallback", CacheKey: "k", Fallback: true, CreatedAt: base.Add(2 * time.Minute)})
	save(4, store.RCA{Summary: "cached copy", CacheKey: "k", Cached: true, SourceRCAID: "x", CreatedAt: base.Add(3 * time.Minute)})
	save(5, store.RCA{Summary: "other kind", CacheKey: "other", CreatedAt: base.Add(4 * time.Minute)})
	got, err := s.FindCachedRCA(c, "k", base)
	if err != nil || got.Summary != "newer" || got.CacheKey != "k" {
		t.Fatalf("FindCachedRCA: %+v, %v; want the newest LLM-made analysis", got, err)
	}
	if _, err := s.FindCachedRCA(c, "k", base.Add(90*time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired entries found: %v", err)
	}
	if _, err := s.FindCachedRCA(c, "", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("empty key: %v", err)
	}
	copyRCA, err := s.GetRCA(c, alert(4, store.StatusFiring, nil).ID)
	if err != nil || !copyRCA.Cached || copyRCA.SourceRCAID != "x" || copyRCA.CacheKey != "k" {
		t.Fatalf("cached copy round trip: %+v, %v", copyRCA, err)
	}
}

func testChatSessions(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.GetChatSession(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	cs := &store.ChatSession{ID: "s1", CreatedAt: base, UpdatedAt: base, AnomalyID: "a1", PromptTokens: 10, CompletionTokens: 5,
		Messages: []store.ChatTurn{{Role: "user", Content: "what does this CPU alert mean?", At: base},
			{Role: "assistant", Content: "It means… \"quoted\" <b>", At: base.Add(time.Second)}}}
	if err := s.PutChatSession(c, cs); err != nil {
		t.Fatal(err)
	}
	cs.Messages = append(cs.Messages, store.ChatTurn{Role: "user", Content: "which fix first?", At: base.Add(2 * time.Second)})
	cs.UpdatedAt, cs.PromptTokens = base.Add(2*time.Second), 30
	if err := s.PutChatSession(c, cs); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetChatSession(c, "s1")
	if err != nil || !reflect.DeepEqual(got, cs) {
		t.Fatalf("round trip:\n got %+v\nwant %+v (%v)", got, cs, err)
	}
	if n, _ := s.Counts(c); n.ChatSessions != 1 {
		t.Fatalf("counted %d chat sessions, want 1", n.ChatSessions)
	}
}
