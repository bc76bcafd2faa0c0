// Package notify sends incident messages to people: email and Slack. A
// notifier makes one attempt and says whether it is worth retrying; the
// retry policy (Backoff) is shared by every channel.
package notify

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// Kind of a message.
type Kind string

// Message kinds.
const (
	KindFiring   Kind = "firing"   // a new incident with its analysis
	KindResolved Kind = "resolved" // the incident ended
	KindDigest   Kind = "digest"   // several incidents in one message (storm control)
	KindTest     Kind = "test"     // a configuration check
)

// Message is one incident as a channel shows it. Every string may come from
// an alert or an LLM: channels escape it for their format.
type Message struct {
	Kind         Kind
	Name         string // alert name
	Severity     string
	Status       string // firing or resolved
	Instance     string
	Job          string
	Labels       map[string]string
	StartsAt     time.Time
	EndsAt       time.Time
	Summary      string // the RCA
	Simplified   string
	Cause        string
	Fix          string
	Fallback     bool   // the analysis was built without the LLM
	GeneratorURL string // the alert's source (Prometheus graph)
	Link         string // this incident in alertrca's API
	Digest       []Message
}

// Notifier sends one message, once. retry tells whether a failure may pass
// (server errors, rate limits, timeouts, connection errors) or is permanent.
type Notifier interface {
	Name() string
	Notify(ctx context.Context, m Message) (retry bool, err error)
}

// RetryAfterError carries the delay a server asked for (HTTP Retry-After).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// Backoff is the retry policy of every channel: exponential with full
// jitter, capped, and never shorter than a server's Retry-After.
type Backoff struct {
	Initial time.Duration // first delay (default 5s)
	Max     time.Duration // cap (default 10m)
	Rand    func() float64
}

// Delay is the wait before attempt+1, after attempt (1-based) failed with err.
func (b Backoff) Delay(attempt int, err error) time.Duration {
	initial, maxDelay := b.Initial, b.Max
	if initial <= 0 {
		initial = 5 * time.Second
	}
	if maxDelay <= 0 {
		maxDelay = 10 * time.Minute
	}
	rnd := b.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	d := initial << min(max(attempt-1, 0), 30)
	if d <= 0 || d > maxDelay {
		d = maxDelay
	}
	// Half fixed, half random: spreads retries without ever retrying at once.
	d = d/2 + time.Duration(rnd()*float64(d/2))
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = min(ra.After, maxDelay)
	}
	return d
}

// RetryableHTTP tells whether an HTTP status is worth retrying.
func RetryableHTTP(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// RetryableTransport tells whether a transport error (no HTTP status) is
// worth retrying: timeouts and connection failures are; a canceled context is not.
func RetryableTransport(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, new(*net.OpError))
}
