// Package sqlite is the embedded store: one SQLite file (pure Go, WAL mode,
// synchronous=FULL so an acknowledged alert survives a crash and a power loss).
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/alertrca/alertrca/store"
)

// FileName is the database file created inside DATA_DIR.
const FileName = "alertrca.db"

// Store is the embedded SQLite store. Writes go through one connection (SQLite
// has one writer anyway); reads use a pool so they never wait for a write.
type Store struct {
	w, r *sql.DB
	path string
}

var _ store.Store = (*Store)(nil)

// Open creates dir if needed and opens (or creates) the database in it.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	s := &Store{w: w, r: r, path: path}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Kind implements store.Store.
func (s *Store) Kind() string { return "embedded" }

// Close implements store.Store.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.r.ExecContext(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// schema: every read the API serves and every queue lookup has an index.
const schema = `
CREATE TABLE IF NOT EXISTS anomalies (
	id TEXT PRIMARY KEY,
	source TEXT NOT NULL,
	name TEXT NOT NULL,
	severity TEXT NOT NULL,
	status TEXT NOT NULL,
	labels TEXT NOT NULL,
	annotations TEXT NOT NULL,
	value TEXT,
	reason TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	generator_url TEXT NOT NULL,
	starts_at INTEGER NOT NULL,
	ends_at INTEGER,
	detected_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	rca_status TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until INTEGER NOT NULL DEFAULT 0,
	sources TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS anomalies_detected ON anomalies (detected_at, id);
CREATE INDEX IF NOT EXISTS anomalies_status ON anomalies (status, detected_at, id);
CREATE INDEX IF NOT EXISTS anomalies_severity ON anomalies (severity, detected_at, id);
CREATE INDEX IF NOT EXISTS anomalies_source ON anomalies (source, detected_at, id);
CREATE INDEX IF NOT EXISTS anomalies_queue ON anomalies (rca_status, lease_until, detected_at);
CREATE INDEX IF NOT EXISTS anomalies_fingerprint ON anomalies (fingerprint, status);
CREATE TABLE IF NOT EXISTS rca (
	id TEXT PRIMARY KEY,
	anomaly_id TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rca_created ON rca (created_at, id);
CREATE TABLE IF NOT EXISTS metrics (
	id TEXT PRIMARY KEY,
	ts INTEGER NOT NULL,
	doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_ts ON metrics (ts, id);
CREATE TABLE IF NOT EXISTS targets (
	name TEXT PRIMARY KEY,
	endpoint TEXT NOT NULL,
	job TEXT NOT NULL DEFAULT '',
	enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS email_config (
	id TEXT PRIMARY KEY,
	enabled INTEGER NOT NULL,
	recipients TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_sessions (
	id TEXT PRIMARY KEY,
	anomaly_id TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_sessions_updated ON chat_sessions (updated_at, id);
CREATE TABLE IF NOT EXISTS deliveries (
	id TEXT PRIMARY KEY,
	anomaly_id TEXT NOT NULL,
	channel TEXT NOT NULL,
	kind TEXT NOT NULL,
	status TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	next_attempt_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	sent_at INTEGER,
	digest INTEGER NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_anomaly ON deliveries (anomaly_id, channel, kind);
CREATE INDEX IF NOT EXISTS deliveries_digest ON deliveries (channel, status, next_attempt_at);
`

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema in %s: %w", s.path, err)
	}
	// Columns added after the first release.
	for _, c := range []struct{ table, column, def string }{
		{"anomalies", "sources", `TEXT NOT NULL DEFAULT '[]'`},
		{"rca", "cache_key", `TEXT NOT NULL DEFAULT ''`},
	} {
		var has int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name=?`, c.table, c.column).Scan(&has); err != nil {
			return fmt.Errorf("inspect schema of %s: %w", s.path, err)
		}
		if has == 0 {
			if _, err := s.w.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.def); err != nil {
				return fmt.Errorf("add column %s.%s in %s: %w", c.table, c.column, s.path, err)
			}
		}
	}
	if _, err := s.w.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS rca_cache ON rca (cache_key, created_at)`); err != nil {
		return fmt.Errorf("create index in %s: %w", s.path, err)
	}
	return nil
}

