package orderclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
)

// FuzzDecodeResponse feeds the client's response decoders any status and body, as a broken or hostile
// upstream could send. Whatever arrives, the answer is a value (2xx only) or an error the gateway knows how
// to answer: one of the typed errors, or ErrUnavailable. Never a panic, never a 2xx error without a value.
func FuzzDecodeResponse(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{200, `{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","status":"CREATED","items":[],"total_cents":0}`},
		{201, `{"id":"x"}`},
		{200, `{"pizzas":[{"name":"margherita","price_cents":{"L":1500}}]}`},
		{200, `{"orders":[],"next_cursor":"01ARZ3NDEKTSV4RRFFQ69G5FAV"}`},
		{200, ``},
		{200, `null`},
		{200, `{"total_cents":1e400}`},
		{422, `{"error":"bad","code":"invalid_request","field":"items[0].size"}`},
		{404, `{"code":"not_found"}`},
		{409, `{"code":"illegal_transition","from":"CREATED","to":"DELIVERED"}`},
		{422, `{"code":"idempotency_key_reused"}`},
		{503, `{"code":"unavailable"}`},
		{500, `<html>`},
		{302, ``},
		{304, `{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","status":"CREATED"}`},
		{418, `{"code":5}`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
	decoders := map[string]func(context.Context, *http.Response) (any, error){
		"order":   decodeInto[order.Order],
		"page":    decodeInto[order.Page],
		"created": decodeCreatedResponse,
		"menu":    decodeMenuResponse,
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		for name, decode := range decoders {
			resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{},
				Body: io.NopCloser(strings.NewReader(string(body)))}
			v, err := unavailableOnTransportError(func(ctx context.Context, _ any) (any, error) {
				return decode(ctx, resp)
			})(context.Background(), nil)
			switch {
			case err == nil && status >= 300:
				t.Fatalf("%s: status %d decoded without an error: %+v", name, status, v)
			case err == nil && v == nil:
				t.Fatalf("%s: no value and no error", name)
			case err != nil && !orderapi.IsAnswer(err):
				t.Fatalf("%s: status %d gave %v (%T), which the gateway cannot map", name, status, err, err)
			case err != nil && status < 300 && !errors.Is(err, order.ErrUnavailable):
				t.Fatalf("%s: a %d answer became %v; a bad success body is the order service's fault", name, status, err)
			}
		}
	})
}
