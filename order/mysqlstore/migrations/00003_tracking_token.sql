-- The customer's tracking token, sealed with the row's PII data key (NULL for rows written before it existed).

-- +goose Up
ALTER TABLE orders ADD COLUMN tracking_token TEXT NULL AFTER pii_key;

-- +goose Down
ALTER TABLE orders DROP COLUMN tracking_token;
