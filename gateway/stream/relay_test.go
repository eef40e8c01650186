package stream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/gateway/stream"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// seen is what the order service was asked.
type seen struct {
	mu      sync.Mutex
	path    string
	query   string
	headers http.Header
}

// orderStream stands in for order's event stream: one event after Last-Event-ID, then open until the relay
// leaves; or, with status, an error answer.
func orderStream(t *testing.T, status int, s *seen) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.path, s.query, s.headers = r.URL.Path, r.URL.RawQuery, r.Header.Clone()
		s.mu.Unlock()
		if status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, `{"error":"busy","code":"unavailable"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 8\nevent: order\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The relay passes order's stream on as it comes and ends it cleanly at its lifetime or the gateway's shutdown,
// so the client resumes; it never passes on the client's credentials; an error answer of order's is passed on
// as it came and returned as a *RelayedError; an order it cannot reach is order.ErrUnavailable, with nothing
// written.
func TestRelay(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name     string
		status   int  // of order's answer (0: a stream)
		down     bool // order unreachable
		lifetime time.Duration
		shutdown bool // the gateway shuts down once the first event is read
		want     func(error) bool
		wantCode int
		wantBody string
	}{
		{"ends at its lifetime", 0, false, 200 * time.Millisecond, false, isNil, 200, "id: 8\nevent: order\ndata: {}\n\n"},
		{"ends at shutdown", 0, false, 0, true, isNil, 200, "id: 8\nevent: order\ndata: {}\n\n"},
		{"order refuses", 503, false, time.Minute, false, relayed(503), 503, `{"error":"busy","code":"unavailable"}`},
		{"order unreachable", 0, true, time.Minute, false, unavailable, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seen
			orderURL, _ := url.Parse(orderStream(t, tt.status, &s).URL)
			if tt.down {
				orderURL, _ = url.Parse(closed.URL)
			}
			relay := stream.NewRelay(orderURL, http.DefaultTransport, func(r *http.Request) string {
				return "/orders/" + r.PathValue("id") + "/events"
			})
			shutdown, endStreams := context.WithCancel(context.Background())
			defer endStreams()
			errs := make(chan error, 1)
			mux := http.NewServeMux()
			mux.HandleFunc("GET /pizza/{id}/events", func(w http.ResponseWriter, r *http.Request) {
				err := stream.Relay(r.Context(), w, r, relay, shutdown, tt.lifetime)
				if err != nil && !errors.As(err, new(*stream.RelayedError)) {
					w.WriteHeader(599) // the gateway answers it; here, a mark that nothing was written
				}
				errs <- err
			})
			front := httptest.NewServer(reqid.Middleware(mux))
			defer front.Close()

			req, _ := http.NewRequest("GET", front.URL+"/pizza/o1/events?token=secret-token&last_event_id=7", nil)
			req.Header.Set("Authorization", "Bearer tok-alice")
			req.Header.Set("Cookie", "pizza_staff=session-id")
			req.Header.Set(reqid.Header, "req-1")
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req) // a stream that never ends fails, not hangs
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if tt.shutdown {
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				endStreams()
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("stream ended with %v, want a clean end", err)
			}
			got := <-errs
			if !tt.want(got) {
				t.Errorf("Relay returned %v", got)
			}
			if tt.down {
				if resp.StatusCode != 599 {
					t.Errorf("status %d: the relay wrote an answer for an order it could not reach", resp.StatusCode)
				}
				return
			}
			body := string(rest)
			if tt.shutdown {
				body = "id: 8\n" + body
			}
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Errorf("answered %d %q, want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.path != "/orders/o1/events" || s.query != "last_event_id=7" {
				t.Errorf("order asked for %s?%s, want /orders/o1/events?last_event_id=7 (never the token)", s.path, s.query)
			}
			for _, h := range []string{"Authorization", "Cookie"} {
				if v := s.headers.Get(h); v != "" {
					t.Errorf("order was sent the client's %s %q", h, v)
				}
			}
			if strings.Contains(fmt.Sprint(s.headers), "secret-token") {
				t.Errorf("order was sent the tracking token: %v", s.headers)
			}
			if v := s.headers.Get(reqid.Header); v != "req-1" {
				t.Errorf("order got request ID %q, want req-1", v)
			}
		})
	}
}

func isNil(err error) bool { return err == nil }

func relayed(status int) func(error) bool {
	return func(err error) bool {
		var re *stream.RelayedError
		return errors.As(err, &re) && re.Status == status
	}
}

func unavailable(err error) bool { return errors.Is(err, order.ErrUnavailable) }