const anomalyCols = `id, source, name, severity, status, labels, annotations, value, reason,
	fingerprint, generator_url, starts_at, ends_at, detected_at, updated_at, rca_status,
	attempts, lease_owner, lease_until, sources`

// Ingest implements store.Ingester: the whole payload in one transaction, one fsync.
func (s *Store) Ingest(ctx context.Context, as []*store.Anomaly) ([]store.Outcome, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin ingest: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	out := make([]store.Outcome, len(as))
	for i, a := range as {
		var o store.Outcome
		if a.Status == store.StatusResolved {
			o, err = resolve(ctx, tx, a)
		} else {
			o, err = fire(ctx, tx, a)
		}
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit ingest: %w", err)
	}
	return out, nil
}

// fire attaches a firing alert to the episode of its fingerprint that is (or
// was, when the alert started) open, or stores it as a new episode.
func fire(ctx context.Context, tx *sql.Tx, a *store.Anomaly) (store.Outcome, error) {
	var id, sources string
	// The open episode of the fingerprint, or a resolved one that was open
	// when this alert started (a late copy from another source).
	start := store.UnixNanos(a.StartsAt)
	err := tx.QueryRowContext(ctx, `SELECT id, sources FROM anomalies WHERE fingerprint=?
		AND (status=? OR (starts_at<=? AND ends_at>=?)) ORDER BY status='firing' DESC, detected_at LIMIT 1`,
		a.Fingerprint, store.StatusFiring, start, start).Scan(&id, &sources)
	switch {
	case err == nil:
		var list []string
		if err := json.Unmarshal([]byte(sources), &list); err != nil {
			return 0, fmt.Errorf("decode sources of %s: %w", id, err)
		}
		if !slices.Contains(list, a.Source) {
			b, _ := json.Marshal(append(list, a.Source))
			if _, err := tx.ExecContext(ctx, `UPDATE anomalies SET sources=? WHERE id=?`, string(b), id); err != nil {
				return 0, fmt.Errorf("attach %s to anomaly %s: %w", a.Source, id, err)
			}
		}
		return store.OutcomeRepeat, nil
	case !errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("find open episode of %s: %w", a.Fingerprint, err)
	}
	inserted, err := insertAnomaly(ctx, tx, a)
	if err != nil || !inserted {
		return store.OutcomeRepeat, err
	}
	return store.OutcomeNew, nil
}

// resolve ends the alert's episode: the one with its ID, else an open one of
// its fingerprint that started before the alert ended (the same incident seen
// by another source). An unknown episode is stored as resolved.
func resolve(ctx context.Context, tx *sql.Tx, a *store.Anomaly) (store.Outcome, error) {
	end, now := store.UnixNanos(*a.EndsAt), store.UnixNanos(a.UpdatedAt)
	n, err := resolveWhere(ctx, tx, end, now, `id=? AND status=?`, a.ID, store.StatusFiring)
	if err != nil {
		return 0, fmt.Errorf("resolve anomaly %s: %w", a.ID, err)
	}
	if n > 0 {
		return store.OutcomeResolved, nil
	}
	var known int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM anomalies WHERE id=?`, a.ID).Scan(&known); err != nil {
		return 0, fmt.Errorf("look up anomaly %s: %w", a.ID, err)
	}
	if known > 0 {
		return store.OutcomeRepeat, nil
	}
	n, err = resolveWhere(ctx, tx, end, now, `fingerprint=? AND status=? AND starts_at<=?`, a.Fingerprint, store.StatusFiring, end)
	if err != nil {
		return 0, fmt.Errorf("resolve episode of %s: %w", a.Fingerprint, err)
	}
	if n > 0 {
		return store.OutcomeResolved, nil
	}
	// Already ended by another source (the poller saw it clear first).
	var overlap int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM anomalies WHERE fingerprint=? AND starts_at<=? AND ends_at>=?`,
		a.Fingerprint, end, store.UnixNanos(a.StartsAt)).Scan(&overlap); err != nil {
		return 0, fmt.Errorf("look up episodes of %s: %w", a.Fingerprint, err)
	}
	if overlap > 0 {
		return store.OutcomeRepeat, nil
	}
	if _, err := insertAnomaly(ctx, tx, a); err != nil {
		return 0, err
	}
	return store.OutcomeResolved, nil
}

