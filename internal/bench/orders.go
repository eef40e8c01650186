package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/order"
)

// Orders makes realistic POST /pizza requests: a customer, 1 to 3 menu items, and a unique Idempotency-Key
// each, like a client that retries safely. The same seed gives the same sequence of bodies.
type Orders struct {
	url    string
	prefix string
	seq    atomic.Uint64
	mu     sync.Mutex // rand.Rand is not safe for concurrent use; vegeta's workers share the targeter
	rnd    *rand.Rand
}

// NewOrders returns a generator for url. prefix keeps keys unique across setups and runs.
func NewOrders(url, prefix string, seed uint64) *Orders {
	return &Orders{url: url, prefix: prefix, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Rob", "Margaret", "Linus", "Frances"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Pike", "Hamilton"}
	streets    = []string{"Pizza Lane", "Mozzarella Road", "Basil Street", "Oven Court", "Crust Avenue"}
	sizes      = []order.Size{order.SizeSmall, order.SizeMedium, order.SizeLarge}
)

// NewOrder returns the next order body (without its key).
func (g *Orders) NewOrder() order.NewOrder {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rnd
	n := order.NewOrder{Customer: order.Customer{
		Name:    firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))],
		Phone:   fmt.Sprintf("+44 20 7946 %04d", r.IntN(10000)),
		Address: fmt.Sprintf("%d %s, Flat %d", 1+r.IntN(200), streets[r.IntN(len(streets))], 1+r.IntN(30)),
	}}
	for range 1 + r.IntN(3) {
		n.Items = append(n.Items, order.ItemRequest{
			Pizza:    order.DefaultMenu[r.IntN(len(order.DefaultMenu))].Name,
			Size:     sizes[r.IntN(len(sizes))],
			Quantity: 1 + r.IntN(3),
		})
	}
	return n
}

// Key returns the next unique Idempotency-Key.
func (g *Orders) Key() string { return fmt.Sprintf("%s-%d", g.prefix, g.seq.Add(1)) }

// Targeter feeds vegeta: each call is a new order with a new key.
func (g *Orders) Targeter() vegeta.Targeter {
	return func(t *vegeta.Target) error {
		body, err := json.Marshal(g.NewOrder())
		if err != nil {
			return err
		}
		*t = vegeta.Target{Method: http.MethodPost, URL: g.url, Body: body, Header: http.Header{
			"Content-Type":               {"application/json"},
			gateway.IdempotencyKeyHeader: {g.Key()},
		}}
		return nil
	}
}
