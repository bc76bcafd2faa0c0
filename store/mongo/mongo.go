// Package mongo is the production store: MongoDB through the official v2 driver.
//
// Writes use write concern "majority" with journaling, so an acknowledged alert
// survives the loss of the primary. The code uses only what FerretDB also
// offers (no transactions, TTL indexes or change streams), and stores what
// MongoDB-compatible servers may reject in a form that round-trips: values as
// text (NaN, ±Inf), labels as a list of {name, value} pairs (dots, '$').
// Times are int64 Unix nanoseconds, so they compare and round-trip exactly.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/alertrca/alertrca/store"
)

// Collection names, from the original design.
const (
	collMetrics      = "metrics"
	collAnomalies    = "anomalies"
	collRCA          = "rca"
	collTargets      = "targets"
	collEmailConfig  = "email_config"
	collChatSessions = "chat_sessions"
	collClaims       = "claims" // work-queue claim tokens; see Claim
	collDeliveries   = "deliveries"
)

// Store is the MongoDB store.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
}

var _ store.Store = (*Store)(nil)

// Open connects to uri, checks that the server answers and creates the indexes.
func Open(ctx context.Context, uri, dbName string) (*Store, error) {
	journal := true
	wc := &writeconcern.WriteConcern{W: "majority", Journal: &journal}
	opts := options.Client().ApplyURI(uri).
		SetWriteConcern(wc).
		SetServerSelectionTimeout(5 * time.Second).
		SetAppName("alertrca")
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	s := &Store{client: client, db: client.Database(dbName)}
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.createIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

// Kind implements store.Store.
func (s *Store) Kind() string { return "mongodb" }

// Close implements store.Store.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping MongoDB: %w", err)
	}
	return nil
}

// indexes backs every read the API serves and every pipeline lookup.
var indexes = map[string][]mongo.IndexModel{
	collAnomalies: {
		{Keys: bson.D{{Key: "detected_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "status", Value: 1}, {Key: "detected_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "severity", Value: 1}, {Key: "detected_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "source", Value: 1}, {Key: "detected_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "rca_status", Value: 1}, {Key: "lease_until", Value: 1}, {Key: "detected_at", Value: 1}}},
		{Keys: bson.D{{Key: "fingerprint", Value: 1}, {Key: "status", Value: 1}}},
	},
	collRCA: {
		{Keys: bson.D{{Key: "anomaly_id", Value: 1}}, Options: options.Index().SetUnique(true)},
		{Keys: bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "cache_key", Value: 1}, {Key: "created_at", Value: -1}}},
	},
	collMetrics: {
		{Keys: bson.D{{Key: "ts", Value: -1}, {Key: "_id", Value: -1}}},
	},
	collTargets: {
		{Keys: bson.D{{Key: "enabled", Value: 1}}},
	},
	collClaims: {
		{Keys: bson.D{{Key: "claimed_at", Value: 1}}},
	},
	collDeliveries: {
		{Keys: bson.D{{Key: "status", Value: 1}, {Key: "next_attempt_at", Value: 1}}},
		{Keys: bson.D{{Key: "anomaly_id", Value: 1}, {Key: "channel", Value: 1}, {Key: "kind", Value: 1}}},
		{Keys: bson.D{{Key: "channel", Value: 1}, {Key: "status", Value: 1}, {Key: "next_attempt_at", Value: 1}}},
	},
	collChatSessions: {
		{Keys: bson.D{{Key: "updated_at", Value: -1}, {Key: "_id", Value: -1}}},
		{Keys: bson.D{{Key: "anomaly_id", Value: 1}}},
	},
}

func (s *Store) createIndexes(ctx context.Context) error {
	for coll, models := range indexes {
		if _, err := s.db.Collection(coll).Indexes().CreateMany(ctx, models); err != nil {
			return fmt.Errorf("create indexes on %s: %w", coll, err)
		}
	}
	// email_config has only its _id; create it so that every collection exists.
	if err := s.db.CreateCollection(ctx, collEmailConfig); err != nil && !isNamespaceExists(err) {
		return fmt.Errorf("create collection %s: %w", collEmailConfig, err)
	}
	return nil
}

func isNamespaceExists(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 48 || ce.Name == "NamespaceExists")
}

type anomalyDoc struct {
	ID           string       `bson:"_id"`
	Source       string       `bson:"source"`
	Name         string       `bson:"name"`
	Severity     string       `bson:"severity"`
	Status       string       `bson:"status"`
	Labels       []store.Pair `bson:"labels"`
	Annotations  []store.Pair `bson:"annotations"`
	Value        *string      `bson:"value"`
	Reason       string       `bson:"reason"`
	Fingerprint  string       `bson:"fingerprint"`
	GeneratorURL string       `bson:"generator_url"`
	StartsAt     int64        `bson:"starts_at"`
	EndsAt       *int64       `bson:"ends_at"`
	DetectedAt   int64        `bson:"detected_at"`
	UpdatedAt    int64        `bson:"updated_at"`
	RCAStatus    string       `bson:"rca_status"`
	Attempts     int          `bson:"attempts"`
	LeaseOwner   string       `bson:"lease_owner"`
	LeaseUntil   int64        `bson:"lease_until"`
	Sources      []string     `bson:"sources"`
}

