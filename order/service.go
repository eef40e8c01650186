// Package order is the order domain: the menu, pricing, the status lifecycle and idempotent order creation.
// It knows nothing of HTTP or SQL; transports, stores and event delivery plug in through Service, Store and
// EventStreams.
package order

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/oklog/ulid/v2"
)

// Service is the order domain as its callers see it.
type Service interface {
	Menu(ctx context.Context) (Menu, error)
	// CreateOrder prices and stores a new order. With an idempotency key, a repeat of the same request
	// returns the original order (Created.Replayed is true) and a different request is ErrIdempotencyMismatch.
	CreateOrder(ctx context.Context, n NewOrder) (Created, error)
	GetOrder(ctx context.Context, id string) (Order, error)
	ListOrders(ctx context.Context, f ListFilter) (Page, error)
	ChangeStatus(ctx context.Context, id string, to Status) (Order, error)
}

// Store persists orders. Every method is atomic: an error means nothing was written. Reads see every write
// that completed before they began (read-your-writes), also when a store serves them from a replica.
type Store interface {
	// Create stores o with its items and its first event. If idem.Key is already taken, it stores nothing and
	// returns ErrIdempotencyKeyTaken.
	Create(ctx context.Context, o Order, idem Idempotency) error
	// OrderByIdempotencyKey returns the order created under key and the hash of the request that created it.
	OrderByIdempotencyKey(ctx context.Context, key string) (Order, []byte, error)
	Get(ctx context.Context, id string) (Order, error)
	List(ctx context.Context, f ListFilter) (Page, error)
	// Transition moves the order to `to` only if its current status is one of from, and appends an event,
	// in one transaction. It returns ErrNotFound or an *IllegalTransitionError naming the current status.
	Transition(ctx context.Context, id string, from []Status, to Status, at time.Time) error
}

// Idempotency ties an order to the client's Idempotency-Key and the hash of the request that used it.
type Idempotency struct {
	Key         string
	RequestHash []byte
}

var (
	ErrNotFound            = errors.New("order not found")
	ErrIdempotencyMismatch = errors.New("idempotency key was already used with a different request")
	// ErrIdempotencyKeyTaken is the store's signal that another order holds the key; the service resolves it.
	ErrIdempotencyKeyTaken = errors.New("idempotency key already taken")
	// ErrUnavailable means the order service (or what it depends on) cannot answer now; retrying later may work.
	ErrUnavailable = errors.New("order service unavailable")
)

// ValidationError is bad input, named by the field it concerns (JSON path, e.g. "items[0].size").
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IllegalTransitionError is a status change the lifecycle does not allow.
type IllegalTransitionError struct {
	From, To Status
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("cannot change status from %s to %s", e.From, e.To)
}

// Status is where an order is in its lifecycle.
type Status string

const (
	StatusCreated        Status = "CREATED"
	StatusAccepted       Status = "ACCEPTED"
	StatusBaking         Status = "BAKING"
	StatusOutForDelivery Status = "OUT_FOR_DELIVERY"
	StatusDelivered      Status = "DELIVERED"
	StatusCancelled      Status = "CANCELLED"
)

// predecessors lists, for each status, the statuses an order may move to it from.
var predecessors = map[Status][]Status{
	StatusAccepted:       {StatusCreated},
	StatusBaking:         {StatusAccepted},
	StatusOutForDelivery: {StatusBaking},
	StatusDelivered:      {StatusOutForDelivery},
	StatusCancelled:      {StatusCreated, StatusAccepted},
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := predecessors[s]
	return ok || s == StatusCreated
}

// Final reports whether no further change is possible.
func (s Status) Final() bool { return s == StatusDelivered || s == StatusCancelled }

// CanMoveTo reports whether the lifecycle allows s → to.
func (s Status) CanMoveTo(to Status) bool {
	for _, from := range predecessors[to] {
		if from == s {
			return true
		}
	}
	return false
}

// Customer is who the order is for. Phone and Address are PII: never logged.
type Customer struct {
	Name    string `json:"name"`
	Phone   string `json:"phone"`
	Address string `json:"address"`
}

// LogValue keeps PII out of logs even if a Customer is logged by mistake.
func (c Customer) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// ItemRequest is one line of an order as the customer asks for it.
type ItemRequest struct {
	Pizza    string `json:"pizza"`
	Size     Size   `json:"size"`
	Quantity int    `json:"quantity"`
}

