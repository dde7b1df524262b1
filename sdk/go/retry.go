package strata

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// RetryPolicy says when and how long the client waits before sending a
// request again.
//
// Answers 429 Too Many Requests and 503 Service Unavailable are retried for
// every request — the server did not act on it — after the Retry-After the
// answer names, or else after a backoff. Network errors and the gateway
// answers 502 and 504 are retried only for idempotent requests: GET,
// DELETE, and creates that carry an Idempotency-Key (CreateInstance),
// since a non-idempotent request may have been carried out before the
// connection broke.
//
// The backoff is exponential with full jitter: before attempt n+1 the
// client waits a random duration between 0 and
// min(MaxBackoff, InitialBackoff·2ⁿ⁻¹).
type RetryPolicy struct {
	// MaxAttempts is the number of times a request is sent at most,
	// the first included (1: no retries).
	MaxAttempts int
	// InitialBackoff bounds the first wait.
	InitialBackoff time.Duration
	// MaxBackoff bounds every wait the backoff computes.
	MaxBackoff time.Duration
	// MaxRetryAfter: a Retry-After longer than this ends the retries and
	// returns the error at once (0: no limit but the context's deadline).
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is 4 attempts, backoff from 250 ms up to 5 s, and a
// Retry-After of at most a minute.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, InitialBackoff: 250 * time.Millisecond, MaxBackoff: 5 * time.Second, MaxRetryAfter: time.Minute}
}

// backoff is the wait before attempt+1.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	ceil := p.InitialBackoff
	for i := 1; i < attempt && ceil < p.MaxBackoff; i++ {
		ceil *= 2
	}
	if p.MaxBackoff > 0 && ceil > p.MaxBackoff {
		ceil = p.MaxBackoff
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

func (p RetryPolicy) retryable(status int, idempotent bool) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return idempotent
	}
	return false
}