func toAnomalyDoc(a *store.Anomaly) anomalyDoc {
	d := anomalyDoc{
		ID: a.ID, Source: a.Source, Name: a.Name, Severity: a.Severity, Status: a.Status,
		Labels: store.ToPairs(a.Labels), Annotations: store.ToPairs(a.Annotations),
		Reason: a.Reason, Fingerprint: a.Fingerprint, GeneratorURL: a.GeneratorURL,
		StartsAt: store.UnixNanos(a.StartsAt), DetectedAt: store.UnixNanos(a.DetectedAt), UpdatedAt: store.UnixNanos(a.UpdatedAt),
		RCAStatus: a.RCAStatus, Attempts: a.Attempts, LeaseOwner: a.LeaseOwner, LeaseUntil: store.UnixNanos(a.LeaseUntil),
		Sources: a.Sources,
	}
	if a.Value != nil {
		v := store.FormatFloat(float64(*a.Value))
		d.Value = &v
	}
	if a.EndsAt != nil {
		e := store.UnixNanos(*a.EndsAt)
		d.EndsAt = &e
	}
	return d
}

func (d anomalyDoc) anomaly() (*store.Anomaly, error) {
	a := &store.Anomaly{
		ID: d.ID, Source: d.Source, Name: d.Name, Severity: d.Severity, Status: d.Status,
		Labels: store.FromPairs(d.Labels), Annotations: store.FromPairs(d.Annotations),
		Reason: d.Reason, Fingerprint: d.Fingerprint, GeneratorURL: d.GeneratorURL,
		StartsAt: store.FromUnixNanos(d.StartsAt), DetectedAt: store.FromUnixNanos(d.DetectedAt), UpdatedAt: store.FromUnixNanos(d.UpdatedAt),
		RCAStatus: d.RCAStatus, Attempts: d.Attempts, LeaseOwner: d.LeaseOwner,
		Sources: d.Sources,
	}
	if a.Sources == nil {
		a.Sources = []string{}
	}
	if d.LeaseUntil != 0 {
		a.LeaseUntil = store.FromUnixNanos(d.LeaseUntil)
	}
	if d.Value != nil {
		f, err := store.ParseFloat(*d.Value)
		if err != nil {
			return nil, fmt.Errorf("anomaly %s: %w", d.ID, err)
		}
		a.Value = &f
	}
	if d.EndsAt != nil {
		t := store.FromUnixNanos(*d.EndsAt)
		a.EndsAt = &t
	}
	return a, nil
}

// Ingest implements store.Ingester. MongoDB has no multi-document atomicity
// without transactions (which FerretDB lacks), so each alert is its own
// idempotent write; a failure part-way returns an error, the webhook answers
// 503, and Alertmanager's retry stores the rest while the done ones repeat.
func (s *Store) Ingest(ctx context.Context, as []*store.Anomaly) ([]store.Outcome, error) {
	out := make([]store.Outcome, len(as))
	for i, a := range as {
		var err error
		if a.Status == store.StatusResolved {
			out[i], err = s.resolve(ctx, a)
		} else {
			out[i], err = s.fire(ctx, a)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fire attaches a firing alert to the episode of its fingerprint that is (or
// was, when the alert started) open, or stores it as a new episode.
func (s *Store) fire(ctx context.Context, a *store.Anomaly) (store.Outcome, error) {
	coll := s.db.Collection(collAnomalies)
	var open anomalyDoc
	err := coll.FindOne(ctx, bson.D{{Key: "fingerprint", Value: a.Fingerprint}, {Key: "status", Value: store.StatusFiring}},
		options.FindOne().SetSort(bson.D{{Key: "detected_at", Value: 1}})).Decode(&open)
	if errors.Is(err, mongo.ErrNoDocuments) {
		// A resolved episode that was open when this alert started (a late copy from another source).
		start := store.UnixNanos(a.StartsAt)
		err = coll.FindOne(ctx, bson.D{
			{Key: "fingerprint", Value: a.Fingerprint},
			{Key: "starts_at", Value: bson.D{{Key: "$lte", Value: start}}},
			{Key: "ends_at", Value: bson.D{{Key: "$gte", Value: start}}},
		}).Decode(&open)
	}
	switch {
	case err == nil:
		if !slices.Contains(open.Sources, a.Source) {
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: open.ID}},
				bson.D{{Key: "$addToSet", Value: bson.D{{Key: "sources", Value: a.Source}}}}); err != nil {
				return 0, fmt.Errorf("attach %s to anomaly %s: %w", a.Source, open.ID, err)
			}
		}
		return store.OutcomeRepeat, nil
	case !errors.Is(err, mongo.ErrNoDocuments):
		return 0, fmt.Errorf("find open episode of %s: %w", a.Fingerprint, err)
	}
	_, err = coll.InsertOne(ctx, toAnomalyDoc(a))
	switch {
	case mongo.IsDuplicateKeyError(err):
		return store.OutcomeRepeat, nil
	case err != nil:
		return 0, fmt.Errorf("insert anomaly %s: %w", a.ID, err)
	}
	return store.OutcomeNew, nil
}

// resolve ends the alert's episode: the one with its ID, else an open one of
// its fingerprint that started before the alert ended (the same incident seen
// by another source). An unknown episode is stored as resolved.
func (s *Store) resolve(ctx context.Context, a *store.Anomaly) (store.Outcome, error) {
	coll := s.db.Collection(collAnomalies)
	end := store.UnixNanos(*a.EndsAt)
	set := bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: store.StatusResolved},
		{Key: "ends_at", Value: end},
		{Key: "updated_at", Value: store.UnixNanos(a.UpdatedAt)},
	}}}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: a.ID}, {Key: "status", Value: store.StatusFiring}}, set)
	if err != nil {
		return 0, fmt.Errorf("resolve anomaly %s: %w", a.ID, err)
	}
	if res.MatchedCount > 0 {
		return store.OutcomeResolved, s.queueResolved(ctx, a.ID, a.UpdatedAt)
	}
	known, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: a.ID}})
	if err != nil {
		return 0, fmt.Errorf("look up anomaly %s: %w", a.ID, err)
	}
	if known > 0 {
		return store.OutcomeRepeat, nil
	}
	open, err := find[anomalyDoc](ctx, coll, bson.D{
		{Key: "fingerprint", Value: a.Fingerprint}, {Key: "status", Value: store.StatusFiring},
		{Key: "starts_at", Value: bson.D{{Key: "$lte", Value: end}}},
	}, bson.D{{Key: "_id", Value: 1}}, 0)
	if err != nil {
		return 0, fmt.Errorf("find open episodes of %s: %w", a.Fingerprint, err)
	}
	for _, o := range open {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: o.ID}}, set); err != nil {
			return 0, fmt.Errorf("resolve anomaly %s: %w", o.ID, err)
		}
		if err := s.queueResolved(ctx, o.ID, a.UpdatedAt); err != nil {
			return 0, err
		}
	}
	if len(open) > 0 {
		return store.OutcomeResolved, nil
	}
	// Already ended by another source (the poller saw it clear first).
	overlap, err := coll.CountDocuments(ctx, bson.D{
		{Key: "fingerprint", Value: a.Fingerprint},
		{Key: "starts_at", Value: bson.D{{Key: "$lte", Value: end}}},
		{Key: "ends_at", Value: bson.D{{Key: "$gte", Value: store.UnixNanos(a.StartsAt)}}},
	})
	if err != nil {
		return 0, fmt.Errorf("look up episodes of %s: %w", a.Fingerprint, err)
	}
	if overlap > 0 {
		return store.OutcomeRepeat, nil
	}
	if _, err := coll.InsertOne(ctx, toAnomalyDoc(a)); err != nil && !mongo.IsDuplicateKeyError(err) {
		return 0, fmt.Errorf("insert anomaly %s: %w", a.ID, err)
	}
	return store.OutcomeResolved, nil
}