// NewOrder is a customer's order before it is priced and stored.
type NewOrder struct {
	Customer Customer      `json:"customer"`
	Items    []ItemRequest `json:"items"`
	// IdempotencyKey comes from the Idempotency-Key header, not the body.
	IdempotencyKey string `json:"-"`
}

// Limits of a new order.
const (
	MaxItems             = 50
	MaxQuantity          = 20
	MaxNameLen           = 100
	MaxPhoneLen          = 32
	MaxAddressLen        = 300
	MaxIdempotencyKeyLen = 128
)

// Validate checks the order's shape: everything that can be judged without the menu.
func (n NewOrder) Validate() error {
	if err := validText("customer.name", n.Customer.Name, MaxNameLen); err != nil {
		return err
	}
	switch {
	case n.Customer.Phone == "":
		return invalid("customer.phone", "is required")
	case !validPhone(n.Customer.Phone):
		return invalid("customer.phone", "must be 5 to %d characters of digits, spaces, +, -, ( and )", MaxPhoneLen)
	}
	if err := validText("customer.address", n.Customer.Address, MaxAddressLen); err != nil {
		return err
	}
	switch {
	case len(n.Items) == 0:
		return invalid("items", "must hold at least one item")
	case len(n.Items) > MaxItems:
		return invalid("items", "must hold at most %d items", MaxItems)
	}
	for i, it := range n.Items {
		switch {
		case it.Pizza == "":
			return invalid(fmt.Sprintf("items[%d].pizza", i), "is required")
		case !it.Size.Valid():
			return invalid(fmt.Sprintf("items[%d].size", i), "must be one of S, M, L")
		case it.Quantity < 1 || it.Quantity > MaxQuantity:
			return invalid(fmt.Sprintf("items[%d].quantity", i), "must be between 1 and %d", MaxQuantity)
		}
	}
	return ValidateIdempotencyKey(n.IdempotencyKey)
}

// ValidateIdempotencyKey accepts an empty key (no idempotency) or 1..128 visible ASCII characters.
func ValidateIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeyLen {
		return invalid("Idempotency-Key", "must be at most %d characters", MaxIdempotencyKeyLen)
	}
	for _, r := range key {
		if r < '!' || r > '~' {
			return invalid("Idempotency-Key", "must be visible ASCII characters")
		}
	}
	return nil
}

// validText accepts printable text: not blank once trimmed, valid UTF-8, no control characters (a NUL or an
// escape sequence would end up on a kitchen ticket or a driver's screen), at most maxLen bytes.
func validText(field, s string, maxLen int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return invalid(field, "is required")
	case len(s) > maxLen:
		return invalid(field, "must be at most %d bytes", maxLen)
	case !utf8.ValidString(s):
		return invalid(field, "must be valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		return invalid(field, "must not hold control characters")
	}
	return nil
}

func validPhone(p string) bool {
	if len(p) < 5 || len(p) > MaxPhoneLen {
		return false
	}
	digits := 0
	for _, r := range p {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ' || r == '+' || r == '-' || r == '(' || r == ')':
		default:
			return false
		}
	}
	return digits >= 5
}

