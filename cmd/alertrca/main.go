// Command alertrca receives Alertmanager webhooks, analyses each new alert with
// an LLM and serves the results over a REST API and /metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/alertrca/alertrca/enrich"
	"github.com/alertrca/alertrca/notify"
	"github.com/alertrca/alertrca/receiver"
	"github.com/alertrca/alertrca/rules"
	"github.com/alertrca/alertrca/store"
	"github.com/alertrca/alertrca/store/mongo"
	"github.com/alertrca/alertrca/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "alertrca:", err)
		stop()
		os.Exit(1)
	}
}

const usage = `usage:
  alertrca                        run the service (configuration from the environment and .env)
  alertrca rules [--rules FILE]   print the Prometheus rule file of the rules (default: RULES_FILE or the built-in rules)`

// run dispatches the command line: no argument runs the service.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(environ, ".env")
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return serve(ctx, cfg, stderr)
	}
	switch args[0] {
	case "rules":
		return printRules(cfg, args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// printRules writes the Prometheus rule file generated from the rule definitions.
func printRules(cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	path := fs.String("rules", cfg.RulesFile, "rules file (alertrca format); empty: the built-in rules")
	group := fs.String("group", "alertrca", "name of the rule group")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rs, err := rules.Load(*path, cfg.ZThreshold)
	if err != nil {
		return err
	}
	return rules.WriteRuleFile(stdout, *group, rs, time.Duration(cfg.MonitorInterval)*time.Second)
}

// serve runs the service until ctx ends, then stops it in order.
func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel()}))
	log.Info("starting alertrca", "version", version, "config", cfg)
	ruleSet, err := rules.Load(cfg.RulesFile, cfg.ZThreshold)
	if err != nil {
		return fmt.Errorf("RULES_FILE: %w", err)
	}

	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err)
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var backend enrich.LLM = enrich.NewOllama(cfg.LLMURL, cfg.LLMModel)
	if cfg.LLMAPI == "openai" {
		backend = enrich.NewOpenAI(cfg.LLMURL, cfg.LLMModel, cfg.LLMAPIKey)
	}
	llm := enrich.Instrument(backend, reg)
	var tracer enrich.Tracer = enrich.NoTracer{}
	var langfuse *enrich.Langfuse
	if cfg.LangfusePublicKey != "" {
		langfuse = enrich.NewLangfuse(cfg.LangfuseHost, cfg.LangfusePublicKey, cfg.LangfuseSecretKey, 0, reg, log)
		tracer = langfuse
		log.Info("Langfuse traces on", "host", cfg.LangfuseHost)
	}
	notifiers, err := setupNotifiers(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	deliverer := enrich.NewDeliverer(st, notifiers, enrich.DeliverConfig{
		MaxPerMinute: cfg.NotifyMaxPerMinute, PublicURL: cfg.PublicURL,
	}, nil, reg, log)
	policy := enrich.ChannelPolicy{
		Slack: deliverer.Configured("slack"), Email: deliverer.Configured("email"),
		EmailConfig: st, MinSeverity: cfg.NotifyMinSeverity, Log: log,
	}
	pipeline := enrich.New(st, llm, enrich.Config{
		Concurrency: cfg.LLMConcurrency,
		LLMTimeout:  cfg.LLMTimeout,
		MaxPending:  cfg.QueueMaxPending,
		// A stop waits for in-flight analyses for part of the deadline, then releases them.
		ShutdownGrace: cfg.ShutdownTimeout / 2,
		Evidence:      &enrich.PrometheusEvidence{DefaultURL: cfg.PromURL},
		Channels:      policy.For,
		CacheTTL:      cfg.RCACacheTTL,
		Tracer:        tracer,
	}, reg, log)
	gin.SetMode(gin.ReleaseMode)
	chat := enrich.NewChat(st, llm, enrich.ChatConfig{Timeout: cfg.LLMTimeout}, tracer)
	api := receiver.New(receiver.Deps{
		Submitter: pipeline, Store: st, Notifications: deliverer, Chat: chat,
		Registerer: reg, Gatherer: reg, Logger: log,
	}, receiver.Config{
		Version: version, StoreKind: st.Kind(), WebhookToken: cfg.WebhookToken, APIToken: cfg.APIToken,
		MaxBodyBytes: cfg.WebhookMaxBodyBytes, SlackEnabled: cfg.SlackEnabled,
		SlackConfigured: policy.Slack, SMTPConfigured: policy.Email,
		LangfuseEnabled: langfuse != nil,
	})

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR=%s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // a 10 MiB webhook on a slow link
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("listening", "addr", ln.Addr().String(), "webhook", "POST /webhook/alertmanager", "webhook_auth", cfg.WebhookToken != "")

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers sync.WaitGroup
	workers.Go(func() { _ = pipeline.Run(workCtx) })
	workers.Go(func() { deliverer.Run(workCtx) })
	if langfuse != nil {
		workers.Go(func() { langfuse.Run(workCtx) })
	}
	workers.Go(func() {
		store.RunRetention(workCtx, st, cfg.MaxDocs, time.Minute, log.With("component", "retention"))
	})
	if cfg.PollerEnabled {
		poller := rules.NewPoller(ruleSet, rules.PollerConfig{
			Interval:  time.Duration(cfg.MonitorInterval) * time.Second,
			MaxSeries: cfg.MaxSeries,
		}, rules.PrometheusQuery(), pollTargets(st, cfg.PromURL), pipeline, st, st, nil, reg, log)
		workers.Go(func() { poller.Run(workCtx) })
		log.Info("poller started", "rules", len(ruleSet), "interval", time.Duration(cfg.MonitorInterval)*time.Second)
	}
	go probeDependencies(workCtx, cfg, log)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		log.Info("stopping: signal received", "deadline", cfg.ShutdownTimeout)
	case err := <-serveErr:
		stopWork()
		workers.Wait()
		return fmt.Errorf("HTTP server: %w", err)
	}

	// Ordered stop: no new requests and in-flight webhooks finish storing;
	// then the pipeline finishes or releases its analyses; then the store closes.
	deadline, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(deadline); err != nil {
		log.Warn("HTTP requests still running at the deadline", "err", err)
	}
	stopWork()
	workers.Wait()
	log.Info("stopped")
	return nil
}

