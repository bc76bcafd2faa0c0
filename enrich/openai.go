package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// OpenAI speaks the OpenAI chat completions API, which vLLM, llama.cpp's
// server, LM Studio and OpenAI itself offer: POST {base}/v1/chat/completions.
type OpenAI struct {
	BaseURL string // e.g. http://localhost:8000 (a trailing /v1 is accepted)
	Name    string
	APIKey  string // LLM_API_KEY; sent as a bearer token when set
	Client  *http.Client
}

// NewOpenAI returns a client for the OpenAI-compatible server at baseURL.
func NewOpenAI(baseURL, model, apiKey string) *OpenAI {
	base := strings.TrimSuffix(strings.TrimRight(baseURL, "/"), "/v1")
	return &OpenAI{BaseURL: base, Name: model, APIKey: apiKey, Client: &http.Client{}}
}

// Model implements LLM.
func (o *OpenAI) Model() string { return o.Name }

// Backend implements LLM.
func (o *OpenAI) Backend() string { return "openai" }

type openAIResponse struct {
	Choices []struct {
		Message ChatMessage `json:"message"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (o *OpenAI) complete(ctx context.Context, req map[string]any) (Generation, error) {
	var out openAIResponse
	err := postJSON(ctx, o.Client, "openai", o.BaseURL+"/v1/chat/completions", o.APIKey, req, &out, func() string {
		if out.Error != nil {
			return out.Error.Message
		}
		return ""
	})
	if err != nil {
		return Generation{}, err
	}
	if len(out.Choices) == 0 {
		return Generation{}, errors.New("openai answer has no choices")
	}
	return Generation{Text: out.Choices[0].Message.Content, PromptTokens: out.Usage.PromptTokens,
		CompletionTokens: out.Usage.CompletionTokens}, nil
}

// Generate implements LLM with a strict json_schema response format.
func (o *OpenAI) Generate(ctx context.Context, prompt string, schema json.RawMessage) (Generation, error) {
	return o.complete(ctx, map[string]any{
		"model":       o.Name,
		"messages":    []ChatMessage{{Role: "user", Content: prompt}},
		"temperature": 0,
		"response_format": map[string]any{
			"type":        "json_schema",
			"json_schema": map[string]any{"name": "rca", "schema": schema, "strict": true},
		},
	})
}

// Chat implements LLM.
func (o *OpenAI) Chat(ctx context.Context, messages []ChatMessage) (Generation, error) {
	return o.complete(ctx, map[string]any{"model": o.Name, "messages": messages})
}
