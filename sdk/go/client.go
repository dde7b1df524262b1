package strata

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"time"
)

// SDKVersion is the version of this SDK (semantic versioning; the module is
// tagged sdk/go/vVERSION).
const SDKVersion = "0.1.0"

// DefaultBaseURL is the address `make run` serves the API on.
const DefaultBaseURL = "http://127.0.0.1:8080"

// Client calls the Strata REST API. Build it with New; it is safe for
// concurrent use by several goroutines.
type Client struct {
	baseURL      *url.URL
	http         *http.Client
	userAgent    string
	tokens       TokenSource
	retry        RetryPolicy
	pollInterval time.Duration
	newKey       func() string

	// deferred options that need the finished client (password sign-in).
	pending []func(*Client)
}

// Option configures a Client (see New).
type Option func(*Client) error

// New returns a client configured by opts. Without WithBaseURL it talks to
// DefaultBaseURL; without a credentials option only the unauthenticated
// endpoints (Health, Ready, SignIn, the OIDC discovery) work.
func New(opts ...Option) (*Client, error) {
	c := &Client{
		http:         &http.Client{},
		userAgent:    fmt.Sprintf("strata-go/%s (%s)", SDKVersion, runtime.Version()),
		retry:        DefaultRetryPolicy(),
		pollInterval: 500 * time.Millisecond,
		newKey:       randomKey,
	}
	if err := WithBaseURL(DefaultBaseURL)(c); err != nil {
		return nil, err
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	for _, f := range c.pending {
		f(c)
	}
	c.pending = nil
	return c, nil
}

// WithBaseURL sets the API's address, e.g. "https://strata.example.com" (a
// path prefix is kept: "https://example.com/strata").
func WithBaseURL(raw string) Option {
	return func(c *Client) error {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("strata: base URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("strata: base URL %q: want http(s)://host[:port]", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.baseURL = u
		return nil
	}
}

// WithHTTPClient makes the client send its requests with hc (its Transport,
// proxies, TLS settings). A Timeout on hc also ends FollowEvents streams;
// prefer deadlines on the context.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("strata: WithHTTPClient(nil)")
		}
		c.http = hc
		return nil
	}
}

// WithUserAgent sets the User-Agent header; the SDK's own name and version
// are appended ("my-tool/1.2 strata-go/0.1.0").
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = strings.TrimSpace(ua) + " strata-go/" + SDKVersion
		return nil
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy. RetryPolicy{MaxAttempts: 1}
// turns retries off.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.MaxAttempts < 1 {
			return errors.New("strata: RetryPolicy.MaxAttempts must be at least 1")
		}
		c.retry = p
		return nil
	}
}

// WithPollInterval sets how often WaitForPhase and WaitForDeletion ask for
// the instance (default 500 ms).
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return errors.New("strata: poll interval must be positive")
		}
		c.pollInterval = d
		return nil
	}
}

// WithTokenSource authenticates every request with the bearer tokens ts
// hands out. Of several credentials options, the last one counts.
func WithTokenSource(ts TokenSource) Option {
	return func(c *Client) error {
		c.pending = append(c.pending, func(c *Client) { c.tokens = ts })
		return nil
	}
}

// WithAccessToken authenticates with a fixed bearer token: a personal
// access token ("strata_pat_…", see CreateAccessToken) or a JWT got
// elsewhere.
func WithAccessToken(token string) Option {
	return WithTokenSource(StaticToken(token))
}

// WithPassword signs in as username (POST /v1/auth/token) at the first call
// that needs a token, and keeps the session alive: the access token is
// renewed with the refresh token shortly before it expires (or when the
// server refuses it), and the password is used again only when the refresh
// token is no longer accepted.
func WithPassword(username, password string) Option {
	return func(c *Client) error {
		c.pending = append(c.pending, func(c *Client) {
			c.tokens = &passwordSource{client: c, username: username, password: password}
		})
		return nil
	}
}