// Item is a priced line of a stored order.
type Item struct {
	Pizza          string `json:"pizza"`
	Size           Size   `json:"size"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order is a stored order.
type Order struct {
	ID string `json:"id"`
	// TrackingToken lets the customer follow the order; the ID alone is not enough. Sealed like PII at rest.
	TrackingToken string    `json:"tracking_token,omitempty"`
	Status        Status    `json:"status"`
	Customer      Customer  `json:"customer"`
	Items         []Item    `json:"items"`
	TotalCents    int64     `json:"total_cents"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Created is the result of CreateOrder.
type Created struct {
	Order Order
	// Replayed is true when the order already existed under the request's idempotency key.
	Replayed bool
}

// ListFilter selects a page of orders in ID order, which is creation order to the millisecond. After is the
// cursor: the last ID of the previous page.
type ListFilter struct {
	Status Status
	After  string
	Limit  int
}

// Page limits.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// Page is one page of orders; NextCursor is empty on the last page.
type Page struct {
	Orders     []Order `json:"orders"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

type service struct {
	store Store
	menu  Menu
	now   func() time.Time
	newID func(time.Time) string
}

// NewService returns the order domain over store, pricing from menu.
func NewService(store Store, menu Menu) Service {
	return &service{store: store, menu: menu, now: time.Now, newID: NewID}
}

// NewID returns a ULID: sortable by creation time, with 80 bits from crypto/rand so it cannot be guessed.
func NewID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}

// newTrackingToken returns 128 random bits, URL-safe.
func newTrackingToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidID reports whether id has the shape of an order ID.
func ValidID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil
}

func (s *service) Menu(context.Context) (Menu, error) { return s.menu, nil }

func (s *service) CreateOrder(ctx context.Context, n NewOrder) (Created, error) {
	if err := n.Validate(); err != nil {
		return Created{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond) // what DATETIME(6) keeps
	o := Order{
		ID:            s.newID(now),
		TrackingToken: newTrackingToken(),
		Status:        StatusCreated,
		Customer:      n.Customer,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	items, total, err := s.menu.PriceItems(n.Items)
	if err != nil {
		return Created{}, err
	}
	o.Items, o.TotalCents = items, total
	var idem Idempotency
	if n.IdempotencyKey != "" {
		idem = Idempotency{Key: n.IdempotencyKey, RequestHash: RequestHash(n)}
	}
	err = s.store.Create(ctx, o, idem)
	if errors.Is(err, ErrIdempotencyKeyTaken) {
		return s.replay(ctx, idem)
	}
	if err != nil {
		return Created{}, err
	}
	return Created{Order: o}, nil
}

// replay answers a repeated idempotency key with the order it created, if the request is the same one.
func (s *service) replay(ctx context.Context, idem Idempotency) (Created, error) {
	stored, hash, err := s.store.OrderByIdempotencyKey(ctx, idem.Key)
	if err != nil {
		return Created{}, err
	}
	if string(hash) != string(idem.RequestHash) {
		return Created{}, ErrIdempotencyMismatch
	}
	return Created{Order: stored, Replayed: true}, nil
}

// RequestHash identifies a request's content for idempotency. JSON of the struct is canonical enough: the
// fields are always in the same order and the key itself is excluded.
func RequestHash(n NewOrder) []byte {
	b, _ := json.Marshal(struct {
		Customer Customer      `json:"customer"`
		Items    []ItemRequest `json:"items"`
	}{n.Customer, n.Items}, requestHashJSON)
	sum := sha256.Sum256(b)
	return sum[:]
}

// requestHashJSON makes JSON v2 write what encoding/json (v1) wrote when the stored hashes were made, byte for
// byte, so a repeated Idempotency-Key still matches its order: <, >, & and U+2028/9 escaped, a nil slice as
// null, invalid UTF-8 as U+FFFD.
var requestHashJSON = json.JoinOptions(jsontext.EscapeForHTML(true), jsontext.EscapeForJS(true),
	json.FormatNilSliceAsNull(true), jsontext.AllowInvalidUTF8(true))

func (s *service) GetOrder(ctx context.Context, id string) (Order, error) {
	if !ValidID(id) {
		return Order{}, ErrNotFound
	}
	return s.store.Get(ctx, id)
}

func (s *service) ListOrders(ctx context.Context, f ListFilter) (Page, error) {
	if f.Status != "" && !f.Status.Valid() {
		return Page{}, invalid("status", "unknown status %q", f.Status)
	}
	if f.After != "" && !ValidID(f.After) {
		return Page{}, invalid("cursor", "is not a cursor this service issued")
	}
	switch {
	case f.Limit == 0:
		f.Limit = DefaultPageSize
	case f.Limit < 0 || f.Limit > MaxPageSize:
		return Page{}, invalid("limit", "must be between 1 and %d", MaxPageSize)
	}
	return s.store.List(ctx, f)
}

func (s *service) ChangeStatus(ctx context.Context, id string, to Status) (Order, error) {
	if !to.Valid() {
		return Order{}, invalid("status", "unknown status %q", to)
	}
	if !ValidID(id) {
		return Order{}, ErrNotFound
	}
	from := predecessors[to]
	if len(from) == 0 { // nothing moves back to CREATED
		o, err := s.store.Get(ctx, id)
		if err != nil {
			return Order{}, err
		}
		return Order{}, &IllegalTransitionError{From: o.Status, To: to}
	}
	if err := s.store.Transition(ctx, id, from, to, s.now().UTC().Truncate(time.Microsecond)); err != nil {
		return Order{}, err
	}
	return s.store.Get(ctx, id)
}
