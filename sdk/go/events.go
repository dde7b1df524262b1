package strata

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// FollowOptions tunes FollowEvents.
type FollowOptions struct {
	// After: start after this event id; the whole log first when empty.
	After string
	// MaxReconnects is how many reconnections in a row may fail before the
	// iteration yields the error and ends (default 5). A reconnection that
	// delivers an event resets the count.
	MaxReconnects int
	// ReconnectDelay is the wait before reconnecting, unless the server set
	// one with "retry:" (default 1 s); it doubles, with jitter, after each
	// failed reconnection, up to 30 s.
	ReconnectDelay time.Duration
	// IdleTimeout: a stream that sends nothing, not even the server's
	// keep-alive comments (every 15 s), for this long is taken as broken and
	// reconnected (default 45 s).
	IdleTimeout time.Duration
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// FollowEvents streams an instance's service log (GET …/events?follow=true,
// text/event-stream): first the events already logged (after opts.After),
// then each new one as it happens, for as long as ctx lasts.
//
// When the connection breaks or the server ends the stream, FollowEvents
// reconnects and resumes after the last event it yielded (the Last-Event-ID
// header), so no event is lost and none is repeated. When a reconnection
// finds the instance gone (404), the iteration ends without error. Errors —
// the first connection's (a 404 included), a refused token, too many failed
// reconnections, ctx's end — are yielded with a zero ServiceEvent, and the
// iteration ends after them. Break out of the loop to stop following.
//
//	for ev, err := range client.FollowEvents(ctx, "default", "orders", nil) {
//		if err != nil { return err }
//		fmt.Println(ev.Time, ev.Message)
//	}
func (c *Client) FollowEvents(ctx context.Context, project, name string, opts *FollowOptions) iter.Seq2[ServiceEvent, error] {
	o := FollowOptions{MaxReconnects: 5, ReconnectDelay: time.Second, IdleTimeout: 45 * time.Second}
	if opts != nil {
		o.After = opts.After
		if opts.MaxReconnects > 0 {
			o.MaxReconnects = opts.MaxReconnects
		}
		if opts.ReconnectDelay > 0 {
			o.ReconnectDelay = opts.ReconnectDelay
		}
		if opts.IdleTimeout > 0 {
			o.IdleTimeout = opts.IdleTimeout
		}
	}
	return func(yield func(ServiceEvent, error) bool) {
		last := o.After
		delay := o.ReconnectDelay
		failures := 0
		connected := false
		for {
			q := url.Values{"follow": {"true"}}
			h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
			if last != "" {
				h.Set("Last-Event-ID", last)
			}
			resp, err := c.send(ctx, request{method: http.MethodGet, path: instancePath(project, name) + "/events",
				query: q, header: h, auth: true, idempotent: true, stream: true})
			if err != nil {
				if ctx.Err() != nil {
					yield(ServiceEvent{}, ctx.Err())
					return
				}
				var apiErr *APIError
				if errors.As(err, &apiErr) {
					if connected && apiErr.StatusCode == http.StatusNotFound {
						return // the instance is gone: its log is complete
					}
					yield(ServiceEvent{}, err)
					return
				}
				failures++
				if failures > o.MaxReconnects {
					yield(ServiceEvent{}, fmt.Errorf("strata: following events of %s/%s: %d reconnections failed: %w",
						project, name, failures-1, err))
					return
				}
			} else {
				if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
					resp.Body.Close()
					yield(ServiceEvent{}, fmt.Errorf("strata: following events of %s/%s: the answer is %q, not text/event-stream",
						project, name, resp.Header.Get("Content-Type")))
					return
				}
				connected = true
				got, retry, stop := c.readStream(resp.Body, o.IdleTimeout, &last, yield)
				if stop {
					return
				}
				if retry > 0 {
					o.ReconnectDelay, delay = retry, retry
				}
				if got {
					failures, delay = 0, o.ReconnectDelay
				} else {
					failures++
					if failures > o.MaxReconnects {
						yield(ServiceEvent{}, fmt.Errorf("strata: following events of %s/%s: the stream ended %d times without an event",
							project, name, failures))
						return
					}
				}
			}
			if err := sleep(ctx, delay/2+time.Duration(jitter(int64(delay/2)))); err != nil {
				yield(ServiceEvent{}, err)
				return
			}
			if failures > 0 {
				delay = min(delay*2, 30*time.Second)
			}
		}
	}
}

// readStream yields the events of one connection. It returns whether any
// event came, the reconnection delay the server asked for, and whether the
// consumer stopped.
func (c *Client) readStream(body io.ReadCloser, idle time.Duration, last *string, yield func(ServiceEvent, error) bool) (got bool, retry time.Duration, stop bool) {
	defer body.Close()
	var timedOut atomic.Bool
	timer := time.AfterFunc(idle, func() { timedOut.Store(true); body.Close() })
	defer timer.Stop()
	p := newSSEParser(body)
	for {
		ev, err := p.next()
		timer.Reset(idle)
		if p.retry > 0 {
			retry = p.retry
		}
		if err != nil {
			// EOF or a broken connection: the caller reconnects.
			return got, retry, false
		}
		var se ServiceEvent
		if jerr := json.Unmarshal([]byte(ev.data), &se); jerr != nil {
			if !yield(ServiceEvent{}, fmt.Errorf("strata: event %q: %w", ev.id, jerr)) {
				return got, retry, true
			}
			continue
		}
		got = true
		if ev.id != "" {
			*last = ev.id
		} else {
			*last = se.ID
		}
		if !yield(se, nil) {
			return got, retry, true
		}
	}
}

// sseParser reads Server-Sent Events as the HTML standard defines them:
// lines ending in LF, CRLF or CR; "field: value"; comments after ":";
// an event is dispatched at a blank line when it has data.
type sseParser struct {
	sc    *bufio.Scanner
	retry time.Duration
	id    string // the last event id, kept across events
}

func newSSEParser(r io.Reader) *sseParser {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	sc.Split(scanLines)
	return &sseParser{sc: sc}
}

// scanLines splits at LF, CRLF or CR.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\r' {
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if !atEOF {
				return 0, nil, nil // a LF may follow
			}
		}
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// next returns the next event with data, or the reader's error (io.EOF at
// the end of the stream; an event not ended by a blank line is dropped).
func (p *sseParser) next() (sseEvent, error) {
	var data strings.Builder
	hasData := false
	event := ""
	for p.sc.Scan() {
		line := p.sc.Text()
		if line == "" {
			if hasData {
				d := data.String()
				return sseEvent{id: p.id, event: event, data: strings.TrimSuffix(d, "\n")}, nil
			}
			event = ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "event":
			event = value
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.id = value
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				p.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := p.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}
