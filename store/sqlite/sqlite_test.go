package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/sqlite"
	"github.com/alertrca/alertrca/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	a := store.NewAnomaly(store.Alert{Status: store.StatusFiring, Labels: map[string]string{"alertname": "X"}}, time.Now())
	if _, err := s.Ingest(ctx, []*store.Anomaly{a}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetAnomaly(ctx, a.ID); err != nil {
		t.Fatalf("anomaly lost across reopen: %v", err)
	}
	var mode, sync string
	if err := s.PragmaCheck(ctx, &mode, &sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != "2" {
		t.Fatalf("journal_mode=%s synchronous=%s, want wal and 2 (FULL)", mode, sync)
	}
}
