package orderapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	tests := []struct {
		route   Route
		id      string
		pattern string
		path    string
	}{
		{RouteMenu, "", "GET /menu", "/menu"},
		{RouteCreateOrder, "", "POST /orders", "/orders"},
		{RouteListOrders, "", "GET /orders", "/orders"},
		{RouteGetOrder, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET /orders/{id}", "/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV"},
		{RouteChangeStatus, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "POST /orders/{id}/status", "/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV/status"},
		{RouteOrderEvents, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET /orders/{id}/events", "/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV/events"},
		{RouteEvents, "", "GET /events", "/events"},
		// An ID is one segment whatever it holds: it cannot reach another route.
		{RouteOrderEvents, "a/../../events?x#y", "GET /orders/{id}/events", "/orders/a%2F..%2F..%2Fevents%3Fx%23y/events"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.id, func(t *testing.T) {
			if got := tt.route.String(); got != tt.pattern {
				t.Errorf("String() = %q; want %q", got, tt.pattern)
			}
			if got := tt.route.Path(tt.id); got != tt.path {
				t.Errorf("Path(%q) = %q; want %q", tt.id, got, tt.path)
			}
		})
	}
}

// DecodeBody reads answers as the server reads requests (JSON v2), except that it ignores unknown names and
// what follows the first value.
func TestDecodeBody(t *testing.T) {
	type body struct {
		Status string `json:"status"`
		N      int    `json:"n"`
	}
	tests := []struct {
		name    string
		in      string
		want    body
		wantErr bool
	}{
		{"plain", `{"status":"CREATED","n":2}`, body{"CREATED", 2}, false},
		{"unknown names ignored", `{"status":"CREATED","later":true}`, body{Status: "CREATED"}, false},
		{"the first value only", `{"n":1} {"n":2}`, body{N: 1}, false},
		{"null", `null`, body{}, false},
		{"other case: not the field", `{"Status":"CREATED"}`, body{}, false},
		{"duplicate names", `{"n":1,"n":2}`, body{}, true},
		{"invalid UTF-8", "{\"status\":\"\xff\"}", body{}, true},
		{"cut short: nothing set", `{"status":"CREATED","n":`, body{}, true},
		{"empty", ``, body{}, true},
		{"wrong type", `{"n":"two"}`, body{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got body
			err := DecodeBody(&http.Response{Body: io.NopCloser(strings.NewReader(tt.in))}, &got)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) || (tt.name == "cut short: nothing set" && got != body{}) {
				t.Errorf("DecodeBody(%s) = %+v, %v; want %+v, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
