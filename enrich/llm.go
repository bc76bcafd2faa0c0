package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// LLM generates one completion constrained to a JSON schema. The Ollama client
// implements it; other backends (an OpenAI-compatible server) plug in here.
type LLM interface {
	Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error)
	Model() string
}

// Generation is one answer of the model.
type Generation struct {
	Text             string
	PromptTokens     int
	CompletionTokens int
}

// Ollama speaks Ollama's POST /api/generate.
type Ollama struct {
	BaseURL string // e.g. http://localhost:11434
	Name    string // model
	Client  *http.Client
}

// NewOllama returns a client for the Ollama server at baseURL.
func NewOllama(baseURL, model string) *Ollama {
	return &Ollama{BaseURL: strings.TrimRight(baseURL, "/"), Name: model, Client: &http.Client{}}
}

// Model implements LLM.
func (o *Ollama) Model() string { return o.Name }

type ollamaRequest struct {
	Model   string          `json:"model"`
	Prompt  string          `json:"prompt"`
	Stream  bool            `json:"stream"`
	Format  json.RawMessage `json:"format"`
	Options map[string]any  `json:"options,omitempty"`
}

type ollamaResponse struct {
	Response        string `json:"response"`
	Done            bool   `json:"done"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	Error           string `json:"error"`
}

// Generate implements LLM. The deadline comes from ctx.
func (o *Ollama) Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error) {
	body, err := json.Marshal(ollamaRequest{
		Model: o.Name, Prompt: prompt, Stream: false, Format: schema,
		Options: map[string]any{"temperature": 0},
	})
	if err != nil {
		return Generation{}, fmt.Errorf("encode ollama request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.BaseURL+"/api/generate", bytes.NewReader(body))
	if err != nil {
		return Generation{}, fmt.Errorf("build ollama request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.Client.Do(req)
	if err != nil {
		return Generation{}, fmt.Errorf("call ollama: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Generation{}, fmt.Errorf("read ollama answer: %w", err)
	}
	var out ollamaResponse
	jsonErr := json.Unmarshal(raw, &out)
	if resp.StatusCode/100 != 2 {
		msg := out.Error
		if jsonErr != nil || msg == "" {
			msg = truncate(string(raw), 200)
		}
		return Generation{}, fmt.Errorf("ollama answered HTTP %d: %s", resp.StatusCode, msg)
	}
	if jsonErr != nil {
		return Generation{}, fmt.Errorf("decode ollama answer: %w", jsonErr)
	}
	return Generation{Text: out.Response, PromptTokens: out.PromptEvalCount, CompletionTokens: out.EvalCount}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