// resolveWhere marks the matching anomalies resolved and queues the resolved
// message of every channel that has their firing message. It returns how many.
func resolveWhere(ctx context.Context, tx *sql.Tx, end, now int64, where string, args ...any) (int, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE anomalies SET status='resolved', ends_at=?, updated_at=? WHERE `+where+` RETURNING id`,
		append([]any{end, now}, args...)...)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, anomaly_id, channel, kind, status, next_attempt_at, created_at)
			SELECT anomaly_id || '/' || channel || '/resolved', anomaly_id, channel, 'resolved', 'pending', ?, ?
			FROM deliveries WHERE anomaly_id=? AND kind='firing' ON CONFLICT (id) DO NOTHING`, now, now, id); err != nil {
			return 0, fmt.Errorf("queue resolved messages of %s: %w", id, err)
		}
	}
	return len(ids), nil
}

func insertAnomaly(ctx context.Context, tx *sql.Tx, a *store.Anomaly) (bool, error) {
	labels, err := json.Marshal(a.Labels)
	if err != nil {
		return false, fmt.Errorf("encode labels: %w", err)
	}
	ann, err := json.Marshal(a.Annotations)
	if err != nil {
		return false, fmt.Errorf("encode annotations: %w", err)
	}
	sources, err := json.Marshal(a.Sources)
	if err != nil {
		return false, fmt.Errorf("encode sources: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO anomalies (`+anomalyCols+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Source, a.Name, a.Severity, a.Status, string(labels), string(ann), value(a.Value), a.Reason,
		a.Fingerprint, a.GeneratorURL, store.UnixNanos(a.StartsAt), optNanos(a.EndsAt), store.UnixNanos(a.DetectedAt), store.UnixNanos(a.UpdatedAt),
		a.RCAStatus, a.Attempts, a.LeaseOwner, store.UnixNanos(a.LeaseUntil), string(sources))
	if err != nil {
		return false, fmt.Errorf("insert anomaly %s: %w", a.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert anomaly %s: %w", a.ID, err)
	}
	return n == 1, nil
}

// Claim implements store.Queue.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (*store.Anomaly, error) {
	row := s.w.QueryRowContext(ctx, `UPDATE anomalies SET lease_owner=?, lease_until=?, attempts=attempts+1
		WHERE id = (SELECT id FROM anomalies WHERE rca_status=? AND lease_until < ?
		            ORDER BY detected_at, id LIMIT 1)
		RETURNING `+anomalyCols,
		owner, store.UnixNanos(now.Add(lease)), store.RCAPending, store.UnixNanos(now))
	a, err := scanAnomaly(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("claim pending anomaly: %w", err)
	}
	return a, nil
}

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE anomalies SET lease_owner='', lease_until=0
		WHERE id=? AND lease_owner=? AND rca_status=?`, id, owner, store.RCAPending)
	if err != nil {
		return fmt.Errorf("release anomaly %s: %w", id, err)
	}
	return nil
}

// SaveRCA implements store.Queue.
func (s *Store) SaveRCA(ctx context.Context, r *store.RCA, channels []string) error {
	r.ID = r.AnomalyID
	doc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rca: %w", err)
	}
	status := store.RCADone
	if r.Fallback {
		status = store.RCAFallback
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin save rca: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO rca (id, anomaly_id, created_at, doc, cache_key) VALUES (?,?,?,?,?)
		ON CONFLICT (anomaly_id) DO UPDATE SET id=excluded.id, created_at=excluded.created_at, doc=excluded.doc,
		cache_key=excluded.cache_key`,
		r.ID, r.AnomalyID, store.UnixNanos(r.CreatedAt), string(doc), r.ReuseKey()); err != nil {
		return fmt.Errorf("save rca of %s: %w", r.AnomalyID, err)
	}
	var anomalyStatus string
	if err := tx.QueryRowContext(ctx, `SELECT status FROM anomalies WHERE id=?`, r.AnomalyID).Scan(&anomalyStatus); err != nil {
		return fmt.Errorf("read anomaly %s: %w", r.AnomalyID, err)
	}
	for _, ch := range channels {
		kinds := []string{store.StatusFiring}
		if anomalyStatus == store.StatusResolved {
			kinds = append(kinds, store.StatusResolved)
		}
		for _, kind := range kinds {
			if err := insertDelivery(ctx, tx, store.NewDelivery(r.AnomalyID, ch, kind, r.CreatedAt)); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE anomalies SET rca_status=?, lease_owner='', lease_until=0, updated_at=?
		WHERE id=?`, status, store.UnixNanos(r.CreatedAt), r.AnomalyID); err != nil {
		return fmt.Errorf("mark anomaly %s analysed: %w", r.AnomalyID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit rca of %s: %w", r.AnomalyID, err)
	}
	return nil
}

// CountPending implements store.Queue.
func (s *Store) CountPending(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM anomalies WHERE rca_status=?`, store.RCAPending).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	return n, nil
}

