// Package enrich is the single pipeline every alert source feeds: idempotent
// ingest into the store, a durable work queue, the LLM root-cause analysis
// with validation, repair and fallback, and the hand-off to notifications.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alertrca/alertrca/store"
)

// ErrQueueFull is returned by Submit when too many anomalies wait for analysis.
var ErrQueueFull = errors.New("work queue is full")

// Store is what the pipeline needs from storage.
type Store interface {
	store.Ingester
	store.Queue
	GetRCA(ctx context.Context, anomalyID string) (*store.RCA, error)
}

// Config tunes the pipeline. Zero values get the defaults noted.
type Config struct {
	Concurrency   int            // workers calling the LLM at once (default 2)
	LLMTimeout    time.Duration  // per LLM call (default 60s)
	Lease         time.Duration  // how long a claim holds (default 2×LLMTimeout+5s: a call, its repair, the store write)
	PollInterval  time.Duration  // how often idle workers look for expired leases (default 2s)
	MaxPending    int64          // Submit refuses new alerts beyond this many pending (default 10000)
	ShutdownGrace time.Duration  // how long Run lets in-flight analyses finish on stop (default 10s)
	Owner         string         // this replica's name in leases (default host-pid-random)
	Evidence      EvidenceSource // metric context for the prompt (optional)
	// CacheTTL: an incident of the same kind as one analysed within CacheTTL
	// reuses that analysis instead of calling the LLM (0: no cache).
	CacheTTL time.Duration
	// Tracer records every LLM call (optional).
	Tracer Tracer
	// Channels lists the notification channels of an anomaly; their messages
	// are queued with its analysis (optional: none).
	Channels func(ctx context.Context, a *store.Anomaly) []string
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	if c.LLMTimeout <= 0 {
		c.LLMTimeout = 60 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 2*c.LLMTimeout + 5*time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Tracer == nil {
		c.Tracer = NoTracer{}
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
}

// defaultOwner names this process in leases: host, pid and a random part.
func defaultOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), store.NewID()[:8])
}

// Pipeline is the single way in for every alert source.
type Pipeline struct {
	store Store
	llm   LLM
	cfg   Config
	m     *Metrics
	log   *slog.Logger
	now   func() time.Time

	wake    chan struct{}
	pending atomic.Int64 // anomalies waiting for analysis, refreshed from the store
}

// New builds a pipeline.
func New(st Store, llm LLM, cfg Config, reg prometheus.Registerer, logger *slog.Logger) *Pipeline {
	cfg.defaults()
	return &Pipeline{
		store: st, llm: llm, cfg: cfg,
		m:    newMetrics(reg),
		log:  logger.With("component", "enrich"),
		now:  time.Now,
		wake: make(chan struct{}, 1),
	}
}

