package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// The error table walked both ways: each error's answer, byte for byte, and what a client makes of that
// answer, which must be an error of the same kind. Every row of the table must have a case here.
func TestErrorTable(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		body    string
		header  map[string]string // "" for absent
		outcome string
		back    string // the code of the decoded error's kind: the same as the answer's, but for internal
		check   func(error) bool
	}{
		{"unreadable body", &httpjson.RequestError{Status: 400, Field: "coupon", Msg: "unknown field"}, 400,
			`{"error":"unknown field","code":"invalid_request","field":"coupon","request_id":"req-1"}`, map[string]string{"Connection": ""},
			kitmw.OutcomeClientError, orderapi.CodeInvalid,
			func(err error) bool {
				v, ok := errors.AsType[*order.ValidationError](err)
				return ok && v.Field == "coupon"
			}},
		{"body too large", &httpjson.RequestError{Status: 413, Msg: "body is larger than 65536 bytes"}, 413,
			`{"error":"body is larger than 65536 bytes","code":"invalid_request","request_id":"req-1"}`, map[string]string{"Connection": "close"},
			kitmw.OutcomeClientError, orderapi.CodeInvalid, nil},
		{"invalid", fmt.Errorf("create: %w", &order.ValidationError{Field: "items[0].size", Reason: "must be one of S, M, L"}), 422,
			`{"error":"must be one of S, M, L","code":"invalid_request","field":"items[0].size","request_id":"req-1"}`, nil,
			kitmw.OutcomeClientError, orderapi.CodeInvalid,
			func(err error) bool {
				v, ok := errors.AsType[*order.ValidationError](err)
				return ok && v.Field == "items[0].size" && v.Reason == "must be one of S, M, L"
			}},
		{"not found", order.ErrNotFound, 404, `{"error":"order not found","code":"not_found","request_id":"req-1"}`, nil,
			kitmw.OutcomeClientError, orderapi.CodeNotFound, func(err error) bool { return errors.Is(err, order.ErrNotFound) }},
		{"illegal transition", &order.IllegalTransitionError{From: order.StatusCreated, To: order.StatusDelivered}, 409,
			`{"error":"cannot change status from CREATED to DELIVERED","code":"illegal_transition","request_id":"req-1","from":"CREATED","to":"DELIVERED"}`, nil,
			kitmw.OutcomeClientError, orderapi.CodeIllegalTransition,
			func(err error) bool {
				v, ok := errors.AsType[*order.IllegalTransitionError](err)
				return ok && v.From == order.StatusCreated && v.To == order.StatusDelivered
			}},
		{"idempotency key reused", order.ErrIdempotencyMismatch, 422,
			`{"error":"idempotency key was already used with a different request","code":"idempotency_key_reused","request_id":"req-1"}`, nil,
			kitmw.OutcomeClientError, orderapi.CodeIdempotencyMismatch, func(err error) bool { return errors.Is(err, order.ErrIdempotencyMismatch) }},
		{"slow subscriber", order.ErrSlowSubscriber, 429,
			`{"error":"subscriber too slow; reconnect with Last-Event-ID","code":"too_slow","request_id":"req-1"}`, nil,
			kitmw.OutcomeClientError, orderapi.CodeTooSlow, func(err error) bool { return errors.Is(err, order.ErrSlowSubscriber) }},
		{"unavailable", fmt.Errorf("%w: replica lagging", order.ErrUnavailable), 503,
			`{"error":"the order service is unavailable; retry later","code":"unavailable","request_id":"req-1"}`, map[string]string{"Retry-After": "1"},
			kitmw.OutcomeServerError, orderapi.CodeUnavailable, func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), 503,
			`{"error":"the order service is unavailable; retry later","code":"unavailable","request_id":"req-1"}`, map[string]string{"Retry-After": "1"},
			kitmw.OutcomeServerError, orderapi.CodeUnavailable, func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		// Not described to the client; to the order service's callers it is unavailability.
		{"internal", errors.New("bad connection"), 500, `{"error":"internal error","code":"internal","request_id":"req-1"}`, map[string]string{"Retry-After": ""},
			kitmw.OutcomeServerError, orderapi.CodeUnavailable, func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
	}
	covered := make([]bool, len(orderapi.Errors.Kinds))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if i := slices.IndexFunc(orderapi.Errors.Kinds, func(k httpjson.ErrorKind) bool { return k.Match(tt.err) }); i >= 0 {
				covered[i] = true
			}
			rec := httptest.NewRecorder()
			EncodeError(reqid.NewContext(context.Background(), "req-1"), tt.err, rec)
			if want := tt.body + "\n"; rec.Code != tt.status || rec.Body.String() != want {
				t.Errorf("answer %d %s, want %d %s", rec.Code, rec.Body.String(), tt.status, want)
			}
			for k, v := range tt.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := Outcome(tt.err); got != tt.outcome {
				t.Errorf("Outcome = %s, want %s", got, tt.outcome)
			}

			back := orderapi.DecodeError(rec.Result())
			if got := orderapi.Errors.KindOf(back).Code; got != tt.back || !orderapi.IsAnswer(back) {
				t.Errorf("decoded as %v (%T, kind %s, an answer: %v), want kind %s", back, back, got, orderapi.IsAnswer(back), tt.back)
			}
			if tt.check != nil && !tt.check(back) {
				t.Errorf("decoded as %v (%T), not the error it was made from", back, back)
			}
		})
	}
	for i, ok := range covered {
		if !ok {
			t.Errorf("row %d of the error table (code %s) has no case here", i, orderapi.Errors.Kinds[i].Code)
		}
	}
}

// Every code of the table, and codes it does not know, decodes to an error orderclient passes on as an
// answer; a failure on the order service's side is unavailability.
func TestErrorTable_everyCodeDecodes(t *testing.T) {
	codes := []string{orderapi.Errors.Unknown.Code, "new_kind", ""}
	for _, k := range orderapi.Errors.Kinds {
		codes = append(codes, k.Code)
	}
	for _, code := range codes {
		for _, status := range []int{400, 404, 409, 422, 500, 503} {
			resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{},
				Body: io.NopCloser(strings.NewReader(`{"error":"x","code":"` + code + `","request_id":"r"}`))}
			err := orderapi.DecodeError(resp)
			if err == nil || !orderapi.IsAnswer(err) {
				t.Errorf("code %q, status %d: decoded as %v, which orderclient would not pass on", code, status, err)
			}
			known := slices.ContainsFunc(orderapi.Errors.Kinds, func(k httpjson.ErrorKind) bool { return k.Code == code && k.Decode != nil })
			if !known && !errors.Is(err, order.ErrUnavailable) {
				t.Errorf("code %q: decoded as %v, want ErrUnavailable", code, err)
			}
			if known && orderapi.Errors.KindOf(err).Code != code {
				t.Errorf("code %q: decoded as %v, of kind %s", code, err, orderapi.Errors.KindOf(err).Code)
			}
		}
	}
}
