package strata_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

func TestRetriesHonourRetryAfter(t *testing.T) {
	t.Parallel()
	p := newFaultProxy(t)
	c := newClient(t, strata.WithBaseURL(p.URL), strata.WithHTTPClient(throughProxy(p)),
		strata.WithPassword("admin", adminPassword))
	ctx := testContext(t, 2*time.Minute)

	// A GET that meets 503 twice, then the real server.
	p.inject("GET", "/v1/plans", fault503, fault503)
	start := time.Now()
	plans, err := c.ListPlans(ctx)
	if err != nil || len(plans) == 0 {
		t.Fatalf("ListPlans behind two 503s = %v, %v", plans, err)
	}
	if n := len(p.requests("GET", "/v1/plans")); n != 3 {
		t.Fatalf("the proxy saw %d requests, want 3 (two 503s and the real answer)", n)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("two Retry-After: 1 answers took %v, want at least 2 s", waited)
	}

	// 429 is retried even for a create without an idempotency key: the
	// server did not act on the request.
	name := uniqueName("retried")
	p.inject("POST", "/v1/projects", fault429)
	if _, err := c.CreateProject(ctx, name); err != nil {
		t.Fatalf("CreateProject behind a 429: %v", err)
	}
	if n := len(p.requests("POST", "/v1/projects")); n != 2 {
		t.Fatalf("the proxy saw %d project creates, want 2", n)
	}

	// A Retry-After longer than the policy allows ends the retries at once.
	p.inject("GET", "/v1/versions", fault503Long)
	start = time.Now()
	_, err = c.ListVersions(ctx)
	var apiErr *strata.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.RetryAfter != 2*time.Minute {
		t.Fatalf("ListVersions behind Retry-After: 120 = %v, want the 503 with RetryAfter 2m", err)
	}
	if waited := time.Since(start); waited > time.Minute {
		t.Fatalf("a Retry-After beyond MaxRetryAfter was waited for (%v)", waited)
	}

	// Retries run out: the last answer is the error.
	few := newClient(t, strata.WithBaseURL(p.URL), strata.WithHTTPClient(throughProxy(p)),
		strata.WithPassword("admin", adminPassword), strata.WithRetryPolicy(strata.RetryPolicy{MaxAttempts: 2}))
	p.inject("GET", "/v1/me", fault503, fault503, fault503)
	if _, err := few.Me(ctx); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Me behind three 503s with 2 attempts = %v, want 503", err)
	}
	if n := len(p.requests("GET", "/v1/me")); n != 2 {
		t.Fatalf("2 attempts sent %d requests", n)
	}
}

func TestRetriesAfterNetworkErrors(t *testing.T) {
	t.Parallel()
	p := newFaultProxy(t)
	c := newClient(t, strata.WithBaseURL(p.URL), strata.WithHTTPClient(throughProxy(p)),
		strata.WithPassword("admin", adminPassword))
	ctx := testContext(t, 2*time.Minute)

	// A GET whose connection breaks is sent again.
	p.inject("GET", "/v1/versions", faultDrop)
	if _, err := c.ListVersions(ctx); err != nil {
		t.Fatalf("ListVersions after a broken connection: %v", err)
	}
	if n := len(p.requests("GET", "/v1/versions")); n != 2 {
		t.Fatalf("the proxy saw %d requests, want 2", n)
	}

	// A create whose answer is lost is sent again with the same
	// Idempotency-Key, and the server answers with the same instance.
	name := uniqueName("lost")
	p.inject("POST", "/v1/projects/default/instances", faultLostReply)
	inst, err := c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro"})
	if err != nil {
		t.Fatalf("CreateInstance whose first answer was lost: %v", err)
	}
	t.Cleanup(func() { deleteInstance(t, adminClient(t), "default", name) })
	creates := p.requests("POST", "/v1/projects/default/instances")
	if len(creates) != 2 || creates[0].idempotencyKey == "" || creates[0].idempotencyKey != creates[1].idempotencyKey {
		t.Fatalf("the creates the proxy saw: %+v; want 2 with the same Idempotency-Key", creates)
	}
	n := 0
	for i, err := range c.Instances(ctx, "default", nil) {
		if err != nil {
			t.Fatal(err)
		}
		if i.Name == name {
			n++
			if i.ID != inst.ID {
				t.Fatalf("the retried create answered instance %s, the list has %s", inst.ID, i.ID)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d instances named %s, want 1", n, name)
	}

	// Rotating credentials is not idempotent: a lost answer is not retried.
	if _, err := c.WaitForPhase(ctx, "default", name, strata.PhaseReady); err != nil {
		t.Fatal(err)
	}
	p.inject("POST", "/v1/projects/default/instances/"+name+"/credentials/rotate", faultLostReply)
	if _, err := c.RotateCredentials(ctx, "default", name); err == nil {
		t.Fatalf("RotateCredentials whose answer was lost succeeded; want the network error")
	}
	if n := len(p.requests("POST", "/v1/projects/default/instances/"+name+"/credentials/rotate")); n != 1 {
		t.Fatalf("a rotation was sent %d times, want once", n)
	}
}
