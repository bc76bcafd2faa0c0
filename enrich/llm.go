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

// LLM is a language model behind one of the supported APIs (Ollama's, or an
// OpenAI-compatible server's). Deadlines come from ctx.
type LLM interface {
	// Generate answers one prompt with JSON that follows schema (the RCA).
	Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error)
	// Chat answers a conversation in free text.
	Chat(ctx context.Context, messages []ChatMessage) (Generation, error)
	Model() string
	Backend() string // "ollama" or "openai"
}

// ChatMessage is one turn of a conversation: role is system, user or assistant.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
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

// Backend implements LLM.
func (o *Ollama) Backend() string { return "ollama" }

type ollamaRequest struct {
	Model   string          `json:"model"`
	Prompt  string          `json:"prompt"`
	Stream  bool            `json:"stream"`
	Format  json.RawMessage `json:"format"`
	Options map[string]any  `json:"options,omitempty"`
}

type ollamaResponse struct {
	Response        string      `json:"response"`
	Message         ChatMessage `json:"message"` // /api/chat
	Done            bool        `json:"done"`
	PromptEvalCount int         `json:"prompt_eval_count"`
	EvalCount       int         `json:"eval_count"`
	Error           string      `json:"error"`
}

// Generate implements LLM with POST /api/generate, stream false, format = schema.
func (o *Ollama) Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error) {
	var out ollamaResponse
	err := postJSON(ctx, o.Client, "ollama", o.BaseURL+"/api/generate", "", ollamaRequest{
		Model: o.Name, Prompt: prompt, Stream: false, Format: schema,
		Options: map[string]any{"temperature": 0},
	}, &out, func() string { return out.Error })
	if err != nil {
		return Generation{}, err
	}
	return Generation{Text: out.Response, PromptTokens: out.PromptEvalCount, CompletionTokens: out.EvalCount}, nil
}

// Chat implements LLM with POST /api/chat, stream false.
func (o *Ollama) Chat(ctx context.Context, messages []ChatMessage) (Generation, error) {
	var out ollamaResponse
	err := postJSON(ctx, o.Client, "ollama", o.BaseURL+"/api/chat", "", map[string]any{
		"model": o.Name, "messages": messages, "stream": false,
	}, &out, func() string { return out.Error })
	if err != nil {
		return Generation{}, err
	}
	return Generation{Text: out.Message.Content, PromptTokens: out.PromptEvalCount, CompletionTokens: out.EvalCount}, nil
}

// postJSON posts body as JSON and decodes a 2xx answer into out. For other
// answers, errMsg (read after decoding) or the start of the body says why.
func postJSON(ctx context.Context, client *http.Client, name, url, apiKey string, body, out any, errMsg func() string) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("build %s request: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("call %s: %w", name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read %s answer: %w", name, err)
	}
	jsonErr := json.Unmarshal(answer, out)
	if resp.StatusCode/100 != 2 {
		msg := errMsg()
		if jsonErr != nil || msg == "" {
			msg = truncate(string(answer), 200)
		}
		return fmt.Errorf("%s answered HTTP %d: %s", name, resp.StatusCode, msg)
	}
	if jsonErr != nil {
		return fmt.Errorf("decode %s answer: %w", name, jsonErr)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
