package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ErrNotFound is returned by single-item reads when nothing matches.
var ErrNotFound = errors.New("not found")

// Store is everything the pipeline, the API and the poller need from storage.
// Both implementations (store/mongo, store/sqlite) pass the same conformance
// suite in store/storetest; no behaviour exists in one backend only.
type Store interface {
	Ingester
	Queue
	Reader
	Targets
	Deliveries
	EmailConfigs
	ChatSessions

	// InsertMetrics stores one poll's snapshot.
	InsertMetrics(ctx context.Context, m *MetricSnapshot) error
	// Retain deletes all but the newest max documents of metrics, anomalies
	// and rca. Anomalies still waiting for analysis are never deleted.
	Retain(ctx context.Context, max int) (deleted int64, err error)
	// Ping tells whether the store answers.
	Ping(ctx context.Context) error
	// Kind is "embedded" or "mongodb".
	Kind() string
	Close() error
}

// Ingester stores incoming alert episodes idempotently.
type Ingester interface {
	// Ingest stores each anomaly durably before returning. An episode is keyed
	// by its ID (fingerprint + startsAt); episodes of the same fingerprint
	// that overlap in time are one incident even when another source saw it
	// start or end at another time (the poller and Alertmanager):
	//   - firing, an episode of its fingerprint is open, or was open when the
	//     alert started: the source joins that episode's sources (OutcomeRepeat);
	//   - firing, otherwise: stored as new, RCA pending (OutcomeNew), unless
	//     its ID is known: nothing changes (OutcomeRepeat);
	//   - resolved, its ID or an open episode of its fingerprint that started
	//     before it ended is firing: marked resolved with EndsAt (OutcomeResolved);
	//   - resolved, its ID is known, or an ended episode of its fingerprint
	//     overlaps it: nothing changes (OutcomeRepeat);
	//   - resolved, unknown: stored as resolved, RCA skipped (OutcomeResolved).
	Ingest(ctx context.Context, anomalies []*Anomaly) ([]Outcome, error)
}

// Queue is the durable work queue of anomalies awaiting analysis.
type Queue interface {
	// Claim leases the oldest pending anomaly whose lease has expired (or
	// never existed) to owner until now+lease. It returns ErrNotFound when
	// there is none.
	Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (*Anomaly, error)
	// Release gives back a claim so that the anomaly is picked up at once.
	Release(ctx context.Context, anomalyID, owner string) error
	// SaveRCA stores the analysis (replacing any earlier one of the same
	// anomaly), creates the pending firing delivery of each channel (and its
	// resolved one if the anomaly is already resolved), then marks the
	// anomaly done or fallback and clears its lease.
	SaveRCA(ctx context.Context, rca *RCA, channels []string) error
	// CountPending counts anomalies whose analysis is not stored yet.
	CountPending(ctx context.Context) (int64, error)
	// FindCachedRCA returns the newest analysis with this cache key made by
	// the LLM (not a fallback, not itself cached) at or after notBefore.
	// ErrNotFound when there is none.
	FindCachedRCA(ctx context.Context, key string, notBefore time.Time) (*RCA, error)
}

// Targets are the Prometheus servers the poller queries, by name.
type Targets interface {
	ListTargets(ctx context.Context) ([]Target, error)   // sorted by name
	PutTarget(ctx context.Context, t Target) error       // create or replace
	DeleteTarget(ctx context.Context, name string) error // ErrNotFound if absent
}

// Deliveries is the durable queue of notifications. Resolving an episode
// (Ingest) creates a pending resolved delivery for every channel that has a
// firing delivery of it.
type Deliveries interface {
	// ClaimDelivery leases the pending delivery due first (NextAttemptAt <=
	// now, lease expired). A resolved delivery is due only once its firing
	// delivery on the same channel is no longer pending. ErrNotFound: none.
	ClaimDelivery(ctx context.Context, owner string, now time.Time, lease time.Duration) (*Delivery, error)
	// FinishDelivery records an attempt: Status, Attempts, LastError,
	// NextAttemptAt, SentAt and Digest, and clears the lease.
	FinishDelivery(ctx context.Context, d *Delivery) error
	// DueDigests lists the deliveries of channel held for a digest whose
	// time (NextAttemptAt) has come, oldest first.
	DueDigests(ctx context.Context, channel string, now time.Time) ([]Delivery, error)
	// ListDeliveries lists the deliveries of an anomaly.
	ListDeliveries(ctx context.Context, anomalyID string) ([]Delivery, error)
}

// ChatSessions stores chat conversations.
type ChatSessions interface {
	GetChatSession(ctx context.Context, id string) (*ChatSession, error) // ErrNotFound if unknown
	PutChatSession(ctx context.Context, s *ChatSession) error            // create or replace
}

// EmailConfigs holds the email settings that live in the store.
type EmailConfigs interface {
	// GetEmailConfig returns the configuration, and false if none was saved.
	GetEmailConfig(ctx context.Context) (EmailConfig, bool, error)
	PutEmailConfig(ctx context.Context, c EmailConfig) error
}

// Reader serves the REST API.
type Reader interface {
	GetAnomaly(ctx context.Context, id string) (*Anomaly, error)
	ListAnomalies(ctx context.Context, f AnomalyFilter) ([]Anomaly, error)
	GetRCA(ctx context.Context, anomalyID string) (*RCA, error)
	ListRCA(ctx context.Context, limit int) ([]RCA, error)
	ListMetrics(ctx context.Context, limit int) ([]MetricSnapshot, error)
	Counts(ctx context.Context) (Counts, error)
	Ping(ctx context.Context) error
}

// RunRetention applies Retain every interval until ctx ends.
func RunRetention(ctx context.Context, s Store, max int, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Retain(ctx, max)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("retention failed; will retry", "err", err)
		case n > 0:
			logger.Info("retention deleted old documents", "deleted", n, "max_docs", max)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