// Claim implements store.Queue.
//
// A claim wins a fencing token: the insert of {_id: "<anomaly>/<attempt>"} into
// the claims collection, which the unique _id makes atomic on any
// MongoDB-compatible server. (findAndModify is atomic on MongoDB but not on
// FerretDB, where two workers could both "win" the same anomaly.) The winner
// then writes its lease and the new attempt count on the anomaly. If a winner
// dies between the two writes, its token expires after the lease and the
// next claimer takes the following attempt number.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (*store.Anomaly, error) {
	anomalies := s.db.Collection(collAnomalies)
	for round := 0; round < 3; round++ {
		candidates, err := find[anomalyDoc](ctx, anomalies,
			bson.D{{Key: "rca_status", Value: store.RCAPending}, {Key: "lease_until", Value: bson.D{{Key: "$lt", Value: store.UnixNanos(now)}}}},
			bson.D{{Key: "detected_at", Value: 1}, {Key: "_id", Value: 1}}, 8)
		if err != nil {
			return nil, fmt.Errorf("find pending anomalies: %w", err)
		}
		if len(candidates) == 0 {
			return nil, store.ErrNotFound
		}
		for _, c := range candidates {
			attempt, err := s.takeToken(ctx, c.ID, c.Attempts, owner, now, lease)
			if err != nil {
				return nil, err
			}
			if attempt == 0 {
				continue // another worker holds it
			}
			res, err := anomalies.UpdateOne(ctx,
				bson.D{{Key: "_id", Value: c.ID}, {Key: "rca_status", Value: store.RCAPending}},
				bson.D{{Key: "$set", Value: bson.D{
					{Key: "lease_owner", Value: owner}, {Key: "lease_until", Value: store.UnixNanos(now.Add(lease))},
					{Key: "attempts", Value: attempt},
				}}})
			if err != nil {
				return nil, fmt.Errorf("lease anomaly %s: %w", c.ID, err)
			}
			if res.MatchedCount == 0 {
				continue // analysed in the meantime
			}
			c.LeaseOwner, c.LeaseUntil, c.Attempts = owner, store.UnixNanos(now.Add(lease)), attempt
			return c.anomaly()
		}
	}
	return nil, store.ErrNotFound
}

type claimDoc struct {
	ID        string `bson:"_id"` // "<claimed id>#<attempt>"
	AnomalyID string `bson:"anomaly_id"`
	Owner     string `bson:"owner"`
	ClaimedAt int64  `bson:"claimed_at"`
}

