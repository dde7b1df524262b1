package strata

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
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
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// TestPasswordSessionRenewal runs against the server TestMain started.
func TestPasswordSessionRenewal(t *testing.T) {
	url, password := os.Getenv("STRATA_TEST_URL"), os.Getenv("STRATA_TEST_PASSWORD")
	if url == "" {
		t.Fatal("STRATA_TEST_URL is not set: TestMain starts the server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &countingTransport{}
	c, err := New(WithBaseURL(url), WithHTTPClient(&http.Client{Transport: tr}), WithPassword("admin", password))
	if err != nil {
		t.Fatal(err)
	}
	src := c.tokens.(*passwordSource)
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tr.count("POST /v1/auth/token"); n != 1 {
		t.Fatalf("two calls signed in %d times, want once", n)
	}
	firstAccess, firstRefresh := src.access, src.refresh
	if !strings.HasPrefix(firstRefresh, "strata_rt_") {
		t.Fatalf("no refresh token kept after the sign-in")
	}

	// Near its expiry the access token is renewed with the refresh token.
	src.mu.Lock()
	src.expires = time.Now().Add(10 * time.Second)
	src.mu.Unlock()
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if tr.count("POST /v1/auth/refresh") != 1 || tr.count("POST /v1/auth/token") != 1 {
		t.Fatalf("renewal: %v; want one refresh and no second sign-in", tr.n)
	}
	if src.refresh == firstRefresh || src.access == firstAccess {
		t.Fatalf("the refresh did not replace the tokens")
	}

	// An access token the server refuses is renewed once and the call repeated.
	src.mu.Lock()
	src.access = "eyJub3QiOiJhIHRva2VuIn0.e30.c2ln"
	src.mu.Unlock()
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after a refused token: %v", err)
	}
	if tr.count("POST /v1/auth/refresh") != 2 {
		t.Fatalf("a refused token was not renewed: %v", tr.n)
	}

	// A used-up refresh token falls back to the password.
	used := src.refresh
	if _, err := c.RefreshToken(ctx, used); err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	src.mu.Lock()
	src.expires = time.Now()
	src.mu.Unlock()
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after the refresh token was used elsewhere: %v", err)
	}
	if tr.count("POST /v1/auth/token") != 2 {
		t.Fatalf("a used-up refresh token did not lead to a new sign-in: %v", tr.n)
	}

	// Signing out revokes the refresh token.
	refresh := src.refresh
	if err := c.SignOutSession(ctx); err != nil {
		t.Fatalf("SignOutSession: %v", err)
	}
	if _, err := c.RefreshToken(ctx, refresh); !IsUnauthorized(err) {
		t.Fatalf("a signed-out refresh token = %v, want 401", err)
	}
	if _, err := c.Me(ctx); err != nil {
		t.Fatalf("Me after signing out (signs in anew): %v", err)
	}
}
