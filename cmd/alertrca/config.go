package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/joho/godotenv"

	"github.com/alertrca/alertrca/enrich"
)

// Config is read from the environment and, if present, a .env file in the
// working directory; a variable set in the real environment wins over .env.
// Each field's "allowed" tag is what the error message says is allowed.
type Config struct {
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8000" allowed:"a listen address host:port, e.g. :8000 or 127.0.0.1:8000"`
	PromURL    string `env:"PROM_URL" envDefault:"http://localhost:9090" allowed:"an http(s) URL of a Prometheus server"`
	MongoURI   string `env:"MONGO_URI" secret:"true" allowed:"empty (embedded SQLite store) or a mongodb:// or mongodb+srv:// URI"`
	MongoDB    string `env:"MONGO_DB" envDefault:"observability" allowed:"a MongoDB database name: 1 to 63 characters, none of /\\. \"$"`
	DataDir    string `env:"DATA_DIR" envDefault:"./data" allowed:"a directory for the embedded store"`

	LLMAPI         string        `env:"LLM_API" envDefault:"ollama" allowed:"ollama or openai"`
	LLMURL         string        `env:"LLM_URL" envDefault:"http://localhost:11434" allowed:"an http(s) URL of the LLM server"`
	LLMAPIKey      string        `env:"LLM_API_KEY" secret:"true" allowed:"any string (sent as a bearer token)"`
	LLMModel       string        `env:"LLM_MODEL" envDefault:"llama3.2" allowed:"a model name"`
	LLMTimeout     time.Duration `env:"LLM_TIMEOUT" envDefault:"60s" allowed:"a duration from 1s to 10m, e.g. 60s or 2m"`
	LLMConcurrency int           `env:"LLM_CONCURRENCY" envDefault:"2" allowed:"a whole number from 1 to 64"`
	RCACacheTTL    time.Duration `env:"RCA_CACHE_TTL" envDefault:"1h" allowed:"a duration from 0 (no cache) to 720h"`

	MonitorInterval int     `env:"MONITOR_INTERVAL" envDefault:"30" allowed:"a whole number of seconds from 1 to 86400"`
	ZThreshold      float64 `env:"Z_THRESHOLD" envDefault:"3.0" allowed:"a number greater than 0, e.g. 3.0"`
	MaxDocs         int     `env:"MAX_DOCS" envDefault:"10000" allowed:"a whole number from 1 to 100000000"`
	RulesFile       string  `env:"RULES_FILE" allowed:"a path to an alertrca rules file; empty for the built-in rules"`
	PollerEnabled   bool    `env:"POLLER_ENABLED" envDefault:"true" allowed:"true or false"`
	MaxSeries       int     `env:"MAX_TRACKED_SERIES" envDefault:"1000000" allowed:"a whole number from 1 to 100000000"`

	WebhookToken        string        `env:"WEBHOOK_TOKEN" secret:"true" allowed:"any string; empty leaves the webhook open"`
	APIToken            string        `env:"API_TOKEN" secret:"true" allowed:"any string"`
	WebhookMaxBodyBytes int64         `env:"WEBHOOK_MAX_BODY_BYTES" envDefault:"10485760" allowed:"a whole number of bytes from 1024 to 1073741824"`
	QueueMaxPending     int64         `env:"QUEUE_MAX_PENDING" envDefault:"10000" allowed:"a whole number from 1 to 100000000"`
	ShutdownTimeout     time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s" allowed:"a duration from 1s to 10m"`
	LogLevel            string        `env:"LOG_LEVEL" envDefault:"info" allowed:"debug, info, warn or error"`

	// Notifications.
	SMTPHost           string `env:"SMTP_HOST" allowed:"a host name; empty turns email off"`
	SMTPPort           int    `env:"SMTP_PORT" envDefault:"587" allowed:"a port from 1 to 65535"`
	SMTPUser           string `env:"SMTP_USER" allowed:"a user name"`
	SMTPPassword       string `env:"SMTP_PASSWORD" secret:"true" allowed:"any string"`
	SMTPFrom           string `env:"SMTP_FROM" allowed:"an email address (default SMTP_USER); needed with SMTP_HOST"`
	SMTPTLS            string `env:"SMTP_TLS" envDefault:"starttls" allowed:"starttls, tls or none"`
	AlertEmails        string `env:"ALERT_EMAILS" allowed:"comma-separated email addresses"`
	SlackEnabled       bool   `env:"SLACK_ENABLED" envDefault:"false" allowed:"true or false"`
	SlackWebhookURL    string `env:"SLACK_WEBHOOK_URL" secret:"true" allowed:"an https URL of a Slack incoming webhook, set when SLACK_ENABLED=true"`
	NotifyMaxPerMinute int    `env:"NOTIFY_MAX_PER_MINUTE" envDefault:"20" allowed:"a whole number from 1 to 10000"`
	NotifyMinSeverity  string `env:"NOTIFY_MIN_SEVERITY" allowed:"empty (all) or one of info, warning, high, critical (and their usual synonyms)"`
	PublicURL          string `env:"PUBLIC_URL" allowed:"empty or the http(s) URL where alertrca is reached, for links in messages"`
	LangfusePublicKey  string `env:"LANGFUSE_PUBLIC_KEY" allowed:"set together with LANGFUSE_SECRET_KEY (both or neither)"`
	LangfuseSecretKey  string `env:"LANGFUSE_SECRET_KEY" secret:"true" allowed:"a Langfuse secret key"`
	LangfuseHost       string `env:"LANGFUSE_HOST" envDefault:"https://cloud.langfuse.com" allowed:"an http(s) URL"`
}

