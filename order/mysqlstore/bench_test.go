package mysqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/order"
)

// BenchmarkCreate compares an order write in one round trip (the store's) with the three it took before
// (BEGIN, INSERT batch, COMMIT), with and without an idempotency key, one client and 16.
//
//	go test -run '^$' -bench Create -benchtime 3s ./order/mysqlstore/
func BenchmarkCreate(b *testing.B) {
	for _, clients := range []int{1, 16} {
		for _, variant := range []string{"one-round-trip", "three-round-trips"} {
			b.Run(fmt.Sprintf("%s/clients=%d", variant, clients), func(b *testing.B) {
				f := newFixture(b)
				create := f.store.Create
				if variant == "three-round-trips" {
					create = f.store.CreateInThreeRoundTrips
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range clients {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							o := storedOrder(time.Now())
							if err := create(context.Background(), o, order.Idempotency{Key: o.ID, RequestHash: make([]byte, 32)}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}
