package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, filepath.Join(t.TempDir(), "none.env"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8000" || c.PromURL != "http://localhost:9090" || c.MongoURI != "" || c.MongoDB != "observability" ||
		c.DataDir != "./data" || c.LLMURL != "http://localhost:11434" || c.LLMModel != "llama3.2" || c.LLMTimeout != time.Minute ||
		c.LLMConcurrency != 2 || c.MonitorInterval != 30 || c.ZThreshold != 3.0 || c.MaxDocs != 10000 || c.SMTPPort != 587 ||
		c.WebhookMaxBodyBytes != 10<<20 || c.LangfuseHost != "https://cloud.langfuse.com" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigBadValues(t *testing.T) {
	cases := []struct{ env, want string }{
		{"MONITOR_INTERVAL=abc", `MONITOR_INTERVAL="abc": must be a whole number of seconds from 1 to 86400`},
		{"MONITOR_INTERVAL=0", `MONITOR_INTERVAL="0": must be a whole number of seconds`},
		{"Z_THRESHOLD=-1", `Z_THRESHOLD="-1": must be a number greater than 0`},
		{"Z_THRESHOLD=lots", `Z_THRESHOLD="lots": must be a number greater than 0`},
		{"MONGO_URI=notaurl", `MONGO_URI=<secret>: must be empty (embedded SQLite store) or a mongodb:// or mongodb+srv:// URI`},
		{"MONGO_URI=http://db:27017", `MONGO_URI=<secret>: must be empty`},
		{"LLM_TIMEOUT=soon", `LLM_TIMEOUT="soon": must be a duration from 1s to 10m`},
		{"LLM_TIMEOUT=1ms", `LLM_TIMEOUT="1ms": must be a duration`},
		{"LLM_CONCURRENCY=0", `LLM_CONCURRENCY="0": must be a whole number from 1 to 64`},
		{"MAX_DOCS=-5", `MAX_DOCS="-5": must be a whole number`},
		{"PROM_URL=localhost:9090", `PROM_URL="localhost:9090": must be an http(s) URL`},
		{"LLM_URL=ftp://x", `LLM_URL="ftp://x": must be an http(s) URL`},
		{"LISTEN_ADDR=8000", `LISTEN_ADDR="8000": must be a listen address`},
		{"SMTP_PORT=70000", `SMTP_PORT="70000": must be a port from 1 to 65535`},
		{"SLACK_ENABLED=maybe", `SLACK_ENABLED="maybe": must be true or false`},
		{"LOG_LEVEL=loud", `LOG_LEVEL="loud": must be debug, info, warn or error`},
		{"MONGO_DB=a.b", `MONGO_DB="a.b": must be a MongoDB database name`},
		{"WEBHOOK_MAX_BODY_BYTES=10", `WEBHOOK_MAX_BODY_BYTES="10": must be a whole number of bytes`},
		{"SMTP_TLS=ssl", `SMTP_TLS="ssl": must be starttls, tls or none`},
		{"SMTP_HOST=mail.example.com", `SMTP_FROM="": must be an email address (default SMTP_USER); needed with SMTP_HOST`},
		{"ALERT_EMAILS=a@example.com,nope", `ALERT_EMAILS="a@example.com,nope": must be comma-separated email addresses`},
		{"SLACK_ENABLED=true", `SLACK_WEBHOOK_URL=<secret>: must be an https URL of a Slack incoming webhook, set when SLACK_ENABLED=true`},
		{"NOTIFY_MIN_SEVERITY=loud", `NOTIFY_MIN_SEVERITY="loud": must be empty (all) or one of`},
		{"NOTIFY_MAX_PER_MINUTE=0", `NOTIFY_MAX_PER_MINUTE="0": must be a whole number from 1 to 10000`},
		{"PUBLIC_URL=alertrca:8000", `PUBLIC_URL="alertrca:8000": must be empty or the http(s) URL`},
		{"LANGFUSE_PUBLIC_KEY=pk-lf-1", `LANGFUSE_PUBLIC_KEY="pk-lf-1": must be set together with LANGFUSE_SECRET_KEY`},
		{"LLM_API=anthropic", `LLM_API="anthropic": must be ollama or openai`},
		{"RCA_CACHE_TTL=-1s", `RCA_CACHE_TTL="-1s": must be a duration from 0 (no cache) to 720h`},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			_, err := loadConfig([]string{tc.env}, filepath.Join(t.TempDir(), "none.env"))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigDotEnvUnderRealEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("LLM_MODEL=from-file\nMAX_DOCS=50\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"MAX_DOCS=70"}, path)
	if err != nil {
		t.Fatal(err)
	}
	if c.LLMModel != "from-file" || c.MaxDocs != 70 {
		t.Fatalf("LLM_MODEL=%s MAX_DOCS=%d, want from-file (from .env) and 70 (environment wins)", c.LLMModel, c.MaxDocs)
	}
}

func TestConfigSecretsNeverLogged(t *testing.T) {
	c, err := loadConfig([]string{
		"WEBHOOK_TOKEN=tok-123", "API_TOKEN=api-456", "SMTP_PASSWORD=pw-789",
		"SLACK_WEBHOOK_URL=https://hooks.example/T/B/xyz-secret", "LANGFUSE_SECRET_KEY=sk-lf-1", "LANGFUSE_PUBLIC_KEY=pk-lf-1",
		"MONGO_URI=mongodb://user:mongo-pass@db:27017/?authSource=admin",
	}, filepath.Join(t.TempDir(), "none.env"))
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprint(c.LogValue())
	for _, secret := range []string{"tok-123", "api-456", "pw-789", "xyz-secret", "sk-lf-1", "mongo-pass"} {
		if strings.Contains(out, secret) {
			t.Errorf("log value shows %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db:27017") {
		t.Errorf("redacted MONGO_URI lost its host: %s", out)
	}
}
