// Package eventstream carries the order event log on NATS JetStream: the stream's shape, publishing an event
// with its ID as the message ID (so a second publish of it is dropped by the server), and serving
// order.EventStreams from ordered consumers, one per open stream, filtered to one order for a customer.
//
// A stream's resume point (the SSE event id a client sends back as Last-Event-ID) is the JetStream sequence of
// the last message it got, not the event's ID: events are stored in the order they were relayed, which is commit
// order, and a transaction that commits after a later event ID would be skipped by a resume from an event ID.
package eventstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/tracing"
)

const (
	// Name is the stream holding every order's events, on subjects orders.<order id>.
	Name          = "ORDERS"
	subjectPrefix = "orders."
	// DedupWindow is how long the server remembers an event ID it stored. It must outlast the relay's longest
	// path from a publish to recording it as relayed (a restart included), or a republished event is stored twice.
	DedupWindow = 10 * time.Minute
	// Retention is how long the stream keeps an event: longer than any order is tracked.
	Retention = 31 * 24 * time.Hour
	// MaxConsumers bounds the stream's consumers: one per open SSE stream on every order instance. It is above
	// the gateway's cap on open streams (GATEWAY_LIMITS_STREAMS, 10,000), with room for consumers that ended and
	// are being cleaned up; the server's default (1,000 per stream) is below a thousand customers and the staff.
	MaxConsumers = 20_000
)

// Subject is the subject of one order's events.
func Subject(orderID string) string { return subjectPrefix + orderID }

// Config is the stream's configuration with replicas copies of each message (1 on one node, 3 on a cluster).
// The servers fsync every write (sync_interval: always, in their config): an acknowledged event is on disk.
func Config(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:         Name,
		Description:  "order status events, relayed from the order_events outbox",
		Subjects:     []string{subjectPrefix + ">"},
		Storage:      jetstream.FileStorage,
		Replicas:     replicas,
		Duplicates:   DedupWindow,
		MaxConsumers: MaxConsumers,
		MaxAge:       Retention,
		Discard:      jetstream.DiscardOld,
		DenyDelete:   true,
		DenyPurge:    true,
	}
}

// Ensure creates the stream, or updates it to Config(replicas).
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if _, err := js.CreateOrUpdateStream(ctx, Config(replicas)); err != nil {
		return fmt.Errorf("stream %s: %w", Name, err)
	}
	return nil
}

// Publisher publishes events to the stream.
type Publisher struct{ js jetstream.JetStream }

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores e in the stream and returns once the server acknowledged it (on disk, on a quorum of
// replicas). duplicate is true when the server already held e: an earlier publish was acknowledged but not
// recorded, or another relay got there first.
func (p *Publisher) Publish(ctx context.Context, e order.Event) (duplicate bool, err error) {
	data, err := jsonv2.Marshal(e)
	if err != nil {
		return false, err
	}
	msg := &nats.Msg{Subject: Subject(e.OrderID), Data: data, Header: nats.Header{}}
	// The publish span's context travels in the message's headers, so each delivery of the event links to it.
	ctx, span := otel.Tracer(tracing.Tracer).Start(ctx, "events publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(append(eventAttrs(e), semconv.MessagingOperationTypeSend)...))
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(msg.Header))
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(strconv.FormatInt(e.ID, 10)), jetstream.WithExpectStream(Name))
	if err != nil {
		err = fmt.Errorf("publish event %d: %w", e.ID, err)
		tracing.End(span, err)
		return false, err
	}
	span.SetAttributes(attribute.Bool("pizza.duplicate", ack.Duplicate))
	tracing.End(span, nil)
	return ack.Duplicate, nil
}

// eventAttrs describe an event in its spans: IDs and status, nothing of the customer's.
func eventAttrs(e order.Event) []attribute.KeyValue {
	return []attribute.KeyValue{semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(Name),
		semconv.MessagingMessageID(strconv.FormatInt(e.ID, 10)), attribute.String("pizza.order_id", e.OrderID),
		attribute.String("pizza.status", string(e.Status))}
}

// delivery is an event read from the stream with the context of the span that published it (invalid when the
// publisher recorded none).
type delivery struct {
	event     order.Event
	published trace.SpanContext
}

// Streams serves order.EventStreams from the stream.
type Streams struct {
	js jetstream.JetStream
	// buffer is how far a client may fall behind before its stream ends with ErrSlowSubscriber.
	buffer int
}

var _ order.EventStreams = (*Streams)(nil)

// subscriberBuffer is how many events a stream holds for a client that is slow to take them.
const subscriberBuffer = 256

