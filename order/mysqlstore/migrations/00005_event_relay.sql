-- The event log is the outbox of the transactions that write it: the relay (order/eventrelay) publishes each
-- event to JetStream, and marks it relayed once the server acknowledged it. Events written before the relay
-- existed start unrelayed too, so the stream is built from the whole log. The key lets the relay find what is
-- left to publish without reading the relayed rows.

-- +goose Up
ALTER TABLE order_events ADD COLUMN relayed BOOLEAN NOT NULL DEFAULT FALSE,
    ADD KEY order_events_unrelayed (relayed, id);

-- +goose Down
ALTER TABLE order_events DROP KEY order_events_unrelayed, DROP COLUMN relayed;
