package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/pizzajoint/mesh/order"
)

// PIICipher seals customer phone and address before they reach MySQL and opens them when read. The key it
// returns is stored with the row (envelope.Keyring implements it with Vault transit data keys).
type PIICipher interface {
	Seal(ctx context.Context, aad []byte, values ...string) (key string, sealed []string, err error)
	Open(ctx context.Context, key string, aad []byte, sealed ...string) ([]string, error)
	Rewrap(ctx context.Context, keys []string) ([]string, error)
}

// WithPII encrypts customer PII with c. Without it PII is stored as given (development only).
func WithPII(c PIICipher) Option { return func(s *Store) { s.pii = piiSealer{c} } }

// piiSealer seals an order's PII before it is written and opens it when read, with the store's PIICipher;
// without one, PII is stored as given.
type piiSealer struct{ c PIICipher }

// openAll opens the PII of every order read.
func (p piiSealer) openAll(ctx context.Context, orders []sealedOrder) error {
	for i := range orders {
		if err := p.open(ctx, &orders[i].Order, orders[i].key); err != nil {
			return err
		}
	}
	return nil
}

// seal encrypts the order's PII and tracking token (in that order), bound to its ID so a value cannot be moved
// to another row.
func (p piiSealer) seal(ctx context.Context, o order.Order) (sealed []string, key any, err error) {
	plain := []string{o.Customer.Phone, o.Customer.Address, o.TrackingToken}
	if p.c == nil {
		return plain, nil, nil
	}
	k, sealed, err := p.c.Seal(ctx, []byte(o.ID), plain...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: seal customer data: %w", order.ErrUnavailable, err)
	}
	return sealed, k, nil
}

func (p piiSealer) open(ctx context.Context, o *order.Order, key sql.NullString) error {
	if !key.Valid {
		return nil // written without encryption
	}
	if p.c == nil {
		return errors.New("order has encrypted customer data but the store has no PII cipher")
	}
	sealed := []string{o.Customer.Phone, o.Customer.Address}
	if o.TrackingToken != "" {
		sealed = append(sealed, o.TrackingToken)
	}
	plain, err := p.c.Open(ctx, key.String, []byte(o.ID), sealed...)
	if err != nil {
		return fmt.Errorf("%w: open customer data of %s: %w", order.ErrUnavailable, o.ID, err)
	}
	o.Customer.Phone, o.Customer.Address = plain[0], plain[1]
	if len(plain) > 2 {
		o.TrackingToken = plain[2]
	}
	return nil
}

// RewrapPII re-encrypts the stored data keys to the transit key's newest version, after the operator rotated
// it. The sealed values do not change. It returns how many keys changed; running it again changes none.
func (s *Store) RewrapPII(ctx context.Context) (int, error) { return s.pii.rewrap(ctx, s.db) }

// rewrap is RewrapPII on db, the primary.
func (p piiSealer) rewrap(ctx context.Context, db *sql.DB) (int, error) {
	if p.c == nil {
		return 0, errors.New("no PII cipher configured")
	}
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT pii_key FROM orders WHERE pii_key IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("list data keys: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	changed := 0
	for start := 0; start < len(keys); start += rewrapBatch {
		batch := keys[start:min(start+rewrapBatch, len(keys))]
		rewrapped, err := p.c.Rewrap(ctx, batch)
		if err != nil {
			return changed, fmt.Errorf("rewrap: %w", err)
		}
		for i, old := range batch {
			if keyVersion(rewrapped[i]) == keyVersion(old) {
				continue // already on the newest version
			}
			if _, err := db.ExecContext(ctx, `UPDATE orders SET pii_key = ? WHERE pii_key = ?`, rewrapped[i], old); err != nil {
				return changed, fmt.Errorf("store rewrapped key: %w", err)
			}
			changed++
		}
	}
	return changed, nil
}

// rewrapBatch bounds one transit/rewrap call.
const rewrapBatch = 100

// keyVersion is the "vault:vN" prefix of a transit ciphertext.
func keyVersion(wrapped string) string {
	if i := strings.Index(wrapped[min(len(wrapped), len("vault:")):], ":"); i >= 0 {
		return wrapped[:len("vault:")+i]
	}
	return wrapped
}