// GetAnomaly implements store.Reader.
func (s *Store) GetAnomaly(ctx context.Context, id string) (*store.Anomaly, error) {
	a, err := scanAnomaly(s.r.QueryRowContext(ctx, `SELECT `+anomalyCols+` FROM anomalies WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get anomaly %s: %w", id, err)
	}
	return a, nil
}

// ListAnomalies implements store.Reader.
func (s *Store) ListAnomalies(ctx context.Context, f store.AnomalyFilter) ([]store.Anomaly, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"status", f.Status}, {"severity", f.Severity}, {"source", f.Source}} {
		if c.val != "" {
			where = append(where, c.col+"=?")
			args = append(args, c.val)
		}
	}
	q := `SELECT ` + anomalyCols + ` FROM anomalies`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY detected_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list anomalies: %w", err)
	}
	defer rows.Close()
	out := []store.Anomaly{}
	for rows.Next() {
		a, err := scanAnomaly(rows)
		if err != nil {
			return nil, fmt.Errorf("list anomalies: %w", err)
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list anomalies: %w", err)
	}
	return out, nil
}

// GetRCA implements store.Reader.
func (s *Store) GetRCA(ctx context.Context, anomalyID string) (*store.RCA, error) {
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM rca WHERE anomaly_id=?`, anomalyID).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get rca of %s: %w", anomalyID, err)
	}
	var r store.RCA
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("decode rca of %s: %w", anomalyID, err)
	}
	return &r, nil
}

// ListRCA implements store.Reader.
func (s *Store) ListRCA(ctx context.Context, limit int) ([]store.RCA, error) {
	return listDocs[store.RCA](ctx, s.r, `SELECT doc FROM rca ORDER BY created_at DESC, id DESC LIMIT ?`, limit)
}

// ListMetrics implements store.Reader.
func (s *Store) ListMetrics(ctx context.Context, limit int) ([]store.MetricSnapshot, error) {
	return listDocs[store.MetricSnapshot](ctx, s.r, `SELECT doc FROM metrics ORDER BY ts DESC, id DESC LIMIT ?`, limit)
}

