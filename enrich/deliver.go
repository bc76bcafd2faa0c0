package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/notify"
	"github.com/alertrca/alertrca/store"
)

// IncidentReader reads an incident and its analysis.
type IncidentReader interface {
	GetAnomaly(ctx context.Context, id string) (*store.Anomaly, error)
	GetRCA(ctx context.Context, anomalyID string) (*store.RCA, error)
}

// DeliveryStore is what the deliverer needs from storage.
type DeliveryStore interface {
	store.Deliveries
	IncidentReader
}

// DeliverConfig tunes the deliverer. Zero values get the defaults noted.
type DeliverConfig struct {
	Workers      int           // messages sent at once (default 2)
	Lease        time.Duration // claim of one delivery (default 2m)
	PollInterval time.Duration // how often idle workers look for due messages (default 2s)
	SendTimeout  time.Duration // one attempt (default 30s)
	MaxAttempts  int           // then the delivery fails for good (default 12, about an hour with the default backoff)
	MaxPerMinute int           // per channel; more messages in a minute go into one digest (default 20)
	PublicURL    string        // alertrca's URL, for links to incidents (optional)
	Backoff      notify.Backoff
	Owner        string
}

// Deliverer sends queued notifications: each incident's firing message and
// resolved message once per channel, retried with backoff, through storms as
// a per-minute digest.
type Deliverer struct {
	st        DeliveryStore
	notifiers map[string]notify.Notifier
	cfg       DeliverConfig
	log       *slog.Logger
	now       func() time.Time
	m         *deliverMetrics
	wake      chan struct{}

	mu     sync.Mutex
	minute time.Time      // the minute counted
	sent   map[string]int // messages sent per channel in that minute
}

// NewDeliverer builds a deliverer for the given channels (by Name()). now may be nil.
func NewDeliverer(st DeliveryStore, notifiers []notify.Notifier, cfg DeliverConfig, now func() time.Time,
	reg prometheus.Registerer, logger *slog.Logger) *Deliverer {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 12
	}
	if cfg.MaxPerMinute <= 0 {
		cfg.MaxPerMinute = 20
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultOwner()
	}
	if now == nil {
		now = time.Now
	}
	byName := map[string]notify.Notifier{}
	for _, n := range notifiers {
		byName[n.Name()] = n
	}
	return &Deliverer{
		st: st, notifiers: byName, cfg: cfg, now: now, m: newDeliverMetrics(reg),
		log: logger.With("component", "notify"), wake: make(chan struct{}, 1), sent: map[string]int{},
	}
}

