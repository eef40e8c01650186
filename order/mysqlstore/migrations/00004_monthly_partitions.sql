-- Monthly RANGE partitions on each order's creation time, so a month is dropped whole when it expires and a
-- lookup by id (a ULID: its first 48 bits are its creation time in ms) reads one partition. A partitioned
-- InnoDB table allows no foreign keys, and every unique key must hold the partition column. So:
--   * idempotency keys move to their own table, kept for a retention period (purged by partition maintenance);
--   * items and events carry their order's creation time (order_created_at) and are partitioned by it, so a
--     month's orders, items and events leave together;
--   * the foreign keys go: the store writes an order, its items and events in one transaction.
-- Each table starts with one catch-all partition (pmax); `order migrate` runs the partition maintenance right
-- after the migrations, which splits pmax into months (existing orders included) and adds the coming months.
-- The tables are copied once by these ALTERs: on a large production table use an online schema change tool.

-- +goose Up
CREATE TABLE idempotency_keys (
    idempotency_key  VARCHAR(128) CHARACTER SET ascii NOT NULL,
    request_hash     BINARY(32) NOT NULL,
    order_id         CHAR(26) CHARACTER SET ascii NOT NULL,
    order_created_at DATETIME(6) NOT NULL,
    created_at       DATETIME(6) NOT NULL,
    -- Named (not PRIMARY) so a duplicate is recognisable by its key name in the error.
    UNIQUE KEY idempotency_keys_key (idempotency_key),
    KEY idempotency_keys_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT INTO idempotency_keys (idempotency_key, request_hash, order_id, order_created_at, created_at)
SELECT idempotency_key, request_hash, id, created_at, created_at FROM orders WHERE idempotency_key IS NOT NULL;

ALTER TABLE order_items DROP FOREIGN KEY order_items_order;
ALTER TABLE order_events DROP FOREIGN KEY order_events_order;

ALTER TABLE order_items ADD COLUMN order_created_at DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:00' AFTER order_id;
UPDATE order_items i JOIN orders o ON o.id = i.order_id SET i.order_created_at = o.created_at;
ALTER TABLE order_items ALTER COLUMN order_created_at DROP DEFAULT,
    DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, order_created_at, line)
    PARTITION BY RANGE COLUMNS (order_created_at) (PARTITION pmax VALUES LESS THAN (MAXVALUE));

ALTER TABLE order_events ADD COLUMN order_created_at DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:00' AFTER order_id;
UPDATE order_events e JOIN orders o ON o.id = e.order_id SET e.order_created_at = o.created_at;
ALTER TABLE order_events ALTER COLUMN order_created_at DROP DEFAULT,
    DROP PRIMARY KEY, ADD PRIMARY KEY (id, order_created_at)
    PARTITION BY RANGE COLUMNS (order_created_at) (PARTITION pmax VALUES LESS THAN (MAXVALUE));

ALTER TABLE orders DROP KEY orders_idempotency_key, DROP COLUMN idempotency_key, DROP COLUMN request_hash,
    DROP PRIMARY KEY, ADD PRIMARY KEY (id, created_at)
    PARTITION BY RANGE COLUMNS (created_at) (PARTITION pmax VALUES LESS THAN (MAXVALUE));

-- Written by every order instance each second and read on the replica: how far behind it is, in time.
CREATE TABLE replication_heartbeat (
    id   TINYINT NOT NULL,
    beat DATETIME(6) NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;
INSERT INTO replication_heartbeat (id, beat) VALUES (1, UTC_TIMESTAMP(6));

-- +goose Down
DROP TABLE replication_heartbeat;
ALTER TABLE orders REMOVE PARTITIONING;
ALTER TABLE orders DROP PRIMARY KEY, ADD PRIMARY KEY (id),
    ADD COLUMN idempotency_key VARCHAR(128) CHARACTER SET ascii NULL AFTER total_cents,
    ADD COLUMN request_hash BINARY(32) NULL AFTER idempotency_key,
    ADD UNIQUE KEY orders_idempotency_key (idempotency_key);
UPDATE orders o JOIN idempotency_keys k ON k.order_id = o.id
    SET o.idempotency_key = k.idempotency_key, o.request_hash = k.request_hash;
ALTER TABLE order_events REMOVE PARTITIONING;
ALTER TABLE order_events DROP PRIMARY KEY, ADD PRIMARY KEY (id), DROP COLUMN order_created_at,
    ADD CONSTRAINT order_events_order FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE order_items REMOVE PARTITIONING;
ALTER TABLE order_items DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line), DROP COLUMN order_created_at,
    ADD CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id);
DROP TABLE idempotency_keys;