// takeToken inserts the claim token of the attempt after attempts. It returns
// the attempt number won, or 0 when a live claim of another worker holds it.
// Tokens whose claim has outlived the lease (their winner died before writing
// the anomaly) are stepped over.
func (s *Store) takeToken(ctx context.Context, id string, attempts int, owner string, now time.Time, lease time.Duration) (int, error) {
	claims := s.db.Collection(collClaims)
	for attempt := attempts + 1; attempt <= attempts+10; attempt++ {
		tok := claimDoc{ID: fmt.Sprintf("%s#%d", id, attempt), AnomalyID: id, Owner: owner, ClaimedAt: store.UnixNanos(now)}
		_, err := claims.InsertOne(ctx, tok)
		if err == nil {
			return attempt, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return 0, fmt.Errorf("claim anomaly %s: %w", id, err)
		}
		var held claimDoc
		if err := claims.FindOne(ctx, bson.D{{Key: "_id", Value: tok.ID}}).Decode(&held); err != nil {
			return 0, fmt.Errorf("read claim %s: %w", tok.ID, err)
		}
		if store.FromUnixNanos(held.ClaimedAt).Add(lease).After(now) {
			return 0, nil
		}
	}
	return 0, nil
}

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	_, err := s.db.Collection(collAnomalies).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "lease_owner", Value: owner}, {Key: "rca_status", Value: store.RCAPending}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lease_owner", Value: ""}, {Key: "lease_until", Value: int64(0)}}}})
	if err != nil {
		return fmt.Errorf("release anomaly %s: %w", id, err)
	}
	return nil
}

type rcaDoc struct {
	ID               string `bson:"_id"`
	AnomalyID        string `bson:"anomaly_id"`
	Fingerprint      string `bson:"fingerprint"`
	Summary          string `bson:"summary"`
	Simplified       string `bson:"simplified"`
	Cause            string `bson:"cause"`
	Fix              string `bson:"fix"`
	Fallback         bool   `bson:"fallback"`
	Error            string `bson:"error"`
	Evidence         string `bson:"evidence"`
	CacheKey         string `bson:"cache_key"` // empty unless reusable (made by the LLM)
	Key              string `bson:"key"`       // the incident kind, as computed
	Cached           bool   `bson:"cached"`
	SourceRCAID      string `bson:"source_rca_id"`
	Model            string `bson:"model"`
	LatencyMS        int64  `bson:"latency_ms"`
	PromptTokens     int    `bson:"prompt_tokens"`
	CompletionTokens int    `bson:"completion_tokens"`
	CreatedAt        int64  `bson:"created_at"`
}

func (d rcaDoc) rca() store.RCA {
	return store.RCA{
		ID: d.ID, AnomalyID: d.AnomalyID, Fingerprint: d.Fingerprint, Summary: d.Summary,
		Simplified: d.Simplified, Cause: d.Cause, Fix: d.Fix, Fallback: d.Fallback, Error: d.Error,
		Evidence: d.Evidence, CacheKey: d.Key, Cached: d.Cached, SourceRCAID: d.SourceRCAID, Model: d.Model, LatencyMS: d.LatencyMS, PromptTokens: d.PromptTokens,
		CompletionTokens: d.CompletionTokens, CreatedAt: store.FromUnixNanos(d.CreatedAt),
	}
}

// SaveRCA implements store.Queue: upsert the RCA, then mark the anomaly. If the
// process dies between the two writes, the lease expires, the anomaly is
// claimed again and the worker finds the stored RCA instead of calling the LLM.
func (s *Store) SaveRCA(ctx context.Context, r *store.RCA, channels []string) error {
	r.ID = r.AnomalyID
	d := rcaDoc{
		ID: r.ID, AnomalyID: r.AnomalyID, Fingerprint: r.Fingerprint, Summary: r.Summary,
		Simplified: r.Simplified, Cause: r.Cause, Fix: r.Fix, Fallback: r.Fallback, Error: r.Error,
		Evidence: r.Evidence, CacheKey: r.ReuseKey(), Key: r.CacheKey, Cached: r.Cached, SourceRCAID: r.SourceRCAID, Model: r.Model, LatencyMS: r.LatencyMS, PromptTokens: r.PromptTokens,
		CompletionTokens: r.CompletionTokens, CreatedAt: store.UnixNanos(r.CreatedAt),
	}
	if _, err := s.db.Collection(collRCA).ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d,
		options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("save rca of %s: %w", r.AnomalyID, err)
	}
	var an anomalyDoc
	if err := s.db.Collection(collAnomalies).FindOne(ctx, bson.D{{Key: "_id", Value: r.AnomalyID}}).Decode(&an); err != nil {
		return fmt.Errorf("read anomaly %s: %w", r.AnomalyID, err)
	}
	for _, ch := range channels {
		kinds := []string{store.StatusFiring}
		if an.Status == store.StatusResolved {
			kinds = append(kinds, store.StatusResolved)
		}
		for _, kind := range kinds {
			if err := s.insertDelivery(ctx, store.NewDelivery(r.AnomalyID, ch, kind, r.CreatedAt)); err != nil {
				return err
			}
		}
	}
	status := store.RCADone
	if r.Fallback {
		status = store.RCAFallback
	}
	if _, err := s.db.Collection(collAnomalies).UpdateOne(ctx, bson.D{{Key: "_id", Value: r.AnomalyID}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "rca_status", Value: status}, {Key: "lease_owner", Value: ""},
			{Key: "lease_until", Value: int64(0)}, {Key: "updated_at", Value: store.UnixNanos(r.CreatedAt)},
		}}}); err != nil {
		return fmt.Errorf("mark anomaly %s analysed: %w", r.AnomalyID, err)
	}
	return nil
}

