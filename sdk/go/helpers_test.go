package strata_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

// newClient is a client of the test server whose requests are recorded
// for the coverage check of TestMain.
func newClient(t testing.TB, opts ...strata.Option) *strata.Client {
	t.Helper()
	all := append([]strata.Option{
		strata.WithBaseURL(baseURL),
		strata.WithHTTPClient(&http.Client{Transport: recorder{}}),
		strata.WithPollInterval(100 * time.Millisecond),
	}, opts...)
	c, err := strata.New(all...)
	if err != nil {
		t.Fatalf("strata.New: %v", err)
	}
	return c
}

func adminClient(t testing.TB) *strata.Client {
	return newClient(t, strata.WithPassword("admin", adminPassword))
}

func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var nameSeq atomic.Int32

// uniqueName is a DNS label no other test uses.
func uniqueName(prefix string) string {
	return prefix + "-" + strings.ToLower(randomText(6)[:6]) + "-" + string(rune('a'+nameSeq.Add(1)%26))
}

// readyInstance creates an instance and waits until it is Ready; it is
// deleted when the test ends.
func readyInstance(t *testing.T, c *strata.Client, project string, req strata.CreateInstanceRequest) *strata.Instance {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	if _, err := c.CreateInstance(ctx, project, req); err != nil {
		t.Fatalf("CreateInstance %s: %v", req.Name, err)
	}
	inst, err := c.WaitForPhase(ctx, project, req.Name, strata.PhaseReady)
	if err != nil {
		t.Fatalf("WaitForPhase %s Ready: %v", req.Name, err)
	}
	t.Cleanup(func() { deleteInstance(t, c, project, req.Name) })
	return inst
}

func deleteInstance(t testing.TB, c *strata.Client, project, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.DeleteInstance(ctx, project, name); err != nil && !strata.IsNotFound(err) {
		t.Errorf("DeleteInstance %s: %v", name, err)
		return
	}
	if err := c.WaitForDeletion(ctx, project, name); err != nil {
		t.Errorf("WaitForDeletion %s: %v", name, err)
	}
}
