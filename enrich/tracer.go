package enrich

import "time"

// Tracer records LLM generations somewhere else (Langfuse). It must not block.
type Tracer interface {
	RCA(anomalyID, model, prompt string, gen Generation, err error, start, end time.Time)
	Chat(sessionID, model string, input []ChatMessage, gen Generation, err error, start, end time.Time)
}

// NoTracer records nothing.
type NoTracer struct{}

// RCA implements Tracer.
func (NoTracer) RCA(string, string, string, Generation, error, time.Time, time.Time) {}

// Chat implements Tracer.
func (NoTracer) Chat(string, string, []ChatMessage, Generation, error, time.Time, time.Time) {}