// CountPending implements store.Queue.
func (s *Store) CountPending(ctx context.Context) (int64, error) {
	n, err := s.db.Collection(collAnomalies).CountDocuments(ctx, bson.D{{Key: "rca_status", Value: store.RCAPending}})
	if err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	return n, nil
}

// GetAnomaly implements store.Reader.
func (s *Store) GetAnomaly(ctx context.Context, id string) (*store.Anomaly, error) {
	var d anomalyDoc
	err := s.db.Collection(collAnomalies).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get anomaly %s: %w", id, err)
	}
	return d.anomaly()
}

var newestFirst = func(field string) bson.D {
	return bson.D{{Key: field, Value: -1}, {Key: "_id", Value: -1}}
}

// ListAnomalies implements store.Reader.
func (s *Store) ListAnomalies(ctx context.Context, f store.AnomalyFilter) ([]store.Anomaly, error) {
	filter := bson.D{}
	for _, c := range []struct{ key, val string }{{"status", f.Status}, {"severity", f.Severity}, {"source", f.Source}} {
		if c.val != "" {
			filter = append(filter, bson.E{Key: c.key, Value: c.val})
		}
	}
	docs, err := find[anomalyDoc](ctx, s.db.Collection(collAnomalies), filter, newestFirst("detected_at"), f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list anomalies: %w", err)
	}
	out := make([]store.Anomaly, 0, len(docs))
	for _, d := range docs {
		a, err := d.anomaly()
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, nil
}

// GetRCA implements store.Reader.
func (s *Store) GetRCA(ctx context.Context, anomalyID string) (*store.RCA, error) {
	var d rcaDoc
	err := s.db.Collection(collRCA).FindOne(ctx, bson.D{{Key: "anomaly_id", Value: anomalyID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get rca of %s: %w", anomalyID, err)
	}
	r := d.rca()
	return &r, nil
}

// ListRCA implements store.Reader.
func (s *Store) ListRCA(ctx context.Context, limit int) ([]store.RCA, error) {
	docs, err := find[rcaDoc](ctx, s.db.Collection(collRCA), bson.D{}, newestFirst("created_at"), limit)
	if err != nil {
		return nil, fmt.Errorf("list rca: %w", err)
	}
	out := make([]store.RCA, len(docs))
	for i, d := range docs {
		out[i] = d.rca()
	}
	return out, nil
}

type sampleDoc struct {
	Labels []store.Pair `bson:"labels"`
	Value  string       `bson:"value"`
}

type metricsDoc struct {
	ID          string      `bson:"_id"`
	TS          int64       `bson:"ts"`
	Target      string      `bson:"target"`
	SeriesCount int         `bson:"series_count"`
	Sample      []sampleDoc `bson:"sample"`
}

// InsertMetrics implements store.Store.
func (s *Store) InsertMetrics(ctx context.Context, m *store.MetricSnapshot) error {
	if m.ID == "" {
		m.ID = store.NewID()
	}
	d := metricsDoc{ID: m.ID, TS: store.UnixNanos(m.TS), Target: m.Target, SeriesCount: m.SeriesCount}
	for _, smp := range m.Sample {
		d.Sample = append(d.Sample, sampleDoc{Labels: store.ToPairs(smp.Labels), Value: store.FormatFloat(float64(smp.Value))})
	}
	if _, err := s.db.Collection(collMetrics).InsertOne(ctx, d); err != nil {
		return fmt.Errorf("insert metrics snapshot: %w", err)
	}
	return nil
}

// ListMetrics implements store.Reader.
func (s *Store) ListMetrics(ctx context.Context, limit int) ([]store.MetricSnapshot, error) {
	docs, err := find[metricsDoc](ctx, s.db.Collection(collMetrics), bson.D{}, newestFirst("ts"), limit)
	if err != nil {
		return nil, fmt.Errorf("list metrics: %w", err)
	}
	out := make([]store.MetricSnapshot, len(docs))
	for i, d := range docs {
		m := store.MetricSnapshot{ID: d.ID, TS: store.FromUnixNanos(d.TS), Target: d.Target, SeriesCount: d.SeriesCount, Sample: []store.MetricSample{}}
		for _, smp := range d.Sample {
			v, err := store.ParseFloat(smp.Value)
			if err != nil {
				return nil, err
			}
			m.Sample = append(m.Sample, store.MetricSample{Labels: store.FromPairs(smp.Labels), Value: v})
		}
		out[i] = m
	}
	return out, nil
}

func find[T any](ctx context.Context, coll *mongo.Collection, filter, sort bson.D, limit int) ([]T, error) {
	cur, err := coll.Find(ctx, filter, options.Find().SetSort(sort).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	out := []T{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Counts implements store.Reader, from collection metadata (no scan).
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	for _, x := range []struct {
		coll string
		n    *int64
	}{{collMetrics, &c.Metrics}, {collAnomalies, &c.Anomalies}, {collRCA, &c.RCA}, {collChatSessions, &c.ChatSessions}} {
		n, err := s.db.Collection(x.coll).EstimatedDocumentCount(ctx)
		if err != nil {
			return c, fmt.Errorf("count %s: %w", x.coll, err)
		}
		*x.n = n
	}
	return c, nil
}

// Retain implements store.Store: find the newest document past max (by the
// collection's time field, then _id) and delete it and everything older.
func (s *Store) Retain(ctx context.Context, max int) (int64, error) {
	var total int64
	for _, x := range []struct {
		coll, field string
		keep        bson.D // documents never deleted
	}{
		{collAnomalies, "detected_at", bson.D{{Key: "rca_status", Value: bson.D{{Key: "$ne", Value: store.RCAPending}}}}},
		{collRCA, "created_at", nil},
		{collMetrics, "ts", nil},
	} {
		coll := s.db.Collection(x.coll)
		var cut bson.M
		err := coll.FindOne(ctx, bson.D{}, options.FindOne().SetSort(newestFirst(x.field)).SetSkip(int64(max)).
			SetProjection(bson.D{{Key: x.field, Value: 1}})).Decode(&cut)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("retention on %s: %w", x.coll, err)
		}
		filter := bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: x.field, Value: bson.D{{Key: "$lt", Value: cut[x.field]}}}},
			bson.D{{Key: x.field, Value: cut[x.field]}, {Key: "_id", Value: bson.D{{Key: "$lte", Value: cut["_id"]}}}},
		}}}
		filter = append(filter, x.keep...)
		res, err := coll.DeleteMany(ctx, filter)
		if err != nil {
			return total, fmt.Errorf("retention on %s: %w", x.coll, err)
		}
		total += res.DeletedCount
	}
	// Messages of deleted anomalies, once nothing is left to send: those older
	// than the oldest anomaly kept (an anti-join would scan).
	var oldest anomalyDoc
	err := s.db.Collection(collAnomalies).FindOne(ctx, bson.D{},
		options.FindOne().SetSort(bson.D{{Key: "detected_at", Value: 1}})).Decode(&oldest)
	if err == nil {
		res, err := s.db.Collection(collDeliveries).DeleteMany(ctx, bson.D{
			{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{store.DeliverySent, store.DeliveryFailed}}}},
			{Key: "created_at", Value: bson.D{{Key: "$lt", Value: oldest.DetectedAt}}},
		})
		if err != nil {
			return total, fmt.Errorf("retention on %s: %w", collDeliveries, err)
		}
		total += res.DeletedCount
	} else if !errors.Is(err, mongo.ErrNoDocuments) {
		return total, fmt.Errorf("retention on %s: %w", collDeliveries, err)
	}
	// Claim tokens only matter while a lease can be alive; a day is far beyond any lease.
	if _, err := s.db.Collection(collClaims).DeleteMany(ctx, bson.D{{Key: "claimed_at",
		Value: bson.D{{Key: "$lt", Value: store.UnixNanos(time.Now().Add(-24 * time.Hour))}}}}); err != nil {
		return total, fmt.Errorf("retention on %s: %w", collClaims, err)
	}
	return total, nil
}

