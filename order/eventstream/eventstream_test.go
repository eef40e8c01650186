package eventstream

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/order"
)

func newStream(t *testing.T) (*Publisher, *Streams) {
	t.Helper()
	js, err := jetstream.New(natstest.Start(t, "").Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ensure(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	return NewPublisher(js), NewStreams(js)
}

func publish(t *testing.T, p *Publisher, events ...order.Event) {
	t.Helper()
	for _, e := range events {
		if _, err := p.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// follow runs a stream in the background; its events arrive on the channel, its end on done.
func follow(t *testing.T, s *Streams, req order.StreamRequest) (events chan order.Event, done chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	events, done = make(chan order.Event, 100), make(chan error, 1)
	go func() {
		done <- s.Stream(ctx, req, time.Second, func(e order.Event) error { events <- e; return nil }, func() error { return nil })
	}()
	return events, done
}

func next(t *testing.T, events chan order.Event) order.Event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return order.Event{}
	}
}

func ev(id int64, orderID string, s order.Status) order.Event {
	return order.Event{ID: id, OrderID: orderID, Status: s, At: time.Now().UTC()}
}

// A customer's stream: history first, then live, only its order's events, and it ends at a final status.
// Resuming after an event's cursor gives only what followed. Seen red with the subject filter dropped (another
// order's event came through) and with the final-status end removed (the stream never ended).
func TestCustomerStreamHistoryLiveAndEnd(t *testing.T) {
	p, s := newStream(t)
	publish(t, p, ev(1, "A", order.StatusCreated), ev(2, "B", order.StatusCreated), ev(3, "A", order.StatusAccepted))
	events, done := follow(t, s, order.StreamRequest{OrderID: "A"})
	first, second := next(t, events), next(t, events)
	publish(t, p, ev(4, "B", order.StatusAccepted), ev(5, "A", order.StatusBaking), ev(6, "A", order.StatusCancelled))
	third, fourth := next(t, events), next(t, events)
	got := []int64{first.ID, second.ID, third.ID, fourth.ID}
	if want := []int64{1, 3, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("customer stream gave events %v, want %v", got, want)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stream ended with %v, want nil after CANCELLED", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end after CANCELLED")
	}

	events, _ = follow(t, s, order.StreamRequest{OrderID: "A", After: second.Cursor})
	if e := next(t, events); e.ID != 5 {
		t.Errorf("resumed after event 3's cursor %d: got event %d, want 5", second.Cursor, e.ID)
	}
}

// A staff stream from now sees only what is published after it opened, from every order; resumed after a
// cursor it sees what followed. Seen red with DeliverNew replaced by DeliverAll (history came through).
func TestStaffStreamFromNowAndResume(t *testing.T) {
	p, s := newStream(t)
	publish(t, p, ev(1, "A", order.StatusCreated))
	events, _ := follow(t, s, order.StreamRequest{FromNow: true})
	time.Sleep(300 * time.Millisecond) // the consumer exists before the next publish
	publish(t, p, ev(2, "B", order.StatusCreated), ev(3, "A", order.StatusAccepted))
	b, a := next(t, events), next(t, events)
	if b.ID != 2 || a.ID != 3 {
		t.Fatalf("staff stream from now gave %d, %d, want 2, 3", b.ID, a.ID)
	}
	events, _ = follow(t, s, order.StreamRequest{After: b.Cursor})
	if e := next(t, events); e.ID != 3 {
		t.Errorf("resumed after cursor %d: got event %d, want 3", b.Cursor, e.ID)
	}
}

// A second publish of an event is acknowledged as a duplicate and stored once.
func TestPublishingAnEventTwiceStoresItOnce(t *testing.T) {
	p, s := newStream(t)
	e := ev(7, "A", order.StatusCreated)
	for i, wantDup := range []bool{false, true} {
		dup, err := p.Publish(context.Background(), e)
		if err != nil || dup != wantDup {
			t.Fatalf("publish %d: duplicate %v (%v), want %v", i+1, dup, err, wantDup)
		}
	}
	info, err := s.js.Stream(context.Background(), Name)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// A client that does not take its events ends with ErrSlowSubscriber once its buffer is full.
func TestSlowClientEnds(t *testing.T) {
	p, s := newStream(t)
	s.buffer = 2
	for i := range int64(10) {
		publish(t, p, ev(i+1, "A", order.StatusCreated))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Stream(ctx, order.StreamRequest{}, time.Second, func(order.Event) error {
		time.Sleep(200 * time.Millisecond)
		return nil
	}, func() error { return nil })
	if !errors.Is(err, order.ErrSlowSubscriber) {
		t.Errorf("slow client's stream ended with %v, want ErrSlowSubscriber", err)
	}
}

func TestSentSet(t *testing.T) {
	tests := []struct {
		name     string
		oneOrder bool
		ids      []int64
		want     []bool
	}{
		{"one order: growing IDs are new", true, []int64{1, 2, 5}, []bool{true, true, true}},
		{"one order: an ID at or below the last is old", true, []int64{3, 2, 3, 4}, []bool{true, false, false, true}},
		{"all orders: out of order IDs are new", false, []int64{5, 3, 4}, []bool{true, true, true}},
		{"all orders: a repeat is old", false, []int64{5, 3, 5, 3}, []bool{true, true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSentSet(tt.oneOrder)
			for i, id := range tt.ids {
				if got := s.add(id); got != tt.want[i] {
					t.Errorf("add(%d) = %v, want %v", id, got, tt.want[i])
				}
			}
		})
	}
	t.Run("all orders: the oldest is forgotten past recentIDs", func(t *testing.T) {
		s := newSentSet(false)
		for id := range int64(recentIDs + 1) {
			s.add(id + 1)
		}
		if !s.add(1) {
			t.Error("event 1 still remembered after recentIDs newer ones")
		}
		if s.add(recentIDs + 1) {
			t.Error("the newest event forgotten")
		}
	})
}

// Publishing an event is a producer span whose context travels in the message's headers; delivering it to a
// stream is a consumer span in the stream's trace, linked to that producer span. Both name the order and the
// event, nothing of the customer. Seen red with the headers left out of the message (the delivery had no link).
func TestPublishAndDeliverSpansAreLinked(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	p, s := newStream(t)
	publish(t, p, ev(7, "A", order.StatusCreated))
	streamCtx, streamSpan := tp.Tracer("test").Start(context.Background(), "GET /pizza/{id}/events")
	ctx, cancel := context.WithTimeout(streamCtx, 30*time.Second)
	defer cancel()
	err := s.Stream(ctx, order.StreamRequest{OrderID: "A"}, time.Second, func(e order.Event) error {
		cancel() // one event is the test
		return nil
	}, func() error { return nil })
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	streamSpan.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		spans[sp.Name()] = sp
	}
	pub, del := spans["events publish"], spans["events deliver"]
	if pub == nil || del == nil {
		t.Fatalf("spans %v; want an events publish and an events deliver span", slices.Collect(maps.Keys(spans)))
	}
	if pub.SpanKind() != trace.SpanKindProducer || del.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds: publish %v, deliver %v; want producer and consumer", pub.SpanKind(), del.SpanKind())
	}
	if del.Parent().SpanID() != streamSpan.SpanContext().SpanID() {
		t.Errorf("the delivery's parent is %v, not the stream's span", del.Parent().SpanID())
	}
	if links := del.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != pub.SpanContext().SpanID() ||
		links[0].SpanContext.TraceID() != pub.SpanContext().TraceID() {
		t.Errorf("the delivery's links %+v; want one, to the publish span %v", links, pub.SpanContext())
	}
	for _, sp := range []sdktrace.ReadOnlySpan{pub, del} {
		attrs := map[attribute.Key]string{}
		for _, kv := range sp.Attributes() {
			attrs[kv.Key] = kv.Value.Emit()
		}
		if attrs["pizza.order_id"] != "A" || attrs["messaging.message.id"] != "7" || attrs["pizza.status"] != "CREATED" {
			t.Errorf("%s attributes %v; want the order, the event and its status", sp.Name(), attrs)
		}
	}
}
