package eventsource

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// flakyServer serves events 1..total after the request's Last-Event-ID, and fails in the ways a stream fails:
// it refuses some opens with 503, ends some connections cleanly after a few events, and cuts others in the
// middle of an event (that event must not count).
type flakyServer struct {
	total, perConn int
	refuse         int // the first opens it answers 503

	mu      sync.Mutex
	opens   int
	resumes []string // the Last-Event-ID of each open
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.opens++
	n := f.opens
	f.resumes = append(f.resumes, r.Header.Get("Last-Event-ID"))
	f.mu.Unlock()
	if n <= f.refuse {
		http.Error(w, "event stream unavailable", http.StatusServiceUnavailable)
		return
	}
	after, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	fmt.Fprint(w, ": keep-alive\n\n")
	for id := after + 1; id <= f.total; id++ {
		if id == after+f.perConn+1 {
			if n%2 == 0 { // cut in the middle of the next event: id and half its data, no blank line
				fmt.Fprintf(w, "id: %d\ndata: {\"n\":", id)
				fl.Flush()
				panic(http.ErrAbortHandler)
			}
			return // a clean end
		}
		fmt.Fprintf(w, "id: %d\nevent: order\ndata: {\"n\":%d}\n\n", id, id)
		fl.Flush()
	}
	// The last event sent: the client stops after it. A client that does not is refused from now on.
}

func TestFollowResumesWithoutLossOrRepeat(t *testing.T) {
	tests := []struct {
		name                   string
		total, perConn, refuse int
		wantConnects           int
	}{
		{"one connection", 5, 100, 0, 1},
		{"dropped every 3 events", 10, 3, 0, 4},
		{"503 twice first", 4, 100, 2, 1},
		{"503s and drops", 9, 2, 3, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &flakyServer{total: tt.total, perConn: tt.perConn, refuse: tt.refuse}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			last := fmt.Sprintf(`{"n":%d}`, tt.total)
			s := Follow(ctx, Config{HTTP: ts.Client(), URL: ts.URL, Retry: 10 * time.Millisecond,
				Last: func(f Frame) bool { return f.Data == last }})
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			if !s.Finished() {
				t.Fatalf("stopped before the last event: %v", ctx.Err())
			}
			var got []string
			for _, f := range s.Frames() {
				got = append(got, fmt.Sprintf("%d=%s", f.ID, f.Data))
			}
			var want []string
			for id := 1; id <= tt.total; id++ {
				want = append(want, fmt.Sprintf(`%d={"n":%d}`, id, id))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("frames\n got %v\nwant %v", got, want)
			}
			if c := len(s.Connects()); c != tt.wantConnects {
				t.Errorf("%d connections, want %d", c, tt.wantConnects)
			}
			if r := len(s.Reconnects()); r != tt.wantConnects-1 {
				t.Errorf("%d reconnects, want %d", r, tt.wantConnects-1)
			}
			refused := 0
			for _, d := range s.Drops() {
				if d.Status == http.StatusServiceUnavailable {
					refused++
				}
			}
			if refused != tt.refuse {
				t.Errorf("%d refusals recorded, want %d", refused, tt.refuse)
			}
			// Each open resumes after the last whole event the client got.
			srv.mu.Lock()
			defer srv.mu.Unlock()
			prev := ""
			for i, r := range srv.resumes {
				if i > 0 && r == "" && prev != "" {
					t.Errorf("open %d lost the Last-Event-ID %s", i+1, prev)
				}
				prev = r
			}
		})
	}
}

func TestFollowStopsOnOtherRefusals(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := Follow(ctx, Config{HTTP: ts.Client(), URL: ts.URL, Retry: time.Millisecond})
	if err := s.Wait(); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Wait() = %v, want the 404", err)
	}
}

func TestInterruptResumesAfterTheLastEvent(t *testing.T) {
	// Each connection serves what its own channel gets.
	conns := []chan int{make(chan int), make(chan int)}
	var mu sync.Mutex
	var resumes []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(resumes)
		resumes = append(resumes, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		if n >= len(conns) {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case id := <-conns[n]:
				fmt.Fprintf(w, "id: %d\ndata: %d\n\n", id, id)
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := Follow(ctx, Config{HTTP: ts.Client(), URL: ts.URL, Retry: 10 * time.Millisecond,
		Last: func(f Frame) bool { return f.Data == "3" }})
	conns[0] <- 1
	conns[0] <- 2
	for len(s.Frames()) < 2 {
		time.Sleep(time.Millisecond)
	}
	s.Interrupt()
	conns[1] <- 3 // on the new connection
	if err := s.Wait(); err != nil || !s.Finished() {
		t.Fatalf("Wait() = %v, finished %v", err, s.Finished())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(resumes, ",") != ",2" || len(s.Frames()) != 3 || len(s.Reconnects()) != 1 || len(s.Drops()) != 1 {
		t.Errorf("Last-Event-IDs %q, frames %v, reconnects %d, drops %v; want \"\" then 2, 3 frames, 1 reconnect, 1 drop",
			resumes, s.Frames(), len(s.Reconnects()), s.Drops())
	}
}
