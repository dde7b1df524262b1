package strata

import "time"

// Hooks for the tests of package strata_test into a WithPassword session.

// SessionTokens returns the session's access and refresh tokens.
func SessionTokens(c *Client) (access, refresh string) {
	s := c.tokens.(*passwordSource)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access, s.refresh
}

// ExpireSessionIn makes the session's access token expire in d.
func ExpireSessionIn(c *Client, d time.Duration) {
	s := c.tokens.(*passwordSource)
	s.mu.Lock()
	s.expires = time.Now().Add(d)
	s.mu.Unlock()
}

// SetSessionAccessToken replaces the session's access token.
func SetSessionAccessToken(c *Client, token string) {
	s := c.tokens.(*passwordSource)
	s.mu.Lock()
	s.access = token
	s.mu.Unlock()
}