// InsertMetrics implements store.Store.
func (s *Store) InsertMetrics(ctx context.Context, m *store.MetricSnapshot) error {
	if m.ID == "" {
		m.ID = store.NewID()
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metrics snapshot: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO metrics (id, ts, doc) VALUES (?,?,?)`, m.ID, store.UnixNanos(m.TS), string(doc)); err != nil {
		return fmt.Errorf("insert metrics snapshot: %w", err)
	}
	return nil
}

func listDocs[T any](ctx context.Context, db *sql.DB, q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		var v T
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return out, nil
}

// Counts implements store.Reader.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM metrics), (SELECT COUNT(*) FROM anomalies),
		(SELECT COUNT(*) FROM rca), (SELECT COUNT(*) FROM chat_sessions)`).
		Scan(&c.Metrics, &c.Anomalies, &c.RCA, &c.ChatSessions)
	if err != nil {
		return c, fmt.Errorf("count documents: %w", err)
	}
	return c, nil
}

// Retain implements store.Store.
func (s *Store) Retain(ctx context.Context, max int) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM anomalies WHERE rca_status != 'pending' AND id IN
			(SELECT id FROM anomalies ORDER BY detected_at DESC, id DESC LIMIT -1 OFFSET ?)`,
		`DELETE FROM rca WHERE id IN (SELECT id FROM rca ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)`,
		`DELETE FROM metrics WHERE id IN (SELECT id FROM metrics ORDER BY ts DESC, id DESC LIMIT -1 OFFSET ?)`,
	} {
		res, err := s.w.ExecContext(ctx, q, max)
		if err != nil {
			return total, fmt.Errorf("retention: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	// Messages of deleted anomalies, once nothing is left to send.
	res, err := s.w.ExecContext(ctx, `DELETE FROM deliveries WHERE status IN ('sent', 'failed')
		AND anomaly_id NOT IN (SELECT id FROM anomalies)`)
	if err != nil {
		return total, fmt.Errorf("retention: %w", err)
	}
	n, _ := res.RowsAffected()
	return total + n, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanAnomaly(sc scanner) (*store.Anomaly, error) {
	var (
		a                                          store.Anomaly
		labels, ann, sources                       string
		val                                        sql.NullString
		endsAt                                     sql.NullInt64
		startsAt, detectedAt, updatedAt, leaseTill int64
	)
	if err := sc.Scan(&a.ID, &a.Source, &a.Name, &a.Severity, &a.Status, &labels, &ann, &val, &a.Reason,
		&a.Fingerprint, &a.GeneratorURL, &startsAt, &endsAt, &detectedAt, &updatedAt, &a.RCAStatus,
		&a.Attempts, &a.LeaseOwner, &leaseTill, &sources); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(labels), &a.Labels); err != nil {
		return nil, fmt.Errorf("decode labels of %s: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(ann), &a.Annotations); err != nil {
		return nil, fmt.Errorf("decode annotations of %s: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(sources), &a.Sources); err != nil {
		return nil, fmt.Errorf("decode sources of %s: %w", a.ID, err)
	}
	if val.Valid {
		f, err := store.ParseFloat(val.String)
		if err != nil {
			return nil, err
		}
		a.Value = &f
	}
	a.StartsAt, a.DetectedAt, a.UpdatedAt = store.FromUnixNanos(startsAt), store.FromUnixNanos(detectedAt), store.FromUnixNanos(updatedAt)
	if leaseTill != 0 {
		a.LeaseUntil = store.FromUnixNanos(leaseTill)
	}
	if endsAt.Valid {
		t := store.FromUnixNanos(endsAt.Int64)
		a.EndsAt = &t
	}
	return &a, nil
}

func value(v *store.Float) any {
	if v == nil {
		return nil
	}
	return store.FormatFloat(float64(*v))
}

// optNanos is UnixNanos for an optional time: NULL when absent.
func optNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

// ListTargets implements store.Targets.
func (s *Store) ListTargets(ctx context.Context) ([]store.Target, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, endpoint, job, enabled FROM targets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	defer rows.Close()
	out := []store.Target{}
	for rows.Next() {
		var t store.Target
		if err := rows.Scan(&t.Name, &t.Endpoint, &t.Job, &t.Enabled); err != nil {
			return nil, fmt.Errorf("list targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

// PutTarget implements store.Targets.
func (s *Store) PutTarget(ctx context.Context, t store.Target) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO targets (name, endpoint, job, enabled) VALUES (?,?,?,?)
		ON CONFLICT (name) DO UPDATE SET endpoint=excluded.endpoint, job=excluded.job, enabled=excluded.enabled`,
		t.Name, t.Endpoint, t.Job, t.Enabled); err != nil {
		return fmt.Errorf("put target %s: %w", t.Name, err)
	}
	return nil
}

