package httpapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/ordertest"
)

// FuzzListCursor feeds GET /orders any status, cursor and limit. The answer is a page whose cursor leads
// on, or a ValidationError naming status, cursor or limit: never another error, never a panic.
func FuzzListCursor(f *testing.F) {
	store := ordertest.NewMemStore()
	svc := order.NewService(store, order.DefaultMenu)
	for range 3 {
		if _, err := svc.CreateOrder(context.Background(), order.NewOrder{
			Customer: order.Customer{Name: "Ada", Phone: "+1 555 0100", Address: "1 Main St"},
			Items:    []order.ItemRequest{{Pizza: "margherita", Size: order.SizeLarge, Quantity: 1}},
		}); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range [][3]string{
		{"", "", ""}, {"CREATED", "", "2"}, {"", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "1"}, {"", "zzz", ""}, {"EATEN", "", ""},
		{"", "", "-1"}, {"", "", "201"}, {"", "", "1e3"}, {"", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", ""}, {"", "", "99999999999999999999"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, status, after, limit string) {
		q := url.Values{"status": {status}, "after": {after}, "limit": {limit}}
		r := httptest.NewRequest("GET", "/orders?"+q.Encode(), nil)
		req, err := decodeListFilter(context.Background(), r)
		var page order.Page
		if err == nil {
			page, err = svc.ListOrders(context.Background(), req.(order.ListFilter))
		}
		if err != nil {
			var v *order.ValidationError
			if !errors.As(err, &v) || (v.Field != "status" && v.Field != "cursor" && v.Field != "limit") {
				t.Fatalf("status %q after %q limit %q: %v, want a ValidationError on status, cursor or limit", status, after, limit, err)
			}
			return
		}
		if page.NextCursor != "" && !order.ValidID(page.NextCursor) {
			t.Fatalf("next cursor %q is not a cursor the service takes back", page.NextCursor)
		}
		if len(page.Orders) > order.MaxPageSize {
			t.Fatalf("page of %d orders", len(page.Orders))
		}
	})
}