func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	if cfg.MongoURI != "" {
		openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		st, err := mongo.Open(openCtx, cfg.MongoURI, cfg.MongoDB)
		if err != nil {
			return nil, fmt.Errorf("MONGO_URI=%s: cannot use MongoDB: %w", redactedMongoURI(cfg.MongoURI), err)
		}
		log.Info("store: MongoDB (write concern majority, journaled)", "uri", redactedMongoURI(cfg.MongoURI), "db", cfg.MongoDB)
		return st, nil
	}
	st, err := sqlite.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR=%s: cannot open the embedded store: %w", cfg.DataDir, err)
	}
	abs, _ := filepath.Abs(st.Path())
	log.Info("store: embedded SQLite (WAL, synchronous=FULL); set MONGO_URI to use MongoDB", "file", abs)
	return st, nil
}

// setupNotifiers builds the configured channels and seeds the email
// recipients from ALERT_EMAILS when the store has no email configuration.
func setupNotifiers(ctx context.Context, cfg Config, st store.Store, log *slog.Logger) ([]notify.Notifier, error) {
	var out []notify.Notifier
	if cfg.SlackEnabled {
		out = append(out, notify.NewSlack(cfg.SlackWebhookURL))
		log.Info("Slack notifications on")
	}
	if cfg.SMTPHost == "" {
		log.Info("email notifications off: SMTP_HOST is not set")
		return out, nil
	}
	out = append(out, &notify.Email{
		Host: cfg.SMTPHost, Port: cfg.SMTPPort, User: cfg.SMTPUser, Password: cfg.SMTPPassword,
		From: cfg.smtpFrom(), TLS: cfg.SMTPTLS,
		Recipients: func(ctx context.Context) ([]string, error) {
			ec, _, err := st.GetEmailConfig(ctx)
			return ec.Recipients, err
		},
	})
	_, saved, err := st.GetEmailConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the email configuration: %w", err)
	}
	if !saved && cfg.AlertEmails != "" {
		if err := st.PutEmailConfig(ctx, store.EmailConfig{Enabled: true, Recipients: cfg.alertEmails()}); err != nil {
			return nil, fmt.Errorf("seed the email configuration from ALERT_EMAILS: %w", err)
		}
		log.Info("email recipients seeded from ALERT_EMAILS", "recipients", len(cfg.alertEmails()))
	}
	log.Info("email notifications available; recipients and the switch: GET/PUT /agent/email-config", "smtp_host", cfg.SMTPHost)
	return out, nil
}

// pollTargets polls the enabled targets of the store, or PROM_URL when there are none.
func pollTargets(st store.Targets, promURL string) rules.TargetsFunc {
	return func(ctx context.Context) ([]rules.Target, error) {
		ts, err := st.ListTargets(ctx)
		if err != nil {
			return nil, err
		}
		var out []rules.Target
		for _, t := range ts {
			if t.Enabled {
				out = append(out, rules.Target{Name: t.Name, Endpoint: t.Endpoint, Job: t.Job})
			}
		}
		if len(out) == 0 {
			out = []rules.Target{{Name: "default", Endpoint: promURL}}
		}
		return out, nil
	}
}

// probeDependencies says once, at start, what alertrca cannot reach. Nothing
// waits for it: alerts are stored without the LLM and analysed by a fallback.
func probeDependencies(ctx context.Context, cfg Config, log *slog.Logger) {
	llmProbe := strings.TrimRight(cfg.LLMURL, "/") + "/api/tags"
	if cfg.LLMAPI == "openai" {
		llmProbe = strings.TrimSuffix(strings.TrimRight(cfg.LLMURL, "/"), "/v1") + "/v1/models"
	}
	if err := probe(ctx, llmProbe, cfg.LLMAPIKey); err != nil {
		log.Warn("LLM not reachable: alerts are still stored and get a fallback analysis until it answers",
			"llm_api", cfg.LLMAPI, "llm_url", cfg.LLMURL, "model", cfg.LLMModel, "err", err)
	} else {
		log.Info("LLM reachable", "llm_url", cfg.LLMURL, "model", cfg.LLMModel)
	}
	if err := probe(ctx, strings.TrimRight(cfg.PromURL, "/")+"/-/ready", ""); err != nil {
		log.Warn("Prometheus not reachable: webhooks still work; the poller and the evidence for analyses wait for it",
			"prom_url", cfg.PromURL, "err", err)
	} else {
		log.Info("Prometheus reachable", "prom_url", cfg.PromURL)
	}
}

// probe GETs url (with a bearer token if set) and expects a 200 within 3 seconds.
func probe(ctx context.Context, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