// Submit stores the alerts durably (idempotently, one episode per fingerprint
// and start) and queues new firing ones for analysis. When it returns nil,
// every alert is stored; on error, none should be considered accepted.
func (p *Pipeline) Submit(ctx context.Context, alerts ...store.Alert) (store.SubmitResult, error) {
	res := store.SubmitResult{Received: len(alerts)}
	if len(alerts) == 0 {
		return res, nil
	}
	now := p.now()
	as := make([]*store.Anomaly, len(alerts))
	firing := 0
	for i, a := range alerts {
		as[i] = store.NewAnomaly(a, now)
		if a.Status == store.StatusFiring {
			firing++
		}
	}
	if firing > 0 && p.pending.Load() >= p.cfg.MaxPending {
		p.reject(alerts, "queue_full")
		return res, fmt.Errorf("%w: %d anomalies wait for analysis (limit %d)", ErrQueueFull, p.pending.Load(), p.cfg.MaxPending)
	}
	outcomes, err := p.store.Ingest(ctx, as)
	if err != nil {
		p.reject(alerts, "store_error")
		return res, fmt.Errorf("store alerts: %w", err)
	}
	queued := 0
	for i, o := range outcomes {
		src := as[i].Source
		p.m.received.WithLabelValues(src, o.String()).Inc()
		switch o {
		case store.OutcomeNew:
			res.New++
			queued++
			p.m.stored.WithLabelValues(src).Inc()
		case store.OutcomeRepeat:
			res.Repeats++
			p.m.duplicates.WithLabelValues(src).Inc()
		case store.OutcomeResolved:
			res.Resolved++
		}
	}
	if queued > 0 {
		p.m.queueDepth.Set(float64(p.pending.Add(int64(queued))))
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return res, nil
}

func (p *Pipeline) reject(alerts []store.Alert, reason string) {
	p.m.rejected.WithLabelValues(reason).Inc()
	for _, a := range alerts {
		p.m.received.WithLabelValues(a.Source, "rejected").Inc()
	}
}

// Run analyses queued anomalies until ctx ends. On stop it lets in-flight
// analyses finish for up to ShutdownGrace, then cancels them and releases
// their claims so that the next start (or another replica) picks them up.
func (p *Pipeline) Run(ctx context.Context) error {
	p.refreshDepth(ctx)
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	for range p.cfg.Concurrency {
		wg.Go(func() { p.worker(ctx, work) })
	}
	wg.Go(func() {
		t := time.NewTicker(p.cfg.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.refreshDepth(ctx)
			}
		}
	})
	<-ctx.Done()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownGrace):
		p.log.Warn("analyses still running at shutdown; releasing them for the next start")
		cancelWork()
		<-done
	}
	return nil
}

func (p *Pipeline) refreshDepth(ctx context.Context) {
	n, err := p.store.CountPending(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("cannot count pending anomalies", "err", err)
		}
		return
	}
	p.pending.Store(n)
	p.m.queueDepth.Set(float64(n))
}

// worker claims and analyses anomalies until stop ends; work bounds each analysis.
func (p *Pipeline) worker(stop, work context.Context) {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for stop.Err() == nil {
		a, err := p.store.Claim(stop, p.cfg.Owner, p.now(), p.cfg.Lease)
		if err == nil {
			p.process(work, a)
			continue
		}
		if !errors.Is(err, store.ErrNotFound) && stop.Err() == nil {
			p.log.Warn("cannot claim work; will retry", "err", err)
		}
		select {
		case <-stop.Done():
		case <-p.wake:
		case <-t.C:
		}
	}
}

func (p *Pipeline) process(ctx context.Context, a *store.Anomaly) {
	log := p.log.With("anomaly", a.ID, "alert", a.Name, "attempt", a.Attempts)
	// An earlier run may have stored the RCA and died before marking the anomaly.
	r, err := p.store.GetRCA(ctx, a.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Warn("cannot read stored analysis; the claim will expire and be retried", "err", err)
		return
	}
	if r == nil {
		r = p.analyze(ctx, a)
		if ctx.Err() != nil { // stopped mid-analysis: give the work back
			p.release(a, log)
			return
		}
	}
	// Store the analysis even if a stop arrives now: it is done work.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var channels []string
	if p.cfg.Channels != nil {
		channels = p.cfg.Channels(saveCtx, a)
	}
	if err := p.store.SaveRCA(saveCtx, r, channels); err != nil {
		log.Error("cannot store the analysis; the claim will expire and be retried", "err", err)
		return
	}
	result := store.RCADone
	if r.Fallback {
		result = store.RCAFallback
		p.m.rcaFallback.Inc()
	}
	p.m.rcaStored.WithLabelValues(result).Inc()
	p.m.queueDepth.Set(float64(p.pending.Add(-1)))
	log.Info("analysis stored", "result", result, "latency_ms", r.LatencyMS, "notify", channels)
}

func (p *Pipeline) release(a *store.Anomaly, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.store.Release(ctx, a.ID, p.cfg.Owner); err != nil {
		log.Warn("cannot release claim; it will expire", "err", err)
		return
	}
	log.Info("analysis interrupted by shutdown; released for the next start")
}
