package strata

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSEParser(t *testing.T) {
	in := ": a comment\r\nretry: 2500\r\nid: 1\r\nevent: phase_changed\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n" +
		"data:no space\n\n" + // keeps the last id
		"id: 3\rdata: x\r\r" +
		"event: lone\n\n" + // no data: not dispatched
		"id: 4\ndata: unfinished"
	p := newSSEParser(strings.NewReader(in))
	want := []sseEvent{
		{id: "1", event: "phase_changed", data: "{\"a\":\n1}"},
		{id: "1", data: "no space"},
		{id: "3", data: "x"},
	}
	for i, w := range want {
		got, err := p.next()
		if err != nil || got != w {
			t.Fatalf("event %d = %+v, %v; want %+v", i, got, err, w)
		}
	}
	if _, err := p.next(); err != io.EOF {
		t.Fatalf("after the last complete event: %v, want EOF (an event without its blank line is dropped)", err)
	}
	if p.retry != 2500*time.Millisecond {
		t.Fatalf("retry = %v", p.retry)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Wed, 02 Dec 2026 12:00:30 GMT": 30 * time.Second,
		"Wed, 02 Dec 2026 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoffHasJitterWithinBounds(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	seen := map[time.Duration]bool{}
	for attempt := 1; attempt <= 8; attempt++ {
		ceil := min(100*time.Millisecond<<(attempt-1), time.Second)
		for range 50 {
			d := p.backoff(attempt)
			if d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", attempt, d, ceil)
			}
			seen[d] = true
		}
	}
	if len(seen) < 100 {
		t.Fatalf("400 backoffs took only %d values: no jitter", len(seen))
	}
}

func TestRetryableAnswers(t *testing.T) {
	p := DefaultRetryPolicy()
	for _, c := range []struct {
		status     int
		idempotent bool
		want       bool
	}{
		{429, false, true}, {503, false, true}, {502, true, true}, {502, false, false},
		{504, true, true}, {500, true, false}, {409, true, false}, {404, true, false},
	} {
		if got := p.retryable(c.status, c.idempotent); got != c.want {
			t.Errorf("retryable(%d, idempotent %t) = %t", c.status, c.idempotent, got)
		}
	}
}

func TestSecretsAreNotPrinted(t *testing.T) {
	tok := StaticToken("strata_pat_secret")
	if s := tok.String() + tok.GoString(); strings.Contains(s, "secret") {
		t.Fatalf("StaticToken prints its token: %s", s)
	}
	tr := TokenResponse{AccessToken: "eyJsecret", RefreshToken: "strata_rt_secret"}
	if s := tr.String() + tr.GoString(); strings.Contains(s, "secret") {
		t.Fatalf("TokenResponse prints its tokens: %s", s)
	}
}