// DeleteTarget implements store.Targets.
func (s *Store) DeleteTarget(ctx context.Context, name string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM targets WHERE name=?`, name)
	if err != nil {
		return fmt.Errorf("delete target %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

const deliveryCols = `id, anomaly_id, channel, kind, status, attempts, last_error, next_attempt_at, created_at,
	sent_at, digest, lease_owner, lease_until`

func insertDelivery(ctx context.Context, tx *sql.Tx, d store.Delivery) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, anomaly_id, channel, kind, status, next_attempt_at, created_at)
		VALUES (?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING`,
		d.ID, d.AnomalyID, d.Channel, d.Kind, d.Status, store.UnixNanos(d.NextAttemptAt), store.UnixNanos(d.CreatedAt)); err != nil {
		return fmt.Errorf("queue delivery %s: %w", d.ID, err)
	}
	return nil
}

func scanDelivery(sc scanner) (*store.Delivery, error) {
	var d store.Delivery
	var next, created, leaseUntil int64
	var sent sql.NullInt64
	if err := sc.Scan(&d.ID, &d.AnomalyID, &d.Channel, &d.Kind, &d.Status, &d.Attempts, &d.LastError, &next, &created,
		&sent, &d.Digest, &d.LeaseOwner, &leaseUntil); err != nil {
		return nil, err
	}
	d.NextAttemptAt, d.CreatedAt = store.FromUnixNanos(next), store.FromUnixNanos(created)
	if leaseUntil != 0 {
		d.LeaseUntil = store.FromUnixNanos(leaseUntil)
	}
	if sent.Valid {
		t := store.FromUnixNanos(sent.Int64)
		d.SentAt = &t
	}
	return &d, nil
}

// ClaimDelivery implements store.Deliveries.
func (s *Store) ClaimDelivery(ctx context.Context, owner string, now time.Time, lease time.Duration) (*store.Delivery, error) {
	d, err := scanDelivery(s.w.QueryRowContext(ctx, `UPDATE deliveries SET lease_owner=?, lease_until=? WHERE id = (
		SELECT d.id FROM deliveries d WHERE d.status='pending' AND d.next_attempt_at<=? AND d.lease_until<?
		AND (d.kind='firing' OR NOT EXISTS (SELECT 1 FROM deliveries f WHERE f.anomaly_id=d.anomaly_id
			AND f.channel=d.channel AND f.kind='firing' AND f.status IN ('pending', 'digest')))
		ORDER BY d.next_attempt_at, d.id LIMIT 1) RETURNING `+deliveryCols,
		owner, store.UnixNanos(now.Add(lease)), store.UnixNanos(now), store.UnixNanos(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("claim delivery: %w", err)
	}
	return d, nil
}

// FinishDelivery implements store.Deliveries.
func (s *Store) FinishDelivery(ctx context.Context, d *store.Delivery) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE deliveries SET status=?, attempts=?, last_error=?, next_attempt_at=?,
		sent_at=?, digest=?, lease_owner='', lease_until=0 WHERE id=?`,
		d.Status, d.Attempts, d.LastError, store.UnixNanos(d.NextAttemptAt), optNanos(d.SentAt), d.Digest, d.ID); err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	return nil
}

// DueDigests implements store.Deliveries.
func (s *Store) DueDigests(ctx context.Context, channel string, now time.Time) ([]store.Delivery, error) {
	return s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM deliveries WHERE channel=? AND status=? AND next_attempt_at<=?
		ORDER BY created_at, id`, channel, store.DeliveryDigest, store.UnixNanos(now))
}

