// Package store holds the data model shared by every part of alertrca and the
// storage interface that the MongoDB and embedded SQLite implementations satisfy.
// It imports nothing of ours, so every other package may import it.
package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Sources of an anomaly.
const (
	SourceAlertmanager = "alertmanager"
	SourcePoller       = "poller"
)

// Alert statuses, as Alertmanager names them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// RCA statuses of an anomaly.
const (
	RCAPending  = "pending"  // waiting for (or under) analysis
	RCADone     = "done"     // the LLM produced a valid analysis
	RCAFallback = "fallback" // the LLM failed; the analysis was built from the alert itself
	RCASkipped  = "skipped"  // first seen already resolved: stored, never analysed
)

// Float is a sample value. JSON renders NaN and ±Inf as strings ("NaN",
// "+Inf", "-Inf"), as Prometheus's HTTP API does, because JSON numbers cannot.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(FormatFloat(v))
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("parse sample value %q: %w", s, err)
		}
		*f = Float(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("parse sample value: %w", err)
	}
	*f = Float(v)
	return nil
}

// FormatFloat renders a value so that ParseFloat gives back the same bits
// (NaN as "NaN", infinities as "+Inf"/"-Inf"). Both stores keep values as text
// because SQLite turns NaN into NULL and FerretDB rejects NaN/±Inf doubles.
func FormatFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ParseFloat is the inverse of FormatFloat.
func ParseFloat(s string) (Float, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parse stored value %q: %w", s, err)
	}
	return Float(v), nil
}

// Alert is what a source (the Alertmanager webhook, the poller) hands to the pipeline.
type Alert struct {
	Source       string
	Status       string // StatusFiring or StatusResolved
	Labels       map[string]string
	Annotations  map[string]string
	Value        *Float // nil when the source does not know it (Alertmanager)
	Reason       string // why it fired, in words a person can read
	Fingerprint  string // Alertmanager's; computed from Labels when empty
	StartsAt     time.Time
	EndsAt       time.Time // zero while firing
	GeneratorURL string
}