// WithOIDCClientCredentials authenticates with tokens of the OpenID Connect
// provider Strata trusts (strata serve --oidc-issuer), got by the OAuth 2.0
// client-credentials grant and renewed before they expire.
func WithOIDCClientCredentials(cfg OIDCClientCredentials) Option {
	return func(c *Client) error {
		if cfg.ClientID == "" || (cfg.Issuer == "" && cfg.TokenURL == "") {
			return errors.New("strata: OIDCClientCredentials needs ClientID and Issuer or TokenURL")
		}
		c.pending = append(c.pending, func(c *Client) {
			hc := cfg.HTTPClient
			if hc == nil {
				hc = c.http
			}
			c.tokens = &oidcSource{cfg: cfg, http: hc, userAgent: c.userAgent}
		})
		return nil
	}
}

// BaseURL returns the API's address the client was built with.
func (c *Client) BaseURL() string { return c.baseURL.String() }

// request is one API call, described before it is sent (and re-sent).
type request struct {
	method string
	path   string // already escaped
	query  url.Values
	body   any
	header http.Header
	auth   bool
	// idempotent: safe to send again after a network error or a 5xx
	// gateway answer (GET, DELETE, POST with an Idempotency-Key).
	idempotent bool
	// stream: the caller reads the body (no decoding, no buffering).
	stream bool
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.baseURL
	u.Path = c.baseURL.Path + path
	u.RawPath = c.baseURL.EscapedPath() + path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// do sends r, retrying as the policy allows, and decodes a 2xx JSON answer
// into out (when not nil). Error answers become *APIError.
func (c *Client) do(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("strata: %s %s: decoding the answer: %w", r.method, r.path, err)
	}
	return nil
}

// send sends r and returns a 2xx response whose body the caller closes.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	var body []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("strata: encoding the request: %w", err)
		}
		body = b
	}
	refreshed := false
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, r.method, c.url(r.path, r.query), bytesReader(body))
		if err != nil {
			return nil, fmt.Errorf("strata: %w", err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if !r.stream {
			req.Header.Set("Accept", "application/json")
		}
		req.Header.Set("User-Agent", c.userAgent)
		for k, vs := range r.header {
			req.Header[k] = vs
		}
		if r.auth {
			if c.tokens == nil {
				return nil, ErrNoCredentials
			}
			tok, err := c.tokens.Token(ctx)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if r.idempotent && attempt < c.retry.MaxAttempts {
				if werr := sleep(ctx, c.retry.backoff(attempt)); werr != nil {
					return nil, werr
				}
				continue
			}
			return nil, fmt.Errorf("strata: %s %s: %w", r.method, r.path, err)
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		apiErr := readProblem(resp, r.method, r.path)
		// A refused access token may have been revoked or have expired
		// early: renew it once and try again.
		if resp.StatusCode == http.StatusUnauthorized && r.auth && !refreshed {
			if inv, ok := c.tokens.(invalidator); ok {
				inv.invalidate()
				refreshed = true
				continue
			}
		}
		if attempt < c.retry.MaxAttempts && c.retry.retryable(resp.StatusCode, r.idempotent) {
			wait := c.retry.backoff(attempt)
			if apiErr.RetryAfter > 0 {
				wait = apiErr.RetryAfter
			}
			if c.retry.MaxRetryAfter > 0 && wait > c.retry.MaxRetryAfter {
				return nil, apiErr
			}
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return nil, apiErr
			}
			if werr := sleep(ctx, wait); werr != nil {
				return nil, werr
			}
			continue
		}
		return nil, apiErr
	}
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// readProblem turns an error answer into *APIError, reading the
// problem+json body when there is one.
func readProblem(resp *http.Response, method, path string) *APIError {
	defer resp.Body.Close()
	e := &APIError{
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("X-Request-Id"),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Method:     method,
		Path:       path,
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	ct := resp.Header.Get("Content-Type")
	if strings.Contains(ct, "json") && len(data) > 0 {
		_ = json.Unmarshal(data, e)
	} else if len(data) > 0 {
		e.Detail = strings.TrimSpace(string(data))
	}
	return e
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// randomKey is a random UUID (version 4), used as Idempotency-Key.
func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
