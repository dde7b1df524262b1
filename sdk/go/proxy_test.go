package strata_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// faultProxy stands between a client and the real server and injects
// faults: for a request whose "METHOD path" has faults queued it takes the
// next one; every other request goes to the server unchanged.
type faultProxy struct {
	*httptest.Server
	upstream *url.URL
	rp       *httputil.ReverseProxy

	mu     sync.Mutex
	faults map[string][]string
	seen   []seenRequest
}

type seenRequest struct {
	key            string // METHOD path
	idempotencyKey string
	lastEventID    string
	fault          string
}

// The faults a proxy can inject.
const (
	fault503       = "503"        // 503 with Retry-After: 1
	fault429       = "429"        // 429 with Retry-After: 1
	fault503Long   = "503-long"   // 503 with Retry-After: 120
	faultDrop      = "drop"       // close the connection without forwarding
	faultLostReply = "lost-reply" // forward, then close the connection without the answer
	faultEndAfter1 = "end-after-1"
	faultCutAfter1 = "cut-after-1" // an event stream: end cleanly / break the connection after one event
)

func newFaultProxy(t *testing.T) *faultProxy {
	up, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{upstream: up, faults: map[string][]string{}}
	p.rp = httputil.NewSingleHostReverseProxy(up)
	p.rp.FlushInterval = -1
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *faultProxy) inject(method, path string, faults ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := method + " " + path
	p.faults[k] = append(p.faults[k], faults...)
}

func (p *faultProxy) requests(method, path string) []seenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []seenRequest
	for _, s := range p.seen {
		if s.key == method+" "+path {
			out = append(out, s)
		}
	}
	return out
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	k := r.Method + " " + r.URL.Path
	p.mu.Lock()
	fault := ""
	if q := p.faults[k]; len(q) > 0 {
		fault, p.faults[k] = q[0], q[1:]
	}
	p.seen = append(p.seen, seenRequest{key: k, idempotencyKey: r.Header.Get("Idempotency-Key"),
		lastEventID: r.Header.Get("Last-Event-ID"), fault: fault})
	p.mu.Unlock()

	switch fault {
	case "":
		p.rp.ServeHTTP(w, r)
	case fault503, fault429, fault503Long:
		status, after := http.StatusServiceUnavailable, "1"
		if fault == fault429 {
			status = http.StatusTooManyRequests
		}
		if fault == fault503Long {
			after = "120"
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", after)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"type":"about:blank","title":"`+http.StatusText(status)+`","status":`+strconv.Itoa(status)+`,"detail":"injected by the test proxy"}`)
	case faultDrop:
		hangUp(w)
	case faultLostReply:
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		hangUp(w)
	case faultEndAfter1, faultCutAfter1:
		p.streamOneEvent(w, r, fault == faultCutAfter1)
	}
}

func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// streamOneEvent forwards an event stream until one event has passed, then
// ends the answer (cut: breaks the connection instead).
func (p *faultProxy) streamOneEvent(w http.ResponseWriter, r *http.Request, cut bool) {
	u := *p.upstream
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	data := false
	for {
		line, err := br.ReadString('\n')
		_, _ = io.WriteString(w, line)
		w.(http.Flusher).Flush()
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(line, "data:"):
			data = true
		case strings.TrimRight(line, "\r\n") == "" && data:
			if cut {
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}

// throughProxy is a client of the proxy that opens a new connection for
// every request, so that a broken connection is the SDK's to handle (Go's
// transport would retry some requests on a reused one by itself).
func throughProxy(p *faultProxy) *http.Client {
	return &http.Client{Transport: recorder{next: &http.Transport{DisableKeepAlives: true}}}
}