// Run sends due messages until ctx ends.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() { d.worker(ctx) })
	}
	wg.Go(func() {
		t := time.NewTicker(d.cfg.PollInterval)
		defer t.Stop()
		for {
			d.SendDigests(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Wait()
}

func (d *Deliverer) worker(ctx context.Context) {
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for ctx.Err() == nil {
		if d.SendOne(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-t.C:
		}
	}
}

// SendOne claims one due message and sends it (or holds it for a digest).
// It reports whether there was one.
func (d *Deliverer) SendOne(ctx context.Context) bool {
	dl, err := d.st.ClaimDelivery(ctx, d.cfg.Owner, d.now(), d.cfg.Lease)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			d.log.Warn("cannot claim a message; will retry", "err", err)
		}
		return false
	}
	log := d.log.With("delivery", dl.ID)
	now := d.now()
	if !d.allow(dl.Channel, now) {
		// Storm: hold it for the digest sent when the next minute starts.
		dl.Status, dl.NextAttemptAt = store.DeliveryDigest, now.Truncate(time.Minute).Add(time.Minute)
		d.finish(ctx, dl, log)
		d.m.notifications.WithLabelValues(dl.Channel, "digested").Inc()
		return true
	}
	msg, err := d.message(ctx, dl.AnomalyID, dl.Kind)
	if err != nil {
		dl.Status, dl.LastError = store.DeliveryFailed, err.Error()
		d.finish(ctx, dl, log)
		return true
	}
	d.attempt(ctx, dl, msg, log)
	return true
}

// attempt sends msg for dl and records the outcome.
func (d *Deliverer) attempt(ctx context.Context, dl *store.Delivery, msg notify.Message, log *slog.Logger) {
	n := d.notifiers[dl.Channel]
	dl.Attempts++
	d.m.attempts.WithLabelValues(dl.Channel).Inc()
	if n == nil {
		dl.Status, dl.LastError = store.DeliveryFailed, "channel "+dl.Channel+" is not configured any more"
		d.finish(ctx, dl, log)
		d.m.notifications.WithLabelValues(dl.Channel, "failed").Inc()
		return
	}
	sendCtx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	retry, err := n.Notify(sendCtx, msg)
	cancel()
	now := d.now()
	switch {
	case err == nil:
		dl.Status, dl.SentAt, dl.LastError = store.DeliverySent, &now, ""
		d.m.notifications.WithLabelValues(dl.Channel, "sent").Inc()
		d.m.latency.WithLabelValues(dl.Channel).Observe(now.Sub(dl.CreatedAt).Seconds())
	case retry && dl.Attempts < d.cfg.MaxAttempts:
		dl.Status, dl.LastError = store.DeliveryPending, err.Error()
		dl.NextAttemptAt = now.Add(d.cfg.Backoff.Delay(dl.Attempts, err))
		d.m.notifications.WithLabelValues(dl.Channel, "retried").Inc()
		log.Warn("message not sent; will retry", "attempt", dl.Attempts, "next", dl.NextAttemptAt, "err", err)
	default:
		dl.Status, dl.LastError = store.DeliveryFailed, err.Error()
		d.m.notifications.WithLabelValues(dl.Channel, "failed").Inc()
		log.Error("message failed for good", "attempts", dl.Attempts, "err", err)
	}
	d.finish(ctx, dl, log)
}

// finish records dl. A stop does not prevent recording a send that happened.
func (d *Deliverer) finish(ctx context.Context, dl *store.Delivery, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.st.FinishDelivery(rctx, dl); err != nil {
		log.Error("cannot record the message's outcome; its claim will expire and it may be sent again", "err", err)
	}
}

// allow counts a message of channel in the minute of now, unless the
// channel already sent MaxPerMinute in it.
func (d *Deliverer) allow(channel string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m := now.Truncate(time.Minute); !m.Equal(d.minute) {
		d.minute, d.sent = m, map[string]int{}
	}
	if d.sent[channel] >= d.cfg.MaxPerMinute {
		return false
	}
	d.sent[channel]++
	return true
}

// SendDigests sends, per channel, one message for all deliveries held for a
// digest whose minute has passed.
func (d *Deliverer) SendDigests(ctx context.Context) {
	for name, n := range d.notifiers {
		due, err := d.st.DueDigests(ctx, name, d.now())
		if err != nil || len(due) == 0 {
			if err != nil && ctx.Err() == nil {
				d.log.Warn("cannot list held messages", "channel", name, "err", err)
			}
			continue
		}
		digest := notify.Message{Kind: notify.KindDigest}
		for _, dl := range due {
			m, err := d.message(ctx, dl.AnomalyID, dl.Kind)
			if err != nil {
				m = notify.Message{Name: dl.AnomalyID, Summary: err.Error()}
			}
			digest.Digest = append(digest.Digest, m)
		}
		sendCtx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
		retry, err := n.Notify(sendCtx, digest)
		cancel()
		now := d.now()
		for i := range due {
			dl := &due[i]
			dl.Attempts++
			switch {
			case err == nil:
				dl.Status, dl.SentAt, dl.Digest, dl.LastError = store.DeliverySent, &now, true, ""
			case retry && dl.Attempts < d.cfg.MaxAttempts:
				dl.LastError, dl.NextAttemptAt = err.Error(), now.Add(d.cfg.Backoff.Delay(dl.Attempts, err))
			default:
				dl.Status, dl.LastError = store.DeliveryFailed, err.Error()
			}
			d.finish(ctx, dl, d.log)
		}
		if err == nil {
			d.m.digests.WithLabelValues(name).Inc()
			d.log.Info("digest sent", "channel", name, "incidents", len(due))
		} else {
			d.log.Warn("digest not sent", "channel", name, "incidents", len(due), "err", err)
		}
	}
}

// message renders the incident of anomalyID for a channel.
func (d *Deliverer) message(ctx context.Context, anomalyID, kind string) (notify.Message, error) {
	a, err := d.st.GetAnomaly(ctx, anomalyID)
	if err != nil {
		return notify.Message{}, fmt.Errorf("read anomaly %s: %w", anomalyID, err)
	}
	m := notify.Message{
		Kind: notify.KindFiring, Name: a.Name, Severity: a.Severity, Status: a.Status,
		Instance: a.Labels["instance"], Job: a.Labels["job"], Labels: a.Labels,
		StartsAt: a.StartsAt, GeneratorURL: a.GeneratorURL,
	}
	if kind == store.StatusResolved {
		m.Kind = notify.KindResolved
		if a.EndsAt != nil {
			m.EndsAt = *a.EndsAt
		}
	}
	if d.cfg.PublicURL != "" {
		m.Link = strings.TrimRight(d.cfg.PublicURL, "/") + "/anomalies/" + a.ID
	}
	r, err := d.st.GetRCA(ctx, anomalyID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return notify.Message{}, fmt.Errorf("read analysis of %s: %w", anomalyID, err)
	}
	if r != nil {
		m.Summary, m.Simplified, m.Cause, m.Fix, m.Fallback = r.Summary, r.Simplified, r.Cause, r.Fix, r.Fallback
	}
	return m, nil
}

// Test sends a test message on channel now and returns the channel's error.
func (d *Deliverer) Test(ctx context.Context, channel string) error {
	n := d.notifiers[channel]
	if n == nil {
		return fmt.Errorf("%s is not configured", channel)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	defer cancel()
	_, err := n.Notify(ctx, notify.Message{
		Kind: notify.KindTest, Name: "alertrca test message", Severity: "info", Status: "test",
		StartsAt: d.now(), Summary: "If you read this, alertrca can notify you here.",
	})
	return err
}

// Configured tells whether channel has a notifier.
func (d *Deliverer) Configured(channel string) bool { return d.notifiers[channel] != nil }

type deliverMetrics struct {
	notifications *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	digests       *prometheus.CounterVec
}

func newDeliverMetrics(reg prometheus.Registerer) *deliverMetrics {
	m := &deliverMetrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_notifications_total",
			Help: "Notification outcomes by channel (sent, retried, failed, digested).",
		}, []string{"channel", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_delivery_attempts_total", Help: "Attempts to send a message, by channel.",
		}, []string{"channel"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "alertrca_delivery_latency_seconds", Help: "From the analysis stored (message queued) to the message sent, by channel.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"channel"}),
		digests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_digests_total", Help: "Digest messages sent during storms, by channel.",
		}, []string{"channel"}),
	}
	reg.MustRegister(m.notifications, m.attempts, m.latency, m.digests)
	return m
}
