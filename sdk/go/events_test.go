package strata_test

import (
	"slices"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

func TestFollowEventsReconnects(t *testing.T) {
	t.Parallel()
	admin := adminClient(t)
	name := uniqueName("follow")
	readyInstance(t, admin, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro"})
	ctx := testContext(t, 2*time.Minute)
	backlog, err := admin.ListEvents(ctx, "default", name, &strata.ListEventsOptions{PageSize: 500})
	if err != nil || len(backlog.Items) == 0 {
		t.Fatalf("ListEvents = %+v, %v", backlog, err)
	}

	// The first stream ends after one event, the second breaks after one;
	// the third is the server's own.
	p := newFaultProxy(t)
	path := "/v1/projects/default/instances/" + name + "/events"
	p.inject("GET", path, faultEndAfter1, faultCutAfter1)
	c := newClient(t, strata.WithBaseURL(p.URL), strata.WithHTTPClient(throughProxy(p)),
		strata.WithPassword("admin", adminPassword))

	var got []strata.ServiceEvent
	rotated, deleted := false, false
	for ev, err := range c.FollowEvents(ctx, "default", name, &strata.FollowOptions{ReconnectDelay: 50 * time.Millisecond}) {
		if err != nil {
			t.Fatalf("FollowEvents after %d events: %v", len(got), err)
		}
		got = append(got, ev)
		switch {
		case len(got) == len(backlog.Items) && !rotated:
			// The backlog is through: make a live event.
			rotated = true
			if _, err := admin.RotateCredentials(ctx, "default", name); err != nil {
				t.Fatal(err)
			}
		case ev.Kind == strata.EventCredentialsRotated && !deleted:
			// Delete the instance: the stream ends once it is gone, and
			// the reconnection's 404 ends the iteration.
			deleted = true
			if _, err := admin.DeleteInstance(ctx, "default", name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !deleted {
		t.Fatalf("the stream ended before the live event; got %d events", len(got))
	}
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.ID)
	}
	for i, ev := range backlog.Items {
		if ids[i] != ev.ID {
			t.Fatalf("event %d is %s, the log has %s (events %v)", i, ids[i], ev.ID, ids)
		}
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(ids) {
		t.Fatalf("an event came twice: %v", ids)
	}
	conns := p.requests("GET", path)
	if len(conns) < 4 {
		t.Fatalf("%d connections, want at least 4 (ended, broken, live, and the 404 after the deletion)", len(conns))
	}
	if conns[0].lastEventID != "" || conns[1].lastEventID != ids[0] || conns[2].lastEventID != ids[1] {
		t.Fatalf("Last-Event-ID of the connections: %q, %q, %q; want none, %s, %s",
			conns[0].lastEventID, conns[1].lastEventID, conns[2].lastEventID, ids[0], ids[1])
	}
	if _, err := admin.GetInstance(ctx, "default", name); !strata.IsNotFound(err) {
		t.Fatalf("the stream ended, but the instance is still there: %v", err)
	}

	for _, err := range admin.FollowEvents(ctx, "default", "no-such-instance", nil) {
		if !strata.IsNotFound(err) {
			t.Fatalf("FollowEvents of a missing instance = %v, want 404", err)
		}
	}
}
