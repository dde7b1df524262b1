package strata_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

// In these examples baseURL is the API's address (https://strata.example.com)
// and adminPassword the password of the user "admin"; the tests point them
// at a server of their own.

func ExampleNew() {
	client, err := strata.New(
		strata.WithBaseURL(baseURL),
		strata.WithPassword("admin", adminPassword),
		strata.WithUserAgent("inventory-sync/1.4"),
		strata.WithRetryPolicy(strata.RetryPolicy{MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second}),
	)
	if err != nil {
		log.Fatal(err)
	}
	me, err := client.Me(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(me.Username, me.Admin)
	// Output: admin true
}

func ExampleClient_CreateInstance() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	inst, err := client.CreateInstance(ctx, "default", strata.CreateInstanceRequest{
		Name:   "example-orders",
		Plan:   "micro",
		Labels: map[string]string{"team": "checkout"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(inst.Name, inst.Status.Phase)

	inst, err = client.WaitForPhase(ctx, "default", "example-orders", strata.PhaseReady)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(inst.Name, inst.Status.Phase)

	if _, err := client.DeleteInstance(ctx, "default", "example-orders"); err != nil {
		log.Fatal(err)
	}
	if err := client.WaitForDeletion(ctx, "default", "example-orders"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted")
	// Output:
	// example-orders Provisioning
	// example-orders Ready
	// deleted
}

func ExampleClient_Instances() {
	ctx := context.Background()
	client, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	// Every instance labelled team=nobody, 50 a page.
	n := 0
	for inst, err := range client.Instances(ctx, "default", &strata.ListInstancesOptions{
		Labels: map[string]string{"team": "nobody"}, PageSize: 50,
	}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(inst.Name, inst.Status.Phase)
		n++
	}
	fmt.Println(n, "instances")
	// Output: 0 instances
}

func ExampleClient_FollowEvents() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: "example-follow", Plan: "micro"}); err != nil {
		log.Fatal(err)
	}
	defer client.DeleteInstance(context.Background(), "default", "example-follow")
	// Follow the service log until the instance is Ready.
	for ev, err := range client.FollowEvents(ctx, "default", "example-follow", nil) {
		if err != nil {
			log.Fatal(err)
		}
		if ev.Kind == strata.EventPhaseChanged && *ev.To == strata.PhaseReady {
			fmt.Println("ready:", ev.Message != "")
			break
		}
	}
	// Output: ready: true
}

func ExampleIsNotFound() {
	client, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.GetInstance(context.Background(), "default", "never-created")
	switch {
	case strata.IsNotFound(err):
		fmt.Println("no such instance")
	case err != nil:
		log.Fatal(err)
	}
	// Output: no such instance
}

func ExampleAPIError() {
	client, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.CreateInstance(context.Background(), "default", strata.CreateInstanceRequest{Name: "Orders!"})
	var apiErr *strata.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode)
		for _, f := range apiErr.Errors {
			fmt.Println(f.Field)
		}
	}
	// Output:
	// 400
	// name
}

func ExampleWithAccessToken() {
	ctx := context.Background()
	admin, err := strata.New(strata.WithBaseURL(baseURL), strata.WithPassword("admin", adminPassword))
	if err != nil {
		log.Fatal(err)
	}
	// A personal access token for a CI job: one project, one role.
	pat, err := admin.CreateAccessToken(ctx, strata.CreateAccessTokenRequest{
		Name: "example ci", Project: "default", Role: strata.RoleViewer, ExpiresInDays: 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer admin.RevokeAccessToken(ctx, pat.ID)

	ci, err := strata.New(strata.WithBaseURL(baseURL), strata.WithAccessToken(pat.Token))
	if err != nil {
		log.Fatal(err)
	}
	_, err = ci.DeleteInstance(ctx, "default", "anything")
	fmt.Println("viewer may delete:", !strata.IsForbidden(err))
	// Output: viewer may delete: false
}
