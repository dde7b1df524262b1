package strata_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The tests run against a real `strata serve` that TestMain starts on free
// loopback ports with a fresh data directory, and a small OpenID Connect
// provider (idp) that the server trusts.

var (
	baseURL       string // the API, e.g. http://127.0.0.1:41234
	adminPassword string // the platform admin's password
	idp           *fakeIDP
)

const (
	oidcAudience = "strata-sdk-tests"
	oidcGroup    = "sdk-bots"
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		fmt.Fprintln(os.Stderr, "sdk/go tests need a strata binary: `cargo build --bin strata` and set STRATA_BIN=target/debug/strata (make test-sdk-go does both)")
		return 1
	}
	idp = newFakeIDP()
	defer idp.Close()

	// A data dir under /tmp: PostgreSQL (run as the postgres user when the
	// tests run as root) must be able to traverse its parents.
	work, err := os.MkdirTemp("/tmp", "strata-sdk-go.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	adminPassword = randomText(24)
	srv, err := startServer(bin, work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting strata serve:", err)
		return 1
	}
	defer srv.stop()
	baseURL = srv.url
	// The internal tests (package strata) read these.
	os.Setenv("STRATA_TEST_URL", baseURL)
	os.Setenv("STRATA_TEST_PASSWORD", adminPassword)

	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		if missing := uncoveredOperations(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: no test called these operations of api/openapi.json successfully: %s\n", strings.Join(missing, ", "))
			code = 1
		} else {
			fmt.Fprintf(os.Stderr, "every operation of api/openapi.json answered 2xx at least once (%d operations)\n", len(operations()))
		}
	}
	if code != 0 {
		srv.dumpLog()
	}
	return code
}

type server struct {
	cmd  *exec.Cmd
	url  string
	data string
	log  string
	done chan struct{}
}

func startServer(bin, work string) (*server, error) {
	s := &server{data: filepath.Join(work, "data"), log: filepath.Join(work, "strata.err"), done: make(chan struct{})}
	logFile, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "serve", "--data-dir", s.data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "text",
		"--login-attempts-per-address", "1000",
		"--oidc-issuer", idp.URL, "--oidc-audience", oidcAudience,
		"--oidc-role-mapping", oidcGroup+"=default:editor")
	s.cmd.Env = append(os.Environ(), "STRATA_ADMIN_PASSWORD="+adminPassword)
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	re := regexp.MustCompile(`Strata is serving on (http://[0-9.:]+)`)
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.dumpLog()
			return nil, fmt.Errorf("strata serve exited during start-up")
		default:
		}
		if b, _ := os.ReadFile(s.log); re.Match(b) {
			s.url = string(re.FindSubmatch(b)[1])
			fmt.Fprintf(os.Stderr, "strata serve is listening on %s (pid %d)\n", s.url, s.cmd.Process.Pid)
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("strata serve did not listen within 120 s")
}

// stop: SIGTERM, up to 30 s, then SIGKILL, then any PostgreSQL left behind.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "strata serve did not stop in 30 s; killing it")
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = filepath.Walk(s.data, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "postmaster.pid" {
			if b, err := os.ReadFile(path); err == nil {
				line, _, _ := strings.Cut(string(b), "\n")
				if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGINT)
				}
			}
		}
		return nil
	})
}

func (s *server) dumpLog() {
	f, err := os.Open(s.log)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	fmt.Fprintln(os.Stderr, "last lines of the server's log:\n"+strings.Join(lines, "\n"))
}

func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.NewReplacer("/", "a", "+", "b", "=", "").Replace(base64.StdEncoding.EncodeToString(b))
}

// ---- Which operations the tests called ----

var (
	coverMu sync.Mutex
	covered = map[string]bool{}
)

// recorder is an http.RoundTripper that notes each operation of the
// document a request hit with a 2xx answer.
type recorder struct{ next http.RoundTripper }

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	next := r.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil && resp.StatusCode < 300 {
		if id := operationFor(req.Method, req.URL.EscapedPath()); id != "" {
			coverMu.Lock()
			covered[id] = true
			coverMu.Unlock()
		}
	}
	return resp, err
}

type operation struct {
	id, method string
	path       *regexp.Regexp
}

var (
	opsOnce sync.Once
	ops     []operation
)

// operations reads the operations of api/openapi.json.
func operations() []operation {
	opsOnce.Do(func() {
		doc := readDocument()
		for path, methods := range doc.Paths {
			re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), `[^/]+`) + "$")
			for method, op := range methods {
				ops = append(ops, operation{id: op.OperationID, method: strings.ToUpper(method), path: re})
			}
		}
		sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	})
	return ops
}

func operationFor(method, path string) string {
	for _, op := range operations() {
		if op.method == method && op.path.MatchString(path) {
			return op.id
		}
	}
	return ""
}

func uncoveredOperations() []string {
	coverMu.Lock()
	defer coverMu.Unlock()
	var missing []string
	for _, op := range operations() {
		if !covered[op.id] {
			missing = append(missing, op.id)
		}
	}
	return missing
}

// ---- The OpenAPI document ----

// document is what the coverage check reads of api/openapi.json (the
// models are checked against the whole document in contract_internal_test.go).
type document struct {
	Paths map[string]map[string]struct {
		OperationID string `json:"operationId"`
	} `json:"paths"`
}

func readDocument() *document {
	b, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.json"))
	if err != nil {
		panic(err)
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		panic(err)
	}
	return &d
}

// ---- A small OpenID Connect provider ----

// fakeIDP issues EdDSA-signed JWTs by the client-credentials grant.
type fakeIDP struct {
	*httptest.Server
	key          ed25519.PrivateKey
	clientID     string
	clientSecret string
	tokens       atomic.Int32
	lifetime     time.Duration
}

func newFakeIDP() *fakeIDP {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	f := &fakeIDP{key: key, clientID: "ci-pipeline", clientSecret: randomText(18), lifetime: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"issuer": f.URL, "jwks_uri": f.URL + "/jwks", "token_endpoint": f.URL + "/token"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"keys": []any{map[string]any{
			"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(pub)}}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != f.clientID || secret != f.clientSecret || r.PostFormValue("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusUnauthorized)
			writeJSON(w, map[string]any{"error": "invalid_client"})
			return
		}
		f.tokens.Add(1)
		now := time.Now()
		claims := map[string]any{"iss": f.URL, "sub": id, "aud": r.PostFormValue("audience"),
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(f.lifetime).Unix(), "groups": []string{oidcGroup}}
		writeJSON(w, map[string]any{"access_token": f.sign(claims), "token_type": "Bearer", "expires_in": int(f.lifetime.Seconds())})
	})
	f.Server = httptest.NewServer(mux)
	return f
}

func (f *fakeIDP) sign(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "k1"}) + "." + enc(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(f.key, []byte(input)))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
