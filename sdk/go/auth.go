package strata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenSource hands out the bearer token for the next request. Token is
// called before every request that needs one, so implementations cache.
type TokenSource interface {
	// Token returns a valid bearer token (without the "Bearer " prefix).
	Token(ctx context.Context) (string, error)
}

// invalidator is a TokenSource that can forget its cached token when the
// server refused it, so that the next Token call renews it.
type invalidator interface{ invalidate() }

// StaticToken is a TokenSource that always hands out the same token: a
// personal access token or a JWT got elsewhere.
type StaticToken string

// Token returns the token itself.
func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", ErrNoCredentials
	}
	return string(t), nil
}

// String hides the token.
func (t StaticToken) String() string { return "StaticToken(REDACTED)" }

// GoString hides the token.
func (t StaticToken) GoString() string { return t.String() }

// renewBefore: a token is renewed this long before it expires.
const renewBefore = 30 * time.Second

// passwordSource signs in with a password and renews the access token with
// the refresh token.
type passwordSource struct {
	client             *Client
	username, password string

	mu      sync.Mutex
	access  string
	refresh string
	expires time.Time
}

func (s *passwordSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && time.Until(s.expires) > renewBefore {
		return s.access, nil
	}
	var (
		tr  *TokenResponse
		err error
	)
	if s.refresh != "" {
		tr, err = s.client.RefreshToken(ctx, s.refresh)
		if err != nil && !IsUnauthorized(err) && !IsBadRequest(err) {
			return "", fmt.Errorf("strata: renewing the access token: %w", err)
		}
	}
	if tr == nil {
		// First use, or the refresh token is used up, expired or revoked.
		tr, err = s.client.SignIn(ctx, s.username, s.password)
		if err != nil {
			return "", fmt.Errorf("strata: signing in as %s: %w", s.username, err)
		}
	}
	s.access, s.refresh = tr.AccessToken, tr.RefreshToken
	s.expires = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	return s.access, nil
}

func (s *passwordSource) invalidate() {
	s.mu.Lock()
	s.access = ""
	s.mu.Unlock()
}

// signOut ends the session: the refresh token stops working.
func (s *passwordSource) signOut(ctx context.Context) error {
	s.mu.Lock()
	refresh := s.refresh
	s.access, s.refresh = "", ""
	s.mu.Unlock()
	if refresh == "" {
		return nil
	}
	return s.client.SignOut(ctx, refresh)
}

// SignOutSession ends the password session of a client built with
// WithPassword: its refresh token is revoked at the server and the cached
// access token dropped (the next call signs in anew). It does nothing for
// other credentials.
func (c *Client) SignOutSession(ctx context.Context) error {
	if s, ok := c.tokens.(*passwordSource); ok {
		return s.signOut(ctx)
	}
	return nil
}

// OIDCClientCredentials configures the OAuth 2.0 client-credentials grant
// at the OpenID Connect provider that Strata trusts (strata serve
// --oidc-issuer): a service account of the provider calls Strata with the
// provider's tokens, and its groups map to Strata roles.
type OIDCClientCredentials struct {
	// Issuer is the provider's issuer URL; its token endpoint is read from
	// Issuer + "/.well-known/openid-configuration" unless TokenURL is set.
	Issuer string
	// TokenURL is the provider's token endpoint (skips discovery).
	TokenURL string
	// ClientID and ClientSecret authenticate the client (HTTP Basic,
	// client_secret_basic).
	ClientID string
	// ClientSecret is the client's secret.
	ClientSecret string
	// Scopes are requested with the token ("scope"), when any.
	Scopes []string
	// Audience is sent as "audience" for providers that need it to issue
	// tokens for Strata (Strata checks the --oidc-audience it was given).
	Audience string
	// HTTPClient talks to the provider; the Client's HTTP client when nil.
	HTTPClient *http.Client
}

type oidcSource struct {
	cfg       OIDCClientCredentials
	http      *http.Client
	userAgent string

	mu       sync.Mutex
	tokenURL string
	access   string
	expires  time.Time
}

func (s *oidcSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && time.Until(s.expires) > renewBefore {
		return s.access, nil
	}
	if s.tokenURL == "" {
		s.tokenURL = s.cfg.TokenURL
	}
	if s.tokenURL == "" {
		u, err := s.discover(ctx)
		if err != nil {
			return "", err
		}
		s.tokenURL = u
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(s.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	if s.cfg.Audience != "" {
		form.Set("audience", s.cfg.Audience)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("strata: OIDC token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	status, err := s.getJSON(req, &tr)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("strata: OIDC token endpoint answered %d %s %s", status, tr.Error, tr.Description)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", fmt.Errorf("strata: OIDC token endpoint issued a %q token, not a bearer token", tr.TokenType)
	}
	s.access = tr.AccessToken
	if tr.ExpiresIn > 0 {
		s.expires = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	} else {
		s.expires = time.Now().Add(5 * time.Minute)
	}
	return s.access, nil
}

func (s *oidcSource) invalidate() {
	s.mu.Lock()
	s.access = ""
	s.mu.Unlock()
}

func (s *oidcSource) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(s.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("strata: OIDC discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	status, err := s.getJSON(req, &doc)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK || doc.TokenEndpoint == "" {
		return "", fmt.Errorf("strata: OIDC discovery %s answered %d without a token_endpoint", u, status)
	}
	return doc.TokenEndpoint, nil
}

func (s *oidcSource) getJSON(req *http.Request, out any) (int, error) {
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("strata: OIDC provider: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("strata: OIDC provider: %w", err)
	}
	if err := json.Unmarshal(data, out); err != nil && resp.StatusCode == http.StatusOK {
		return 0, errors.New("strata: OIDC provider: the answer is not JSON")
	}
	return resp.StatusCode, nil
}
