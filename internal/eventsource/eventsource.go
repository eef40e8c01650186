// Package eventsource follows a server-sent event stream for tests as a browser's EventSource does: when the
// connection drops or the server answers 503, it waits and connects again with the Last-Event-ID of the last
// event it got, and it records every event and every reconnect, so a test can check that nothing was lost or
// repeated across them.
package eventsource

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Frame is one event of the stream.
type Frame struct {
	ID   int64  // the event's id field: what the client sends back as Last-Event-ID
	Data string // the data field (lines joined with \n)
	At   time.Time
}

// Config is what to follow and how.
type Config struct {
	HTTP   *http.Client
	URL    string
	Header http.Header // sent with every request (e.g. a tracking token or a bearer token)
	// Retry is the pause before connecting again (EventSource's reconnection time).
	Retry time.Duration
	// Last reports whether a frame is the stream's last one (a customer stream's final status): the source then
	// stops instead of connecting again. Nil: the source follows until its context ends.
	Last func(Frame) bool
}

// Source is a followed stream.
type Source struct {
	cfg  Config
	done chan struct{}

	mu       sync.Mutex
	frames   []Frame
	lastID   int64
	connects []time.Time        // each answered 200, the first included
	drops    []Drop             // each end of a connection or refusal
	err      error              // why the source stopped, other than its context or its last frame
	finished bool               // it got its last frame
	dropConn context.CancelFunc // ends the current connection (Interrupt)
}

// Drop is a connection that ended or an open the server refused.
type Drop struct {
	At     time.Time
	Status int   // the refusal's status (503), or 0 for a connection that ended
	Err    error // the read's error for a connection that failed, nil for a clean end
}

// Follow connects and follows the stream in a goroutine until ctx ends, the stream's last frame arrives, or the
// server answers with a status other than 200 and 503 (Err).
func Follow(ctx context.Context, cfg Config) *Source {
	s := &Source{cfg: cfg, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		status, err := s.connect(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if s.finished {
			s.mu.Unlock()
			return
		}
		if status != http.StatusOK && status != http.StatusServiceUnavailable && status != 0 {
			s.err = fmt.Errorf("GET %s: %d", s.cfg.URL, status)
			s.mu.Unlock()
			return
		}
		if status == http.StatusOK {
			status = 0
		}
		s.drops = append(s.drops, Drop{At: time.Now(), Status: status, Err: err})
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Retry):
		}
	}
}

// connect opens the stream once and reads it until it ends: its status (0: no answer) and the read's error.
func (s *Source) connect(ctx context.Context) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.dropConn = cancel
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, "GET", s.cfg.URL, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range s.cfg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	s.mu.Lock()
	if s.lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(s.lastID, 10))
	}
	s.mu.Unlock()
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, nil
	}
	s.mu.Lock()
	s.connects = append(s.connects, time.Now())
	s.mu.Unlock()
	err = Read(resp.Body, func(f Frame) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.frames = append(s.frames, f)
		if f.ID > 0 {
			s.lastID = f.ID
		}
		if s.cfg.Last != nil && s.cfg.Last(f) {
			s.finished = true
			return false
		}
		return true
	})
	return http.StatusOK, err
}

// Interrupt drops the current connection, as a network that fails under a browser: the source connects again
// after its Retry, with its Last-Event-ID.
func (s *Source) Interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropConn != nil {
		s.dropConn()
	}
}

// Read parses server-sent events from r as EventSource does (a blank line dispatches the event; an id field
// is remembered across events; comments are skipped), calling fn for each until it returns false or r ends
// (nil, or the read's error).
func Read(r io.Reader, fn func(Frame) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var id int64
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				if !fn(Frame{ID: id, Data: strings.Join(data, "\n"), At: time.Now()}) {
					return nil
				}
			}
			data = nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			// a comment (keep-alive)
		case "id":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return fmt.Errorf("bad event id %q: %w", value, err)
			}
			id = n
		case "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}

// Wait waits until the source stopped (its last frame, its context, or a refusal) and returns why it stopped
// if not by its last frame or its context.
func (s *Source) Wait() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed once the source stopped.
func (s *Source) Done() <-chan struct{} { return s.done }

// Finished reports whether the stream's last frame arrived.
func (s *Source) Finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// Frames returns a copy of every frame so far, in the order they arrived.
func (s *Source) Frames() []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Frame(nil), s.frames...)
}

// Connects returns when each connection was answered 200.
func (s *Source) Connects() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.connects...)
}

// Drops returns each connection's end and each refusal, in order.
func (s *Source) Drops() []Drop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Drop(nil), s.drops...)
}

// Reconnects returns when each connection after the first was answered 200.
func (s *Source) Reconnects() []time.Time {
	c := s.Connects()
	if len(c) == 0 {
		return nil
	}
	return c[1:]
}
