package strata_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

// countingTransport counts requests by "METHOD path".
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	return recorder{}.RoundTrip(r)
}

func (c *countingTransport) count(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func TestPasswordSessionRenewal(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	tr := &countingTransport{}
	c := newClient(t, strata.WithHTTPClient(&http.Client{Transport: tr}), strata.WithPassword("admin", adminPassword))
	for range 2 {
		if _, err := c.Me(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.count("POST /v1/auth/token"); n != 1 {
		t.Fatalf("two calls signed in %d times, want once", n)
	}
	firstAccess, firstRefresh := strata.SessionTokens(c)
	if !strings.HasPrefix(firstRefresh, "strata_rt_") {
		t.Fatalf("no refresh token kept after the sign-in")
	}

	// Near its expiry the access token is renewed with the refresh token.
	strata.ExpireSessionIn(c, 10*time.Second)
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if tr.count("POST /v1/auth/refresh") != 1 || tr.count("POST /v1/auth/token") != 1 {
		t.Fatalf("renewal: %v; want one refresh and no second sign-in", tr.n)
	}
	if access, refresh := strata.SessionTokens(c); refresh == firstRefresh || access == firstAccess {
		t.Fatalf("the refresh did not replace the tokens")
	}

	// An access token the server refuses is renewed once and the call repeated.
	strata.SetSessionAccessToken(c, "eyJub3QiOiJhIHRva2VuIn0.e30.c2ln")
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after a refused token: %v", err)
	}
	if tr.count("POST /v1/auth/refresh") != 2 {
		t.Fatalf("a refused token was not renewed: %v", tr.n)
	}

	// A refresh token used up elsewhere falls back to the password.
	_, used := strata.SessionTokens(c)
	if _, err := c.RefreshToken(ctx, used); err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	strata.ExpireSessionIn(c, 0)
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after the refresh token was used elsewhere: %v", err)
	}
	if tr.count("POST /v1/auth/token") != 2 {
		t.Fatalf("a used-up refresh token did not lead to a new sign-in: %v", tr.n)
	}

	// Signing out revokes the refresh token; the next call signs in anew.
	_, refresh := strata.SessionTokens(c)
	if err := c.SignOutSession(ctx); err != nil {
		t.Fatalf("SignOutSession: %v", err)
	}
	if _, err := c.RefreshToken(ctx, refresh); !strata.IsUnauthorized(err) {
		t.Fatalf("a signed-out refresh token = %v, want 401", err)
	}
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after signing out: %v", err)
	}
	if tr.count("POST /v1/auth/token") != 3 {
		t.Fatalf("signing out did not lead to a new sign-in: %v", tr.n)
	}
}