type targetDoc struct {
	Name     string `bson:"_id"`
	Endpoint string `bson:"endpoint"`
	Job      string `bson:"job"`
	Enabled  bool   `bson:"enabled"`
}

// ListTargets implements store.Targets.
func (s *Store) ListTargets(ctx context.Context) ([]store.Target, error) {
	docs, err := find[targetDoc](ctx, s.db.Collection(collTargets), bson.D{}, bson.D{{Key: "_id", Value: 1}}, 0)
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	out := make([]store.Target, len(docs))
	for i, d := range docs {
		out[i] = store.Target{Name: d.Name, Endpoint: d.Endpoint, Job: d.Job, Enabled: d.Enabled}
	}
	return out, nil
}

// PutTarget implements store.Targets.
func (s *Store) PutTarget(ctx context.Context, t store.Target) error {
	d := targetDoc{Name: t.Name, Endpoint: t.Endpoint, Job: t.Job, Enabled: t.Enabled}
	if _, err := s.db.Collection(collTargets).ReplaceOne(ctx, bson.D{{Key: "_id", Value: t.Name}}, d,
		options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("put target %s: %w", t.Name, err)
	}
	return nil
}

// DeleteTarget implements store.Targets.
func (s *Store) DeleteTarget(ctx context.Context, name string) error {
	res, err := s.db.Collection(collTargets).DeleteOne(ctx, bson.D{{Key: "_id", Value: name}})
	if err != nil {
		return fmt.Errorf("delete target %s: %w", name, err)
	}
	if res.DeletedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}

type deliveryDoc struct {
	ID            string `bson:"_id"`
	AnomalyID     string `bson:"anomaly_id"`
	Channel       string `bson:"channel"`
	Kind          string `bson:"kind"`
	Status        string `bson:"status"`
	Attempts      int    `bson:"attempts"`
	LastError     string `bson:"last_error"`
	NextAttemptAt int64  `bson:"next_attempt_at"`
	CreatedAt     int64  `bson:"created_at"`
	SentAt        *int64 `bson:"sent_at"`
	Digest        bool   `bson:"digest"`
	ClaimSeq      int    `bson:"claim_seq"`
	LeaseOwner    string `bson:"lease_owner"`
	LeaseUntil    int64  `bson:"lease_until"`
}

