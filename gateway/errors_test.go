package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/gateway/stream"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// Every row of the error table, walked: the error's answer (status, code, message, headers) and its outcome
// in logs and metrics. Every row must have a case here.
func TestErrorTable(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		code    string
		msg     string
		header  map[string]string
		outcome string
	}{
		{"no credentials", ErrUnauthenticated, 401, CodeUnauthenticated, "missing or invalid credentials",
			map[string]string{"WWW-Authenticate": `Bearer realm="pizza"`}, kitmw.OutcomeClientError},
		{"one client's excess", &edge.LimitError{Kind: edge.ErrRateLimited, Msg: "too many requests; retry later", RetryAfter: 1500 * time.Millisecond},
			429, CodeRateLimited, "too many requests; retry later", map[string]string{"Retry-After": "2"}, kitmw.OutcomeClientError},
		{"at capacity", &edge.LimitError{Kind: edge.ErrTooBusy, Msg: "too many open event streams; retry later"},
			503, CodeTooBusy, "too many open event streams; retry later", map[string]string{"Retry-After": "1"}, kitmw.OutcomeServerError},
		{"staff sign-in not configured", staff.ErrNotConfigured, 503, orderapi.CodeInvalid, staff.ErrNotConfigured.Error(), nil, kitmw.OutcomeServerError},
		{"a stream order refused, relayed", &stream.RelayedError{Status: 503}, 503, orderapi.CodeUnavailable,
			"the order service answered the stream with 503", nil, kitmw.OutcomeServerError},
		{"unreadable body", &httpjson.RequestError{Status: 413, Msg: "body is larger than 65536 bytes"}, 413, orderapi.CodeInvalid,
			"body is larger than 65536 bytes", map[string]string{"Connection": "close"}, kitmw.OutcomeClientError},
		{"invalid order", fmt.Errorf("order service: %w", &order.ValidationError{Field: "items", Reason: "must hold at least one item"}),
			422, orderapi.CodeInvalid, "must hold at least one item", nil, kitmw.OutcomeClientError},
		{"not found", order.ErrNotFound, 404, orderapi.CodeNotFound, "order not found", nil, kitmw.OutcomeClientError},
		{"illegal transition", &order.IllegalTransitionError{From: order.StatusCreated, To: order.StatusDelivered}, 409,
			orderapi.CodeIllegalTransition, "cannot change status from CREATED to DELIVERED", nil, kitmw.OutcomeClientError},
		{"idempotency key reused", order.ErrIdempotencyMismatch, 422, orderapi.CodeIdempotencyMismatch, order.ErrIdempotencyMismatch.Error(), nil, kitmw.OutcomeClientError},
		{"order unavailable", fmt.Errorf("%w: connection refused", order.ErrUnavailable), 503, orderapi.CodeUnavailable,
			"the order service is unavailable; retry later", map[string]string{"Retry-After": "1"}, kitmw.OutcomeServerError},
		{"our deadline", context.DeadlineExceeded, 503, orderapi.CodeUnavailable,
			"the order service is unavailable; retry later", map[string]string{"Retry-After": "1"}, kitmw.OutcomeServerError},
		{"anything else", errors.New("nil map"), 500, orderapi.CodeInternal, "internal error", nil, kitmw.OutcomeServerError},
	}
	covered := make([]bool, len(errorTable.Kinds))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, k := range errorTable.Kinds {
				if k.Match(tt.err) {
					covered[i] = true
					break
				}
			}
			rec := httptest.NewRecorder()
			EncodeError(reqid.NewContext(context.Background(), "req-1"), tt.err, rec)
			var body httpjson.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if rec.Code != tt.status || body.Code != tt.code || body.Error != tt.msg || body.RequestID != "req-1" {
				t.Errorf("answer %d %+v, want %d code %q message %q", rec.Code, body, tt.status, tt.code, tt.msg)
			}
			for k, v := range tt.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := Outcome(tt.err); got != tt.outcome {
				t.Errorf("Outcome = %s, want %s", got, tt.outcome)
			}
		})
	}
	for i, ok := range covered {
		if !ok {
			t.Errorf("row %d of the error table (code %s) has no case here", i, errorTable.Kinds[i].Code)
		}
	}
	if Outcome(nil) != kitmw.OutcomeOK {
		t.Errorf("Outcome(nil) = %s", Outcome(nil))
	}
}
