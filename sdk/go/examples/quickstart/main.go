// Command quickstart creates a PostgreSQL database on Strata, waits until
// it is ready, runs a query over TLS verified against the instance's CA,
// and deletes it. It is the quick start of sdk/go/README.md.
//
//	STRATA_URL=http://127.0.0.1:8080 STRATA_PASSWORD=… go run .
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	strata "github.com/strata-db/strata/sdk/go"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := strata.New(strata.WithBaseURL(os.Getenv("STRATA_URL")),
		strata.WithPassword("admin", os.Getenv("STRATA_PASSWORD")))
	check(err)
	_, err = client.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: "quickstart", Plan: "micro"})
	check(err)
	_, err = client.WaitForPhase(ctx, "default", "quickstart", strata.PhaseReady)
	check(err)
	creds, err := client.GetCredentials(ctx, "default", "quickstart")
	check(err)
	config, err := pgx.ParseConfig(creds.URI)
	check(err)
	config.TLSConfig, err = creds.TLSConfig() // verify the server against the instance's CA
	check(err)
	conn, err := pgx.ConnectConfig(ctx, config)
	check(err)
	var version string
	check(conn.QueryRow(ctx, "select version()").Scan(&version))
	fmt.Println("connected:", version)
	check(conn.Close(ctx))
	_, err = client.DeleteInstance(ctx, "default", "quickstart")
	check(err)
	check(client.WaitForDeletion(ctx, "default", "quickstart"))
	fmt.Println("deleted")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