func (d deliveryDoc) delivery() store.Delivery {
	out := store.Delivery{
		ID: d.ID, AnomalyID: d.AnomalyID, Channel: d.Channel, Kind: d.Kind, Status: d.Status, Attempts: d.Attempts,
		LastError: d.LastError, NextAttemptAt: store.FromUnixNanos(d.NextAttemptAt), CreatedAt: store.FromUnixNanos(d.CreatedAt),
		Digest: d.Digest, ClaimSeq: d.ClaimSeq, LeaseOwner: d.LeaseOwner,
	}
	if d.LeaseUntil != 0 {
		out.LeaseUntil = store.FromUnixNanos(d.LeaseUntil)
	}
	if d.SentAt != nil {
		t := store.FromUnixNanos(*d.SentAt)
		out.SentAt = &t
	}
	return out
}

func (s *Store) insertDelivery(ctx context.Context, d store.Delivery) error {
	doc := deliveryDoc{ID: d.ID, AnomalyID: d.AnomalyID, Channel: d.Channel, Kind: d.Kind, Status: d.Status,
		NextAttemptAt: store.UnixNanos(d.NextAttemptAt), CreatedAt: store.UnixNanos(d.CreatedAt)}
	if _, err := s.db.Collection(collDeliveries).InsertOne(ctx, doc); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("queue delivery %s: %w", d.ID, err)
	}
	return nil
}

// queueResolved queues the resolved message of every channel that has the
// firing message of anomaly id. It is a separate write from the resolve: a
// crash between the two loses that resolved message (see README).
func (s *Store) queueResolved(ctx context.Context, id string, now time.Time) error {
	firing, err := find[deliveryDoc](ctx, s.db.Collection(collDeliveries),
		bson.D{{Key: "anomaly_id", Value: id}, {Key: "kind", Value: store.StatusFiring}}, bson.D{{Key: "_id", Value: 1}}, 0)
	if err != nil {
		return fmt.Errorf("find messages of %s: %w", id, err)
	}
	for _, f := range firing {
		if err := s.insertDelivery(ctx, store.NewDelivery(id, f.Channel, store.StatusResolved, now)); err != nil {
			return err
		}
	}
	return nil
}

// ClaimDelivery implements store.Deliveries with the same claim tokens as Claim.
func (s *Store) ClaimDelivery(ctx context.Context, owner string, now time.Time, lease time.Duration) (*store.Delivery, error) {
	coll := s.db.Collection(collDeliveries)
	for round := 0; round < 3; round++ {
		candidates, err := find[deliveryDoc](ctx, coll, bson.D{
			{Key: "status", Value: store.DeliveryPending},
			{Key: "next_attempt_at", Value: bson.D{{Key: "$lte", Value: store.UnixNanos(now)}}},
			{Key: "lease_until", Value: bson.D{{Key: "$lt", Value: store.UnixNanos(now)}}},
		}, bson.D{{Key: "next_attempt_at", Value: 1}, {Key: "_id", Value: 1}}, 16)
		if err != nil {
			return nil, fmt.Errorf("find due deliveries: %w", err)
		}
		if len(candidates) == 0 {
			return nil, store.ErrNotFound
		}
		for _, c := range candidates {
			if c.Kind == store.StatusResolved {
				waiting, err := coll.CountDocuments(ctx, bson.D{
					{Key: "_id", Value: store.DeliveryID(c.AnomalyID, c.Channel, store.StatusFiring)},
					{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{store.DeliveryPending, store.DeliveryDigest}}}},
				})
				if err != nil {
					return nil, fmt.Errorf("check firing message of %s: %w", c.ID, err)
				}
				if waiting > 0 {
					continue // the firing message goes first
				}
			}
			seq, err := s.takeToken(ctx, "d:"+c.ID, c.ClaimSeq, owner, now, lease)
			if err != nil {
				return nil, err
			}
			if seq == 0 {
				continue
			}
			res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: c.ID}, {Key: "status", Value: store.DeliveryPending}},
				bson.D{{Key: "$set", Value: bson.D{
					{Key: "lease_owner", Value: owner}, {Key: "lease_until", Value: store.UnixNanos(now.Add(lease))},
					{Key: "claim_seq", Value: seq},
				}}})
			if err != nil {
				return nil, fmt.Errorf("lease delivery %s: %w", c.ID, err)
			}
			if res.MatchedCount == 0 {
				continue
			}
			c.LeaseOwner, c.LeaseUntil, c.ClaimSeq = owner, store.UnixNanos(now.Add(lease)), seq
			d := c.delivery()
			return &d, nil
		}
	}
	return nil, store.ErrNotFound
}

// FinishDelivery implements store.Deliveries.
func (s *Store) FinishDelivery(ctx context.Context, d *store.Delivery) error {
	var sent any
	if d.SentAt != nil {
		sent = store.UnixNanos(*d.SentAt)
	}
	if _, err := s.db.Collection(collDeliveries).UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: d.Status}, {Key: "attempts", Value: d.Attempts}, {Key: "last_error", Value: d.LastError},
		{Key: "next_attempt_at", Value: store.UnixNanos(d.NextAttemptAt)}, {Key: "sent_at", Value: sent},
		{Key: "digest", Value: d.Digest}, {Key: "lease_owner", Value: ""}, {Key: "lease_until", Value: int64(0)},
	}}}); err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	return nil
}

// DueDigests implements store.Deliveries.
func (s *Store) DueDigests(ctx context.Context, channel string, now time.Time) ([]store.Delivery, error) {
	return s.listDeliveries(ctx, bson.D{
		{Key: "channel", Value: channel}, {Key: "status", Value: store.DeliveryDigest},
		{Key: "next_attempt_at", Value: bson.D{{Key: "$lte", Value: store.UnixNanos(now)}}},
	}, bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}})
}

