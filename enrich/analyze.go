package enrich

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/alertrca/alertrca/store"
)

// analyze asks the LLM for the RCA of a: one call, one repair if the answer is
// not valid, else a fallback built from the alert. It never returns nil.
func (p *Pipeline) analyze(ctx context.Context, a *store.Anomaly) *store.RCA {
	start := p.now()
	key := CacheKey(p.llm.Model(), PromptVersion, a)
	if r := p.cached(ctx, a, key); r != nil {
		return r
	}
	evidence := ""
	if p.cfg.Evidence != nil {
		evidence = p.cfg.Evidence.Gather(ctx, a)
	}
	prompt := BuildPrompt(a, evidence)
	var tokensIn, tokensOut int
	var r *store.RCA

	gen, err := p.generate(ctx, a.ID, prompt)
	tokensIn, tokensOut = gen.PromptTokens, gen.CompletionTokens
	if err == nil {
		var problem error
		r, problem = toRCA(gen.Text)
		if problem != nil {
			p.m.llmInvalid.Inc()
			p.log.Warn("LLM answer invalid; asking for a repair", "anomaly", a.ID, "problem", problem)
			gen, err = p.generate(ctx, a.ID, repairPrompt(prompt, gen.Text, problem))
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
	r.AnomalyID, r.ID, r.Fingerprint, r.Evidence, r.CacheKey = a.ID, a.ID, a.Fingerprint, evidence, key
	r.Model = p.llm.Model()
	r.PromptTokens, r.CompletionTokens = tokensIn, tokensOut
	r.LatencyMS = p.now().Sub(start).Milliseconds()
	r.CreatedAt = p.now().UTC()
	return r
}

// generate makes one LLM call under LLMTimeout.
func (p *Pipeline) generate(ctx context.Context, anomalyID, prompt string) (Generation, error) {
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.LLMTimeout)
	defer cancel()
	start := time.Now()
	gen, err := p.llm.Generate(callCtx, prompt, rcaSchema)
	p.cfg.Tracer.RCA(anomalyID, p.llm.Model(), prompt, gen, err, start, time.Now())
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

// cached reuses a recent analysis of an incident of the same kind, or
// returns nil.
func (p *Pipeline) cached(ctx context.Context, a *store.Anomaly, key string) *store.RCA {
	if p.cfg.CacheTTL <= 0 {
		return nil
	}
	src, err := p.store.FindCachedRCA(ctx, key, p.now().Add(-p.cfg.CacheTTL))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			p.log.Warn("RCA cache lookup failed; asking the LLM", "anomaly", a.ID, "err", err)
		}
		p.m.rcaCache.WithLabelValues("miss").Inc()
		return nil
	}
	p.m.rcaCache.WithLabelValues("hit").Inc()
	return &store.RCA{
		ID: a.ID, AnomalyID: a.ID, Fingerprint: a.Fingerprint,
		Summary: src.Summary, Simplified: src.Simplified, Cause: src.Cause, Fix: src.Fix,
		Evidence: src.Evidence, Model: src.Model, CacheKey: key, Cached: true, SourceRCAID: src.ID,
		CreatedAt: p.now().UTC(),
	}
}

// instanceLabels are left out of the cache key: incidents that differ only
// in where they happen are of the same kind.
var instanceLabels = map[string]bool{
	"instance": true, "exported_instance": true, "pod": true, "pod_name": true, "pod_ip": true,
	"container": true, "container_id": true, "node": true, "nodename": true, "host": true, "hostname": true,
	"ip": true, "address": true, "uid": true, "id": true, "device": true, "mountpoint": true,
}

// CacheKey identifies the kind of an incident for the RCA cache: the model,
// the prompt version, the alert name, the severity and the labels but the
// instance-like ones.
func CacheKey(model, promptVersion string, a *store.Anomaly) string {
	h := sha256.New()
	for _, part := range []string{model, promptVersion, a.Name, a.Severity} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	for _, l := range store.ToPairs(a.Labels) {
		if instanceLabels[l.Name] || l.Name == "alertname" || l.Name == "severity" {
			continue
		}
		h.Write([]byte(l.Name + "\x00" + l.Value + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
