// Package sse writes server-sent events. A stream outlives the server's read and write timeouts, so it lifts
// them, and instead bounds every single write: a client that stops reading is found by the next heartbeat.
package sse

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Writer writes events to one client.
type Writer struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	writeTimeout time.Duration
}

// LiftDeadlines removes the server's read and write deadlines for a long-lived response (streams, proxies of
// streams). Without it the server's timeouts would end the stream, and an expiring read deadline cancels the
// request's context.
func LiftDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// Start answers 200 with the event-stream headers.
func Start(w http.ResponseWriter, writeTimeout time.Duration) (*Writer, error) {
	LiftDeadlines(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell buffering proxies to pass events through at once
	w.WriteHeader(http.StatusOK)
	s := &Writer{w: w, rc: http.NewResponseController(w), writeTimeout: writeTimeout}
	return s, s.rc.Flush()
}

// Event writes one event; data must be a single line (JSON is).
func (s *Writer) Event(id int64, event string, data []byte) error {
	return s.write(fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", id, event, data))
}

// Comment writes a comment line: a heartbeat that clients ignore.
func (s *Writer) Comment(text string) error { return s.write(": " + text + "\n\n") }

func (s *Writer) write(msg string) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if _, err := s.w.Write([]byte(msg)); err != nil {
		return err
	}
	return s.rc.Flush()
}

// LastEventID is where a reconnecting client left off: the Last-Event-ID header its EventSource sends, or a
// last_event_id query parameter. 0 means from the beginning.
func LastEventID(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("Last-Event-ID %q is not an event id", v)
	}
	return id, nil
}