// ListDeliveries implements store.Deliveries.
func (s *Store) ListDeliveries(ctx context.Context, anomalyID string) ([]store.Delivery, error) {
	return s.listDeliveries(ctx, bson.D{{Key: "anomaly_id", Value: anomalyID}},
		bson.D{{Key: "channel", Value: 1}, {Key: "kind", Value: 1}})
}

func (s *Store) listDeliveries(ctx context.Context, filter, sort bson.D) ([]store.Delivery, error) {
	docs, err := find[deliveryDoc](ctx, s.db.Collection(collDeliveries), filter, sort, 0)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out := make([]store.Delivery, len(docs))
	for i, d := range docs {
		out[i] = d.delivery()
	}
	return out, nil
}

type emailConfigDoc struct {
	ID         string   `bson:"_id"`
	Enabled    bool     `bson:"enabled"`
	Recipients []string `bson:"recipients"`
}

// GetEmailConfig implements store.EmailConfigs.
func (s *Store) GetEmailConfig(ctx context.Context) (store.EmailConfig, bool, error) {
	var d emailConfigDoc
	err := s.db.Collection(collEmailConfig).FindOne(ctx, bson.D{{Key: "_id", Value: "default"}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.EmailConfig{Recipients: []string{}}, false, nil
	}
	if err != nil {
		return store.EmailConfig{}, false, fmt.Errorf("read email config: %w", err)
	}
	if d.Recipients == nil {
		d.Recipients = []string{}
	}
	return store.EmailConfig{Enabled: d.Enabled, Recipients: d.Recipients}, true, nil
}

// PutEmailConfig implements store.EmailConfigs.
func (s *Store) PutEmailConfig(ctx context.Context, c store.EmailConfig) error {
	if c.Recipients == nil {
		c.Recipients = []string{}
	}
	d := emailConfigDoc{ID: "default", Enabled: c.Enabled, Recipients: c.Recipients}
	if _, err := s.db.Collection(collEmailConfig).ReplaceOne(ctx, bson.D{{Key: "_id", Value: "default"}}, d,
		options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("save email config: %w", err)
	}
	return nil
}

// FindCachedRCA implements store.Queue.
func (s *Store) FindCachedRCA(ctx context.Context, key string, notBefore time.Time) (*store.RCA, error) {
	if key == "" {
		return nil, store.ErrNotFound
	}
	var d rcaDoc
	err := s.db.Collection(collRCA).FindOne(ctx, bson.D{
		{Key: "cache_key", Value: key}, {Key: "created_at", Value: bson.D{{Key: "$gte", Value: store.UnixNanos(notBefore)}}},
	}, options.FindOne().SetSort(bson.D{{Key: "created_at", Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find cached rca: %w", err)
	}
	r := d.rca()
	return &r, nil
}

type chatTurnDoc struct {
	Role    string `bson:"role"`
	Content string `bson:"content"`
	At      int64  `bson:"at"`
}

type chatSessionDoc struct {
	ID               string        `bson:"_id"`
	CreatedAt        int64         `bson:"created_at"`
	UpdatedAt        int64         `bson:"updated_at"`
	Messages         []chatTurnDoc `bson:"messages"`
	PromptTokens     int           `bson:"prompt_tokens"`
	CompletionTokens int           `bson:"completion_tokens"`
	AnomalyID        string        `bson:"anomaly_id"`
}

// GetChatSession implements store.ChatSessions.
func (s *Store) GetChatSession(ctx context.Context, id string) (*store.ChatSession, error) {
	var d chatSessionDoc
	err := s.db.Collection(collChatSessions).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get chat session %s: %w", id, err)
	}
	cs := &store.ChatSession{ID: d.ID, CreatedAt: store.FromUnixNanos(d.CreatedAt), UpdatedAt: store.FromUnixNanos(d.UpdatedAt),
		PromptTokens: d.PromptTokens, CompletionTokens: d.CompletionTokens, AnomalyID: d.AnomalyID, Messages: []store.ChatTurn{}}
	for _, m := range d.Messages {
		cs.Messages = append(cs.Messages, store.ChatTurn{Role: m.Role, Content: m.Content, At: store.FromUnixNanos(m.At)})
	}
	return cs, nil
}

// PutChatSession implements store.ChatSessions.
func (s *Store) PutChatSession(ctx context.Context, cs *store.ChatSession) error {
	d := chatSessionDoc{ID: cs.ID, CreatedAt: store.UnixNanos(cs.CreatedAt), UpdatedAt: store.UnixNanos(cs.UpdatedAt),
		PromptTokens: cs.PromptTokens, CompletionTokens: cs.CompletionTokens, AnomalyID: cs.AnomalyID, Messages: []chatTurnDoc{}}
	for _, m := range cs.Messages {
		d.Messages = append(d.Messages, chatTurnDoc{Role: m.Role, Content: m.Content, At: store.UnixNanos(m.At)})
	}
	if _, err := s.db.Collection(collChatSessions).ReplaceOne(ctx, bson.D{{Key: "_id", Value: cs.ID}}, d,
		options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("save chat session %s: %w", cs.ID, err)
	}
	return nil
}
