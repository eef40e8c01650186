package sse

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLastEventID(t *testing.T) {
	tests := []struct {
		name, header, query string
		want                int64
		wantErr             bool
	}{
		{"none", "", "", 0, false},
		{"header", "42", "", 42, false},
		{"query", "", "42", 42, false},
		{"header wins over query", "7", "42", 7, false},
		{"spaces around", " 42 ", "", 42, false},
		{"zero", "0", "", 0, false},
		{"largest", "9223372036854775807", "", 1<<63 - 1, false},
		{"overflow", "9223372036854775808", "", 0, true},
		{"negative", "-1", "", 0, true},
		{"not a number", "abc", "", 0, true},
		{"hex", "0x10", "", 0, true},
		{"fraction", "1.5", "", 0, true},
		{"bad query", "", "x", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/events", nil)
			if tt.query != "" {
				r.URL.RawQuery = "last_event_id=" + tt.query
			}
			if tt.header != "" {
				r.Header.Set("Last-Event-ID", tt.header)
			}
			got, err := LastEventID(r)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("LastEventID = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// FuzzLastEventID: any header gives either a non-negative ID that prints back to the same number, or an
// error; never a panic, never a negative ID.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "42", " 42", "-1", "9223372036854775807", "9223372036854775808", "1e3", "+5", "٣", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/events", nil)
		r.Header["Last-Event-Id"] = []string{v}
		id, err := LastEventID(r)
		if err != nil {
			if id != 0 {
				t.Fatalf("error %v with id %d", err, id)
			}
			return
		}
		if id < 0 {
			t.Fatalf("LastEventID(%q) = %d, negative", v, id)
		}
		// The ID the stream will send back as "id: N" must resume at the same place.
		again := httptest.NewRequest("GET", "/events", nil)
		again.Header.Set("Last-Event-ID", strconv.FormatInt(id, 10))
		if id2, err := LastEventID(again); err != nil || id2 != id {
			t.Fatalf("LastEventID(%q) = %d, but its echo gives %d, %v", v, id, id2, err)
		}
	})
}

func TestWriter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Start(w, time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		_ = s.Event(3, "order", []byte(`{"status":"CREATED"}`))
		_ = s.Comment("keep-alive")
		_ = s.Event(4, "order", []byte(`{"status":"ACCEPTED"}`))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := "id: 3\nevent: order\ndata: {\"status\":\"CREATED\"}\n\n: keep-alive\n\nid: 4\nevent: order\ndata: {\"status\":\"ACCEPTED\"}\n\n"
	if string(body) != want {
		t.Errorf("stream = %q, want %q", body, want)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// Each event reaches the client when it is written, not when the handler returns.
func TestWriter_flushesEachEvent(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := Start(w, time.Second)
		for i := range 3 {
			_ = s.Event(int64(i), "order", []byte("{}"))
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != "id: "+strconv.Itoa(i)+"\n" {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		for range 3 { // rest of the event
			_, _ = br.ReadString('\n')
		}
		next <- struct{}{}
	}
}

// A client that stops reading is found by the next write's deadline instead of holding the handler forever,
// even though the server's own write timeout was lifted.
func TestWriter_writeDeadline(t *testing.T) {
	result := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Start(w, 100*time.Millisecond)
		if err != nil {
			result <- err
			return
		}
		big := []byte(strings.Repeat("x", 64<<10))
		for {
			if err := s.Event(1, "order", big); err != nil {
				result <- err
				return
			}
		}
	}))
	srv.Config.WriteTimeout = time.Hour
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case err := <-result:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write failed with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writing to a client that does not read never failed")
	}
}
