package enrich

import (
	"context"
	"errors"
	"fmt"

	"github.com/alertrca/alertrca/store"
)

// analyze asks the LLM for the RCA of a: one call, one repair if the answer is
// not valid, else a fallback built from the alert. It never returns nil.
func (p *Pipeline) analyze(ctx context.Context, a *store.Anomaly) *store.RCA {
	start := p.now()
	evidence := ""
	if p.cfg.Evidence != nil {
		evidence = p.cfg.Evidence.Gather(ctx, a)
	}
	prompt := BuildPrompt(a, evidence)
	var tokensIn, tokensOut int
	var r *store.RCA

	gen, err := p.generate(ctx, prompt)
	tokensIn, tokensOut = gen.PromptTokens, gen.CompletionTokens
	if err == nil {
		var problem error
		r, problem = toRCA(gen.Text)
		if problem != nil {
			p.m.llmInvalid.Inc()
			p.log.Warn("LLM answer invalid; asking for a repair", "anomaly", a.ID, "problem", problem)
			gen, err = p.generate(ctx, repairPrompt(prompt, gen.Text, problem))
			tokensIn, tokensOut = tokensIn+gen.PromptTokens, tokensOut+gen.CompletionTokens
			if err == nil {
				r, problem = toRCA(gen.Text)
				if problem != nil {
					p.m.llmInvalid.Inc()
					err = fmt.Errorf("answer invalid after one repair: %w", problem)
				}
			}
		}
	}
	if err != nil {
		p.log.Warn("no usable LLM answer; storing a fallback analysis", "anomaly", a.ID, "err", err)
		r = fallbackRCA(a, err)
	}
	r.AnomalyID, r.ID, r.Fingerprint, r.Evidence = a.ID, a.ID, a.Fingerprint, evidence
	r.Model = p.llm.Model()
	r.PromptTokens, r.CompletionTokens = tokensIn, tokensOut
	r.LatencyMS = p.now().Sub(start).Milliseconds()
	r.CreatedAt = p.now().UTC()
	return r
}

// generate makes one LLM call under LLMTimeout.
func (p *Pipeline) generate(ctx context.Context, prompt string) (Generation, error) {
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.LLMTimeout)
	defer cancel()
	gen, err := p.llm.Generate(callCtx, prompt, rcaSchema)
	if err != nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("LLM call timed out after %s", p.cfg.LLMTimeout)
	}
	return gen, err
}

func toRCA(text string) (*store.RCA, error) {
	summary, simplified, cause, fix, err := parseAnswer(text)
	if err != nil {
		return nil, err
	}
	return &store.RCA{Summary: summary, Simplified: simplified, Cause: cause, Fix: fix}, nil
}
