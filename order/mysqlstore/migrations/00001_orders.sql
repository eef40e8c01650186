-- Orders, their line items and their append-only event log.
-- Written for both MySQL 8 and MariaDB 10.11: no collation names that only one of them knows.

-- +goose Up
CREATE TABLE orders (
    id               CHAR(26) CHARACTER SET ascii NOT NULL,
    status           VARCHAR(20) CHARACTER SET ascii NOT NULL,
    customer_name    VARCHAR(100) NOT NULL,
    -- PII: ciphertext once Vault transit is on; never indexed, never logged.
    customer_phone   TEXT NOT NULL,
    customer_address TEXT NOT NULL,
    total_cents      BIGINT NOT NULL,
    idempotency_key  VARCHAR(128) CHARACTER SET ascii NULL,
    request_hash     BINARY(32) NULL,
    created_at       DATETIME(6) NOT NULL,
    updated_at       DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY orders_idempotency_key (idempotency_key),
    KEY orders_status_id (status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE order_items (
    order_id         CHAR(26) CHARACTER SET ascii NOT NULL,
    line             SMALLINT NOT NULL,
    pizza            VARCHAR(64) NOT NULL,
    size             CHAR(1) CHARACTER SET ascii NOT NULL,
    quantity         SMALLINT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, line),
    CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every status change appends one row here, in the same transaction as the change.
CREATE TABLE order_events (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    order_id   CHAR(26) CHARACTER SET ascii NOT NULL,
    status     VARCHAR(20) CHARACTER SET ascii NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY order_events_order (order_id, id),
    CONSTRAINT order_events_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE order_events;
DROP TABLE order_items;
DROP TABLE orders;
