// Package receiver is alertrca's HTTP surface: the Alertmanager webhook, the
// REST API read by Grafana panels and curl, health checks and /metrics.
package receiver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/alertrca/alertrca/store"
)

// Submitter takes alerts into the pipeline; nil error means stored.
type Submitter interface {
	Submit(ctx context.Context, alerts ...store.Alert) (store.SubmitResult, error)
}

// Store is what the API reads and edits.
type Store interface {
	store.Reader
	store.Targets
	store.EmailConfigs
	ListDeliveries(ctx context.Context, anomalyID string) ([]store.Delivery, error)
}

// Config is what the HTTP surface needs to know.
type Config struct {
	Version         string
	StoreKind       string // "embedded" or "mongodb"
	WebhookToken    string // empty: the webhook is open
	APIToken        string // empty: writing endpoints are off
	MaxBodyBytes    int64  // webhook body limit (default 10 MiB)
	SlackEnabled    bool   // SLACK_ENABLED
	SlackConfigured bool   // SLACK_ENABLED and SLACK_WEBHOOK_URL
	SMTPConfigured  bool   // SMTP_HOST
	LangfuseEnabled bool
}

// Deps are the parts the HTTP surface talks to.
type Deps struct {
	Submitter     Submitter
	Store         Store
	Notifications Notifications
	Chat          Chatter
	Registerer    prometheus.Registerer // for the HTTP metrics
	Gatherer      prometheus.Gatherer   // served at /metrics
	Logger        *slog.Logger
}

// Server holds the handlers' dependencies.
type Server struct {
	sub      Submitter
	reads    Store
	notes    Notifications
	chatter  Chatter
	cfg      Config
	log      *slog.Logger
	gatherer prometheus.Gatherer
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds the server.
func New(d Deps, cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	s := &Server{
		sub: d.Submitter, reads: d.Store, notes: d.Notifications, chatter: d.Chat, cfg: cfg, gatherer: d.Gatherer,
		log: d.Logger.With("component", "receiver"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertrca_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "alertrca_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "code"}),
	}
	d.Registerer.MustRegister(s.requests, s.latency)
	return s
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	r := gin.New()
	r.Use(gin.Recovery(), s.instrument)
	r.POST("/webhook/alertmanager", s.webhook)
	r.GET("/", s.root)
	r.GET("/stats", s.stats)
	r.GET("/anomalies", s.anomalies)
	r.GET("/anomalies/:id", s.anomaly)
	r.GET("/rca", s.rcas)
	r.GET("/prom-metrics", s.promMetrics)
	r.GET("/targets", s.listTargets)
	r.PUT("/targets/:name", s.requireAPIToken, s.putTarget)
	r.DELETE("/targets/:name", s.requireAPIToken, s.deleteTarget)
	r.GET("/agent/email-config", s.getEmailConfig)
	r.PUT("/agent/email-config", s.requireAPIToken, s.putEmailConfig)
	r.POST("/agent/test-email", s.requireAPIToken, s.testChannel("email",
		func() bool { return s.cfg.SMTPConfigured }, "set SMTP_HOST (and SMTP_USER, SMTP_PASSWORD, SMTP_FROM) and PUT /agent/email-config"))
	r.GET("/agent/slack-status", s.slackStatus)
	r.POST("/api/chat", s.chatAuth, s.chat)
	r.GET("/api/chat/:session_id", s.chatAuth, s.chatSession)
	r.POST("/agent/test-slack", s.requireAPIToken, s.testChannel("slack",
		func() bool { return s.cfg.SlackConfigured }, "set SLACK_ENABLED=true and SLACK_WEBHOOK_URL"))
	r.GET("/-/healthy", func(c *gin.Context) { c.String(http.StatusOK, "OK\n") })
	r.GET("/-/ready", s.ready)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})))
	r.NoRoute(func(c *gin.Context) { fail(c, http.StatusNotFound, "no such endpoint: "+c.Request.URL.Path) })
	return r
}

func (s *Server) instrument(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	code := strconv.Itoa(c.Writer.Status())
	s.requests.WithLabelValues(route, c.Request.Method, code).Inc()
	s.latency.WithLabelValues(route, c.Request.Method, code).Observe(time.Since(start).Seconds())
}

func fail(c *gin.Context, code int, msg string) {
	c.AbortWithStatusJSON(code, gin.H{"error": msg})
}

// storeFailed answers a read whose store call failed.
func (s *Server) storeFailed(c *gin.Context, err error) {
	s.log.Error("store read failed", "path", c.Request.URL.Path, "err", err)
	c.Header("Retry-After", "10")
	fail(c, http.StatusServiceUnavailable, "store unavailable")
}

func (s *Server) root(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{
		"service": "alertrca", "version": s.cfg.Version, "status": "ok", "store": s.cfg.StoreKind,
		"slack_enabled": s.cfg.SlackEnabled, "langfuse_enabled": s.cfg.LangfuseEnabled,
	})
}

func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.reads.Ping(ctx); err != nil {
		s.log.Warn("not ready: store unreachable", "err", err)
		c.String(http.StatusServiceUnavailable, "store unreachable\n")
		return
	}
	c.String(http.StatusOK, "OK\n")
}

func (s *Server) stats(c *gin.Context) {
	n, err := s.reads.Counts(c.Request.Context())
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, n)
}

// limit parses ?limit= (default def, 1..1000).
func limit(c *gin.Context, def int) (int, bool) {
	v := c.Query("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		fail(c, http.StatusBadRequest, "limit must be a whole number from 1 to 1000")
		return 0, false
	}
	return n, true
}

func oneOf(c *gin.Context, name string, allowed ...string) (string, bool) {
	v := c.Query(name)
	if v == "" {
		return "", true
	}
	for _, a := range allowed {
		if v == a {
			return v, true
		}
	}
	fail(c, http.StatusBadRequest, name+" must be one of "+joinQuoted(allowed))
	return "", false
}

func joinQuoted(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(s)
	}
	return out
}

func (s *Server) anomalies(c *gin.Context) {
	n, ok := limit(c, 20)
	if !ok {
		return
	}
	status, ok := oneOf(c, "status", store.StatusFiring, store.StatusResolved)
	if !ok {
		return
	}
	source, ok := oneOf(c, "source", store.SourceAlertmanager, store.SourcePoller)
	if !ok {
		return
	}
	list, err := s.reads.ListAnomalies(c.Request.Context(), store.AnomalyFilter{
		Status: status, Severity: c.Query("severity"), Source: source, Limit: n,
	})
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

type anomalyWithRCA struct {
	store.Anomaly
	RCA        *store.RCA       `json:"rca"`
	Deliveries []store.Delivery `json:"deliveries"`
}

func (s *Server) anomaly(c *gin.Context) {
	a, err := s.reads.GetAnomaly(c.Request.Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "no anomaly with id "+strconv.Quote(c.Param("id")))
		return
	}
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	r, err := s.reads.GetRCA(c.Request.Context(), a.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.storeFailed(c, err)
		return
	}
	ds, err := s.reads.ListDeliveries(c.Request.Context(), a.ID)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, anomalyWithRCA{Anomaly: *a, RCA: r, Deliveries: ds})
}

func (s *Server) rcas(c *gin.Context) {
	n, ok := limit(c, 20)
	if !ok {
		return
	}
	list, err := s.reads.ListRCA(c.Request.Context(), n)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (s *Server) promMetrics(c *gin.Context) {
	n, ok := limit(c, 10)
	if !ok {
		return
	}
	list, err := s.reads.ListMetrics(c.Request.Context(), n)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}