// NewStreams returns Streams on js.
func NewStreams(js jetstream.JetStream) *Streams { return &Streams{js: js, buffer: subscriberBuffer} }

// Ready reports an error until the stream can be read.
func (s *Streams) Ready(ctx context.Context) error {
	if _, err := s.js.Stream(ctx, Name); err != nil {
		return fmt.Errorf("%w: event stream: %w", order.ErrUnavailable, err)
	}
	return nil
}

// Stream follows the stream for one client: one order's events from the start (or after req.After), or every
// order's (from now, or after req.After). Each event's Cursor is its stream sequence. An event already sent is
// never sent again: for one order, event IDs only grow; for all orders, the last IDs sent are remembered.
func (s *Streams) Stream(ctx context.Context, req order.StreamRequest, heartbeat time.Duration, send func(order.Event) error, idle func() error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if req.OrderID != "" {
		cfg.FilterSubjects = []string{Subject(req.OrderID)}
	}
	switch {
	case req.After > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, uint64(req.After)+1
	case req.FromNow:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cons, err := s.js.OrderedConsumer(ctx, Name, cfg)
	if err != nil {
		return fmt.Errorf("%w: event stream consumer: %w", order.ErrUnavailable, err)
	}
	events := make(chan delivery, s.buffer)
	failed := make(chan error, 1)
	slow := make(chan struct{})
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e, err := decode(m)
		if err != nil {
			fail(err)
			return
		}
		published := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(),
			propagation.HeaderCarrier(m.Headers())))
		select {
		case events <- delivery{e, published}:
		case <-slow:
		default:
			close(slow)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Missed heartbeats and reconnects are the ordered consumer's to recover from; a deleted stream is not.
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			fail(fmt.Errorf("%w: event stream: %w", order.ErrUnavailable, err))
		}
	}))
	if err != nil {
		return fmt.Errorf("%w: event stream consume: %w", order.ErrUnavailable, err)
	}
	defer cc.Stop()

	sent := newSentSet(req.OrderID != "")
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-failed:
			return err
		case <-slow:
			return order.ErrSlowSubscriber
		case <-tick.C:
			if err := idle(); err != nil {
				return err
			}
		case d := <-events:
			e := d.event
			if !sent.add(e.ID) {
				continue
			}
			if err := deliver(ctx, d, send); err != nil {
				return err
			}
			if req.OrderID != "" && e.Status.Final() {
				return nil
			}
		}
	}
}

// deliver sends one event to the client in a span of the stream's trace, linked to the span that published it.
func deliver(ctx context.Context, d delivery, send func(order.Event) error) error {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(append(eventAttrs(d.event), semconv.MessagingOperationTypeProcess)...)}
	if d.published.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: d.published}))
	}
	_, span := otel.Tracer(tracing.Tracer).Start(ctx, "events deliver", opts...)
	err := send(d.event)
	tracing.End(span, err)
	return err
}

func decode(m jetstream.Msg) (order.Event, error) {
	var e order.Event
	if err := jsonv2.Unmarshal(m.Data(), &e); err != nil {
		return e, fmt.Errorf("event on %s: %w", m.Subject(), err)
	}
	meta, err := m.Metadata()
	if err != nil {
		return e, fmt.Errorf("event on %s: %w", m.Subject(), err)
	}
	e.Cursor = int64(meta.Sequence.Stream)
	return e, nil
}

// sentSet remembers the event IDs a stream sent. One order's IDs only grow (its changes are serialised by its
// row lock and relayed in ID order), so its highest ID is enough; every order's interleave, so the last
// recentIDs are kept. A duplicate reaches the stream only when the server stored an event twice, which the
// dedup window makes rare; this keeps it from the client either way.
type sentSet struct {
	oneOrder bool
	max      int64
	ring     []int64
	next     int
	seen     map[int64]struct{}
}

const recentIDs = 4096

func newSentSet(oneOrder bool) *sentSet {
	if oneOrder {
		return &sentSet{oneOrder: true}
	}
	return &sentSet{ring: make([]int64, 0, recentIDs), seen: make(map[int64]struct{}, recentIDs)}
}

// add reports whether id is new, and remembers it.
func (s *sentSet) add(id int64) bool {
	if s.oneOrder {
		if id <= s.max {
			return false
		}
		s.max = id
		return true
	}
	if _, dup := s.seen[id]; dup {
		return false
	}
	if len(s.ring) < recentIDs {
		s.ring = append(s.ring, id)
	} else {
		delete(s.seen, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % recentIDs
	}
	s.seen[id] = struct{}{}
	return true
}
