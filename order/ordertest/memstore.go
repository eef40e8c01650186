// Package ordertest holds test doubles of interfaces the order package owns.
package ordertest

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pizzajoint/mesh/order"
)

// MemStore is an in-memory order.Store for unit tests of the layers above the store. The store's real
// behaviour is tested against MariaDB in order/mysqlstore.
type MemStore struct {
	mu     sync.Mutex
	orders map[string]order.Order
	keys   map[string]struct {
		id   string
		hash []byte
	}
	// Events counts event rows per order.
	Events map[string]int
	// Err, when set, is returned by every call (to simulate a failing database).
	Err error
}

var _ order.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		orders: map[string]order.Order{},
		keys: map[string]struct {
			id   string
			hash []byte
		}{},
		Events: map[string]int{},
	}
}

func (m *MemStore) Create(_ context.Context, o order.Order, idem order.Idempotency) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return m.Err
	}
	if idem.Key != "" {
		if _, taken := m.keys[idem.Key]; taken {
			return order.ErrIdempotencyKeyTaken
		}
		m.keys[idem.Key] = struct {
			id   string
			hash []byte
		}{o.ID, idem.RequestHash}
	}
	m.orders[o.ID] = o
	m.Events[o.ID]++
	return nil
}

func (m *MemStore) OrderByIdempotencyKey(_ context.Context, key string) (order.Order, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[key]
	if !ok {
		return order.Order{}, nil, order.ErrNotFound
	}
	return m.orders[k.id], k.hash, nil
}

func (m *MemStore) Get(_ context.Context, id string) (order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return order.Order{}, m.Err
	}
	o, ok := m.orders[id]
	if !ok {
		return order.Order{}, order.ErrNotFound
	}
	return o, nil
}

func (m *MemStore) List(_ context.Context, f order.ListFilter) (order.Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []order.Order
	for _, o := range m.orders {
		if o.ID > f.After && (f.Status == "" || o.Status == f.Status) {
			all = append(all, o)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	p := order.Page{Orders: all}
	if len(all) > f.Limit {
		p.Orders = all[:f.Limit]
		p.NextCursor = p.Orders[f.Limit-1].ID
	}
	return p, nil
}

func (m *MemStore) Transition(_ context.Context, id string, from []order.Status, to order.Status, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.orders[id]
	if !ok {
		return order.ErrNotFound
	}
	if !slices.Contains(from, o.Status) {
		return &order.IllegalTransitionError{From: o.Status, To: to}
	}
	o.Status, o.UpdatedAt = to, at
	m.orders[id] = o
	m.Events[id]++
	return nil
}
