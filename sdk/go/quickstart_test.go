package strata_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

// TestQuickstart runs the README's quick start (examples/quickstart, a
// module of its own that brings the pgx driver) against the test server:
// it creates an instance, waits for it, runs a query over verified TLS and
// deletes it.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run the quick start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", ".")
	cmd.Dir = filepath.Join("examples", "quickstart")
	cmd.Env = append(os.Environ(), "STRATA_URL="+baseURL, "STRATA_PASSWORD="+adminPassword,
		"GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./examples/quickstart: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-2], "connected: PostgreSQL ") || lines[len(lines)-1] != "deleted" {
		t.Fatalf("the quick start printed:\n%s\nwant \"connected: PostgreSQL …\" and \"deleted\"", out)
	}
	if _, err := adminClient(t).GetInstance(ctx, "default", "quickstart"); !strata.IsNotFound(err) {
		t.Fatalf("the quick start's instance is still there: %v", err)
	}
}

// TestReadmeShowsTheQuickstart: the README's first Go block is the quick
// start program that TestQuickstart runs (less its doc comment).
func TestReadmeShowsTheQuickstart(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```go\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no Go block")
	}
	src, err := os.ReadFile(filepath.Join("examples", "quickstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, program, _ := strings.Cut(string(src), "package main")
	if strings.TrimSpace(block) != strings.TrimSpace("package main"+program) {
		t.Fatal("README.md's quick start differs from examples/quickstart/main.go: copy the program into the README")
	}
}