// Anomaly is one alert episode: one per Fingerprint + StartsAt.
type Anomaly struct {
	ID           string            `json:"id"`
	Source       string            `json:"source"`
	Name         string            `json:"name"`
	Severity     string            `json:"severity"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	Value        *Float            `json:"value"`
	Reason       string            `json:"reason"`
	Fingerprint  string            `json:"fingerprint"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       *time.Time        `json:"ends_at"`
	DetectedAt   time.Time         `json:"detected_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	RCAStatus    string            `json:"rca_status"`
	Attempts     int               `json:"attempts"`
	Sources      []string          `json:"sources"` // every source that reported this episode

	// Work-queue lease: who analyses it now, and until when the claim holds.
	LeaseOwner string    `json:"-"`
	LeaseUntil time.Time `json:"-"`
}

// RCA is the root-cause analysis of one anomaly.
type RCA struct {
	ID               string    `json:"id"`
	AnomalyID        string    `json:"anomaly_id"`
	Fingerprint      string    `json:"fingerprint"`
	Summary          string    `json:"summary"`
	Simplified       string    `json:"simplified"`
	Cause            string    `json:"cause"`
	Fix              string    `json:"fix"`
	Fallback         bool      `json:"fallback"`
	Error            string    `json:"error,omitempty"`     // why the LLM answer was not used
	Evidence         string    `json:"evidence,omitempty"`  // metric context given to the model
	CacheKey         string    `json:"cache_key,omitempty"` // incidents of the same kind share it
	Cached           bool      `json:"cached"`              // reused from SourceRCAID, no LLM call
	SourceRCAID      string    `json:"source_rca_id,omitempty"`
	Model            string    `json:"model"`
	LatencyMS        int64     `json:"latency_ms"`
	PromptTokens     int       `json:"prompt_tokens"`
	CompletionTokens int       `json:"completion_tokens"`
	CreatedAt        time.Time `json:"created_at"`
}

// ReuseKey is the cache key under which r may serve other incidents: only
// analyses the LLM made itself (not fallbacks, not cached copies).
func (r *RCA) ReuseKey() string {
	if r.Fallback || r.Cached {
		return ""
	}
	return r.CacheKey
}

// MetricSample is one series of a metrics snapshot.
type MetricSample struct {
	Labels map[string]string `json:"labels"`
	Value  Float             `json:"value"`
}

// MetricSnapshot is what one poll of Prometheus saw.
type MetricSnapshot struct {
	ID          string         `json:"id"`
	TS          time.Time      `json:"ts"`
	Target      string         `json:"target"`
	SeriesCount int            `json:"series_count"`
	Sample      []MetricSample `json:"sample"`
}

// Outcome says what Ingest did with one anomaly.
type Outcome int

// Ingest outcomes.
const (
	OutcomeNew      Outcome = iota + 1 // a new episode was stored
	OutcomeRepeat                      // the episode was known: nothing changed
	OutcomeResolved                    // the episode is now stored as resolved
)

func (o Outcome) String() string {
	switch o {
	case OutcomeNew:
		return "new"
	case OutcomeRepeat:
		return "repeat"
	case OutcomeResolved:
		return "resolved"
	}
	return "unknown"
}

// Fingerprint computes Alertmanager's fingerprint of a label set, in hex.
func Fingerprint(labels map[string]string) string { return LabelsFingerprint(labels).String() }

// LabelsFingerprint computes Alertmanager's fingerprint of a label set.
func LabelsFingerprint(labels map[string]string) model.Fingerprint {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint()
}

// EpisodeID is the identity of an alert episode: its fingerprint and start.
// Using it as the primary key makes ingest idempotent in both stores.
func EpisodeID(fingerprint string, startsAt time.Time) string {
	return fingerprint + "-" + strconv.FormatInt(startsAt.UnixNano(), 16)
}

// NewAnomaly turns an alert into the anomaly the stores keep.
func NewAnomaly(a Alert, now time.Time) *Anomaly {
	fp := a.Fingerprint
	if fp == "" {
		fp = Fingerprint(a.Labels)
	}
	an := &Anomaly{
		ID:           EpisodeID(fp, a.StartsAt),
		Source:       a.Source,
		Name:         a.Labels["alertname"],
		Severity:     a.Labels["severity"],
		Status:       a.Status,
		Labels:       nonNil(a.Labels),
		Annotations:  nonNil(a.Annotations),
		Value:        a.Value,
		Reason:       a.Reason,
		Fingerprint:  fp,
		GeneratorURL: a.GeneratorURL,
		StartsAt:     a.StartsAt.UTC(),
		DetectedAt:   now.UTC(),
		UpdatedAt:    now.UTC(),
		RCAStatus:    RCAPending,
		Sources:      []string{a.Source},
	}
	if an.Severity == "" {
		an.Severity = "unknown"
	}
	if a.Status == StatusResolved {
		an.RCAStatus = RCASkipped
		end := a.EndsAt.UTC()
		if a.EndsAt.IsZero() {
			end = now.UTC()
		}
		an.EndsAt = &end
	}
	return an
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Pair is one label or annotation as both stores keep it: a list of pairs
// sorted by name, because MongoDB-compatible servers reject field names with
// dots or a leading '$' and Prometheus 3 label names may contain dots.
type Pair struct {
	Name  string `json:"name" bson:"name"`
	Value string `json:"value" bson:"value"`
}

// ToPairs sorts a map into pairs.
func ToPairs(m map[string]string) []Pair {
	out := make([]Pair, 0, len(m))
	for k, v := range m {
		out = append(out, Pair{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FromPairs is the inverse of ToPairs.
func FromPairs(ps []Pair) map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

// AnomalyFilter selects anomalies for a list read; empty fields match all.
type AnomalyFilter struct {
	Status   string
	Severity string
	Source   string
	Limit    int
}

// Counts are the sizes shown by GET /stats.
type Counts struct {
	Metrics      int64 `json:"metrics"`
	Anomalies    int64 `json:"anomalies"`
	RCA          int64 `json:"rca"`
	ChatSessions int64 `json:"chat_sessions"`
}

// Describe renders a label set as {a="b", ...} for logs and prompts.
func Describe(labels map[string]string) string {
	ps := ToPairs(labels)
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s=%q", p.Name, p.Value)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// NewID returns a random 128-bit id in hex, for documents without a natural key.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// UnixNanos is how both stores keep times: exact, and ordered as integers.
// The zero time is 0.
func UnixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNanos is the inverse of UnixNanos (in UTC).
func FromUnixNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// SubmitResult counts what happened to the alerts of one submission.
type SubmitResult struct {
	Received int `json:"received"`
	New      int `json:"new"`
	Repeats  int `json:"repeats"`
	Resolved int `json:"resolved"`
}

// Target is a Prometheus server the poller queries (the targets collection).
type Target struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Job      string `json:"job"`
	Enabled  bool   `json:"enabled"`
}

// Delivery statuses.
const (
	DeliveryPending = "pending" // to send (at NextAttemptAt)
	DeliverySent    = "sent"
	DeliveryFailed  = "failed" // gave up: permanent error or too many attempts
	DeliveryDigest  = "digest" // held for the channel's next digest (storm control)
)

// Delivery is one message of one incident to one channel: its firing message
// or its resolved message. Its ID makes it exist once.
type Delivery struct {
	ID            string     `json:"-"`
	AnomalyID     string     `json:"-"`
	Channel       string     `json:"channel"`
	Kind          string     `json:"kind"` // "firing" or "resolved"
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	SentAt        *time.Time `json:"sent_at"`
	Digest        bool       `json:"digest,omitempty"` // sent as part of a digest

	ClaimSeq   int       `json:"-"` // claims so far (MongoDB claim tokens)
	LeaseOwner string    `json:"-"`
	LeaseUntil time.Time `json:"-"`
}

// DeliveryID is the identity of an incident's message to a channel.
func DeliveryID(anomalyID, channel, kind string) string {
	return anomalyID + "/" + channel + "/" + kind
}

// NewDelivery is a pending delivery due now.
func NewDelivery(anomalyID, channel, kind string, now time.Time) Delivery {
	return Delivery{
		ID: DeliveryID(anomalyID, channel, kind), AnomalyID: anomalyID, Channel: channel, Kind: kind,
		Status: DeliveryPending, NextAttemptAt: now.UTC(), CreatedAt: now.UTC(),
	}
}

// EmailConfig is who gets email, and whether email is on (email_config).
type EmailConfig struct {
	Enabled    bool     `json:"enabled"`
	Recipients []string `json:"recipients"`
}

// ChatTurn is one message of a chat session.
type ChatTurn struct {
	Role    string    `json:"role"` // "user" or "assistant"
	Content string    `json:"content"`
	At      time.Time `json:"at"`
}

// ChatSession is a conversation about incidents (chat_sessions).
type ChatSession struct {
	ID               string     `json:"id"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	Messages         []ChatTurn `json:"messages"`
	PromptTokens     int        `json:"prompt_tokens"`
	CompletionTokens int        `json:"completion_tokens"`
	AnomalyID        string     `json:"anomaly_id,omitempty"`
}
