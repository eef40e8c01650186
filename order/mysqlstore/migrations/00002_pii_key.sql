-- Customer phone and address are sealed with a data key from Vault transit (envelope encryption). The data key,
-- wrapped by the transit key, is kept with the row; rewrapping after a transit key rotation changes only this
-- column. NULL means the row was written without encryption (development without Vault).

-- +goose Up
ALTER TABLE orders ADD COLUMN pii_key VARCHAR(255) CHARACTER SET ascii NULL AFTER customer_address,
    ADD KEY orders_pii_key (pii_key);

-- +goose Down
ALTER TABLE orders DROP KEY orders_pii_key, DROP COLUMN pii_key;
