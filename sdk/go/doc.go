// Package strata is the Go SDK of Strata, the managed-PostgreSQL platform:
// every operation of its REST API (api/openapi.json), typed, with
// authentication, retries, pagination, waiters and the live service log.
//
// Build a Client with functional options, then call it with a context:
//
//	client, err := strata.New(
//		strata.WithBaseURL("https://strata.example.com"),
//		strata.WithPassword("alice", os.Getenv("STRATA_PASSWORD")),
//	)
//	if err != nil { … }
//	inst, err := client.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: "orders"})
//	inst, err = client.WaitForPhase(ctx, "default", "orders", strata.PhaseReady)
//	creds, err := client.GetCredentials(ctx, "default", "orders")
//
// Credentials: WithPassword (sign-in, renewed with refresh tokens),
// WithAccessToken (a personal access token), WithOIDCClientCredentials
// (tokens of the OpenID Connect provider Strata trusts) or WithTokenSource.
//
// Errors: every error answer of the API is an *APIError carrying the
// problem details (RFC 9457); test for common cases with IsNotFound,
// IsConflict, IsForbidden, IsUnauthorized and IsBadRequest, or read it
// with errors.As.
//
// Retries: 429 and 503 answers are retried after their Retry-After; network
// errors are retried for idempotent calls only (see RetryPolicy);
// CreateInstance sends an Idempotency-Key so that a retry never creates a
// second instance.
//
// Lists: ListX returns one page; the iterators (Instances, AuditEvents,
// AccessTokens, Events) follow next_page_token for you, and FollowEvents
// streams the service log, reconnecting after the last event it saw.
//
// The module is versioned semantically; tags are named sdk/go/vX.Y.Z.
package strata