// loadConfig reads .env (if dotenvPath exists) under environ, then parses and
// validates. The error is one line naming the variable and what is allowed.
func loadConfig(environ []string, dotenvPath string) (Config, error) {
	vars := map[string]string{}
	if _, err := os.Stat(dotenvPath); err == nil {
		fileVars, err := godotenv.Read(dotenvPath)
		if err != nil {
			return Config{}, fmt.Errorf("read %s: %w", dotenvPath, err)
		}
		vars = fileVars
	}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) && len(agg.Errors) > 0 {
			err = agg.Errors[0]
		}
		var pe env.ParseError
		if errors.As(err, &pe) {
			return c, invalid(pe.Name, vars)
		}
		return c, fmt.Errorf("invalid configuration: %w", err)
	}
	return c, c.validate(vars)
}

// invalid builds the error for the Config field named field.
func invalid(field string, vars map[string]string) error {
	f, _ := reflect.TypeOf(Config{}).FieldByName(field)
	name := f.Tag.Get("env")
	val := strconv.Quote(vars[name])
	if f.Tag.Get("secret") == "true" {
		val = "<secret>"
	}
	return fmt.Errorf("invalid configuration: %s=%s: must be %s", name, val, f.Tag.Get("allowed"))
}

func (c Config) validate(vars map[string]string) error {
	checks := []struct {
		field string
		ok    bool
	}{
		{"ListenAddr", validListenAddr(c.ListenAddr)},
		{"PromURL", validHTTPURL(c.PromURL)},
		{"MongoURI", c.MongoURI == "" || validMongoURI(c.MongoURI)},
		{"MongoDB", c.MongoDB != "" && len(c.MongoDB) < 64 && !strings.ContainsAny(c.MongoDB, "/\\. \"$")},
		{"DataDir", c.DataDir != ""},
		{"LLMAPI", c.LLMAPI == "ollama" || c.LLMAPI == "openai"},
		{"LLMURL", validHTTPURL(c.LLMURL)},
		{"LLMModel", strings.TrimSpace(c.LLMModel) != ""},
		{"LLMTimeout", c.LLMTimeout >= time.Second && c.LLMTimeout <= 10*time.Minute},
		{"LLMConcurrency", c.LLMConcurrency >= 1 && c.LLMConcurrency <= 64},
		{"RCACacheTTL", c.RCACacheTTL >= 0 && c.RCACacheTTL <= 720*time.Hour},
		{"MonitorInterval", c.MonitorInterval >= 1 && c.MonitorInterval <= 86400},
		{"ZThreshold", c.ZThreshold > 0 && c.ZThreshold < 1e9},
		{"MaxDocs", c.MaxDocs >= 1 && c.MaxDocs <= 100_000_000},
		{"MaxSeries", c.MaxSeries >= 1 && c.MaxSeries <= 100_000_000},
		{"WebhookMaxBodyBytes", c.WebhookMaxBodyBytes >= 1024 && c.WebhookMaxBodyBytes <= 1<<30},
		{"QueueMaxPending", c.QueueMaxPending >= 1 && c.QueueMaxPending <= 100_000_000},
		{"ShutdownTimeout", c.ShutdownTimeout >= time.Second && c.ShutdownTimeout <= 10*time.Minute},
		{"LogLevel", c.LogLevel == "debug" || c.LogLevel == "info" || c.LogLevel == "warn" || c.LogLevel == "error"},
		{"SMTPPort", c.SMTPPort >= 1 && c.SMTPPort <= 65535},
		{"SMTPTLS", c.SMTPTLS == "starttls" || c.SMTPTLS == "tls" || c.SMTPTLS == "none"},
		{"SMTPFrom", c.SMTPHost == "" || validAddress(c.smtpFrom())},
		{"AlertEmails", validAddressList(c.AlertEmails)},
		{"SlackWebhookURL", c.SlackWebhookURL == "" && !c.SlackEnabled || validHTTPURL(c.SlackWebhookURL)},
		{"NotifyMaxPerMinute", c.NotifyMaxPerMinute >= 1 && c.NotifyMaxPerMinute <= 10000},
		{"NotifyMinSeverity", enrich.ValidSeverity(c.NotifyMinSeverity)},
		{"PublicURL", c.PublicURL == "" || validHTTPURL(c.PublicURL)},
		{"LangfuseHost", validHTTPURL(c.LangfuseHost)},
		{"LangfusePublicKey", (c.LangfusePublicKey == "") == (c.LangfuseSecretKey == "")},
	}
	for _, ch := range checks {
		if !ch.ok {
			return invalid(ch.field, vars)
		}
	}
	return nil
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// smtpFrom is SMTP_FROM, else SMTP_USER.
func (c Config) smtpFrom() string {
	if c.SMTPFrom != "" {
		return c.SMTPFrom
	}
	return c.SMTPUser
}

func validAddress(s string) bool {
	_, err := mail.ParseAddress(s)
	return err == nil
}

// alertEmails splits ALERT_EMAILS.
func (c Config) alertEmails() []string {
	var out []string
	for _, a := range strings.Split(c.AlertEmails, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func validAddressList(s string) bool {
	for _, a := range (Config{AlertEmails: s}).alertEmails() {
		if !validAddress(a) {
			return false
		}
	}
	return true
}

func validMongoURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "mongodb" || u.Scheme == "mongodb+srv") && u.Host != ""
}

func validListenAddr(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// redactedMongoURI hides the password of a MongoDB URI for logs.
func redactedMongoURI(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable>"
	}
	return u.Redacted()
}

// LogValue implements slog.LogValuer: every field, secrets as <secret>.
func (c Config) LogValue() slog.Value {
	v := reflect.ValueOf(c)
	t := v.Type()
	var attrs []slog.Attr
	for i := range t.NumField() {
		f := t.Field(i)
		val := fmt.Sprint(v.Field(i).Interface())
		switch {
		case f.Name == "MongoURI" && val != "":
			val = redactedMongoURI(val)
		case f.Tag.Get("secret") == "true" && val != "":
			val = "<secret>"
		}
		attrs = append(attrs, slog.String(f.Tag.Get("env"), val))
	}
	return slog.GroupValue(attrs...)
}

func (c Config) logLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel)) // validated
	return l
}