// ListDeliveries implements store.Deliveries.
func (s *Store) ListDeliveries(ctx context.Context, anomalyID string) ([]store.Delivery, error) {
	return s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM deliveries WHERE anomaly_id=? ORDER BY channel, kind`, anomalyID)
}

func (s *Store) queryDeliveries(ctx context.Context, q string, args ...any) ([]store.Delivery, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	out := []store.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		out = append(out, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// GetEmailConfig implements store.EmailConfigs.
func (s *Store) GetEmailConfig(ctx context.Context) (store.EmailConfig, bool, error) {
	var c store.EmailConfig
	var rcpts string
	err := s.r.QueryRowContext(ctx, `SELECT enabled, recipients FROM email_config WHERE id='default'`).Scan(&c.Enabled, &rcpts)
	if errors.Is(err, sql.ErrNoRows) {
		return store.EmailConfig{Recipients: []string{}}, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read email config: %w", err)
	}
	if err := json.Unmarshal([]byte(rcpts), &c.Recipients); err != nil {
		return c, false, fmt.Errorf("decode email recipients: %w", err)
	}
	return c, true, nil
}

// PutEmailConfig implements store.EmailConfigs.
func (s *Store) PutEmailConfig(ctx context.Context, c store.EmailConfig) error {
	if c.Recipients == nil {
		c.Recipients = []string{}
	}
	rcpts, _ := json.Marshal(c.Recipients)
	if _, err := s.w.ExecContext(ctx, `INSERT INTO email_config (id, enabled, recipients) VALUES ('default', ?, ?)
		ON CONFLICT (id) DO UPDATE SET enabled=excluded.enabled, recipients=excluded.recipients`, c.Enabled, string(rcpts)); err != nil {
		return fmt.Errorf("save email config: %w", err)
	}
	return nil
}

// FindCachedRCA implements store.Queue.
func (s *Store) FindCachedRCA(ctx context.Context, key string, notBefore time.Time) (*store.RCA, error) {
	if key == "" {
		return nil, store.ErrNotFound
	}
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM rca WHERE cache_key=? AND created_at>=? ORDER BY created_at DESC LIMIT 1`,
		key, store.UnixNanos(notBefore)).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find cached rca: %w", err)
	}
	var r store.RCA
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("decode cached rca: %w", err)
	}
	return &r, nil
}

// GetChatSession implements store.ChatSessions.
func (s *Store) GetChatSession(ctx context.Context, id string) (*store.ChatSession, error) {
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM chat_sessions WHERE id=?`, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get chat session %s: %w", id, err)
	}
	var cs store.ChatSession
	if err := json.Unmarshal([]byte(doc), &cs); err != nil {
		return nil, fmt.Errorf("decode chat session %s: %w", id, err)
	}
	return &cs, nil
}

// PutChatSession implements store.ChatSessions.
func (s *Store) PutChatSession(ctx context.Context, cs *store.ChatSession) error {
	doc, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("encode chat session: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO chat_sessions (id, anomaly_id, created_at, updated_at, doc) VALUES (?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET anomaly_id=excluded.anomaly_id, updated_at=excluded.updated_at, doc=excluded.doc`,
		cs.ID, cs.AnomalyID, store.UnixNanos(cs.CreatedAt), store.UnixNanos(cs.UpdatedAt), string(doc)); err != nil {
		return fmt.Errorf("save chat session %s: %w", cs.ID, err)
	}
	return nil
}
