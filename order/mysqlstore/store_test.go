package mysqlstore_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/order/mysqlstore/partitions"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

// runtimeGrants are the privileges the order service's runtime role gets from Vault: no DDL, no DELETE.
const runtimeGrants = "SELECT, INSERT, UPDATE"

type fixture struct {
	store *mysqlstore.Store
	svc   order.Service
	root  *sql.DB // for assertions only
	mig   *sql.DB // the migration role: DDL, partition maintenance
	db    *mysqltest.DB
	// the runtime role's credentials, for a second pool (the replica's)
	user, pass string
}

// newFixture migrates a fresh database with a DDL user and opens the store as a least-privilege user, as in
// production: the runtime role never owns the schema.
func newFixture(t testing.TB, opts ...mysqlstore.Option) fixture {
	t.Helper()
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	ctx := context.Background()

	migUser, migPass := db.CreateUser(t, "CREATE, ALTER, INDEX, DROP, REFERENCES, SELECT, INSERT, UPDATE, DELETE")
	mig := open(t, db, migUser, migPass)
	applied, err := mysqlstore.Migrate(ctx, mig)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if len(applied) == 0 {
		t.Fatal("migrate applied nothing on an empty database")
	}
	// As `order migrate` does: the monthly partitions right after the schema.
	if _, err := partitions.Maintain(ctx, mig, time.Now(), partitions.DefaultPolicy); err != nil {
		t.Fatalf("partitions: %v", err)
	}

	user, pass := db.CreateUser(t, runtimeGrants)
	store := mysqlstore.New(open(t, db, user, pass), opts...)
	return fixture{store: store, svc: order.NewService(store, order.DefaultMenu), root: root, mig: mig, db: db, user: user, pass: pass}
}

func open(t testing.TB, db *mysqltest.DB, user, pass string) *sql.DB {
	t.Helper()
	return openAt(t, db.Addr, db.Name, user, pass)
}

// openAt opens a pool as the order service does (mysqlconn), on the server at addr.
func openAt(t testing.TB, addr, name, user, pass string) *sql.DB {
	t.Helper()
	pool, err := mysqlconn.Open(mysqlconn.Config{
		Addr: addr, Name: name, MaxOpen: 64, MaxIdle: 64, ConnMaxLifetime: time.Minute,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	}, mysqlconn.Static{Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

func newOrder(key string) order.NewOrder {
	return order.NewOrder{
		Customer:       order.Customer{Name: "Ada", Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
		Items:          []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 2}, {Pizza: "diavola", Size: "S", Quantity: 1}},
		IdempotencyKey: key,
	}
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestMigrateIsIdempotent(t *testing.T) {
	f := newFixture(t)
	for _, table := range []string{"orders", "order_items", "order_events"} {
		if n := count(t, f.root, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, table); n != 1 {
			t.Errorf("table %s: found %d, want 1", table, n)
		}
	}
	applied, err := mysqlstore.Migrate(context.Background(), f.root)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate = %v, %v; want nothing applied", applied, err)
	}
}

func TestCreateAndGet(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	created, err := f.svc.CreateOrder(ctx, newOrder(""))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2*1500 + 1050); created.Order.TotalCents != want {
		t.Errorf("total = %d, want %d", created.Order.TotalCents, want)
	}
	got, err := f.svc.GetOrder(ctx, created.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.Order.ID || got.Status != order.StatusCreated || len(got.Items) != 2 ||
		got.Items[1].Pizza != "diavola" || got.TotalCents != created.Order.TotalCents ||
		!got.CreatedAt.Equal(created.Order.CreatedAt) || got.Customer != created.Order.Customer {
		t.Errorf("stored order differs:\n got %+v\nwant %+v", got, created.Order)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM order_events WHERE order_id = ? AND status = 'CREATED'`, got.ID); n != 1 {
		t.Errorf("CREATED events = %d, want 1", n)
	}
	if _, err := f.svc.GetOrder(ctx, order.NewID(time.Now())); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("get unknown id: %v, want ErrNotFound", err)
	}
}

// A failure half way (here: an item the schema refuses) must leave no order behind.
func TestCreateIsAtomic(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	o := order.Order{
		ID: order.NewID(now), Status: order.StatusCreated, Customer: order.Customer{Name: "A", Phone: "12345", Address: "x"},
		Items:     []order.Item{{Pizza: strings.Repeat("p", 65), Size: "M", Quantity: 1, UnitPriceCents: 1}},
		CreatedAt: now, UpdatedAt: now,
	}
	if err := f.store.Create(context.Background(), o, order.Idempotency{}); err == nil {
		t.Fatal("create with an over-long pizza name succeeded; want the schema to refuse it")
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM orders`); n != 0 {
		t.Errorf("orders after a failed create = %d, want 0", n)
	}
}

func TestIdempotencyUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	const clients = 50
	var (
		wg       sync.WaitGroup
		results  = make([]order.Created, clients)
		errs     = make([]error, clients)
		start    = make(chan struct{})
		ctx, end = context.WithTimeout(context.Background(), 30*time.Second)
	)
	defer end()
	for i := range clients {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f.svc.CreateOrder(ctx, newOrder("same-key"))
		})
	}
	close(start)
	wg.Wait()

	replayed := 0
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if results[i].Order.ID != results[0].Order.ID {
			t.Errorf("client %d got order %s, client 0 got %s", i, results[i].Order.ID, results[0].Order.ID)
		}
		if results[i].Replayed {
			replayed++
		}
	}
	if replayed != clients-1 {
		t.Errorf("replayed = %d, want %d", replayed, clients-1)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM orders`); n != 1 {
		t.Errorf("orders = %d, want exactly 1", n)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM order_events`); n != 1 {
		t.Errorf("events = %d, want 1", n)
	}

	other := newOrder("same-key")
	other.Items[0].Quantity = 3
	if _, err := f.svc.CreateOrder(ctx, other); !errors.Is(err, order.ErrIdempotencyMismatch) {
		t.Errorf("same key, other body: %v, want ErrIdempotencyMismatch", err)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM orders`); n != 1 {
		t.Errorf("orders after a mismatched key = %d, want 1", n)
	}
}

func TestTransitions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	steps := []struct {
		to      order.Status
		illegal bool
	}{
		{to: order.StatusBaking, illegal: true},
		{to: order.StatusAccepted},
		{to: order.StatusAccepted, illegal: true},
		{to: order.StatusBaking},
		{to: order.StatusCancelled, illegal: true},
		{to: order.StatusOutForDelivery},
		{to: order.StatusDelivered},
		{to: order.StatusCancelled, illegal: true},
		{to: order.StatusCreated, illegal: true},
	}
	created, err := f.svc.CreateOrder(ctx, newOrder(""))
	if err != nil {
		t.Fatal(err)
	}
	id, events, current := created.Order.ID, 1, order.StatusCreated
	for _, s := range steps {
		got, err := f.svc.ChangeStatus(ctx, id, s.to)
		var illegal *order.IllegalTransitionError
		switch {
		case s.illegal && !errors.As(err, &illegal):
			t.Fatalf("%s → %s: err = %v, want IllegalTransitionError", current, s.to, err)
		case s.illegal && illegal.From != current:
			t.Errorf("%s → %s: error names current status %s", current, s.to, illegal.From)
		case !s.illegal && err != nil:
			t.Fatalf("%s → %s: %v", current, s.to, err)
		case !s.illegal:
			events++
			current = s.to
			if got.Status != s.to {
				t.Errorf("status after change = %s, want %s", got.Status, s.to)
			}
		}
		if n := count(t, f.root, `SELECT COUNT(*) FROM order_events WHERE order_id = ?`, id); n != events {
			t.Fatalf("after %s: events = %d, want %d", s.to, n, events)
		}
	}
	if _, err := f.svc.ChangeStatus(ctx, order.NewID(time.Now()), order.StatusAccepted); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("change unknown order: %v, want ErrNotFound", err)
	}
}

// Staff clicking at once: exactly one change wins, and exactly one event is written.
func TestConcurrentTransitionsOneWins(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	created, err := f.svc.CreateOrder(ctx, newOrder(""))
	if err != nil {
		t.Fatal(err)
	}
	const staff = 10
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won int
	)
	for range staff {
		wg.Go(func() {
			_, err := f.svc.ChangeStatus(ctx, created.Order.ID, order.StatusAccepted)
			var illegal *order.IllegalTransitionError
			if err != nil && !errors.As(err, &illegal) {
				t.Errorf("change: %v", err)
			}
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("successful changes = %d, want 1", won)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM order_events WHERE order_id = ? AND status = 'ACCEPTED'`, created.Order.ID); n != 1 {
		t.Errorf("ACCEPTED events = %d, want 1", n)
	}
}

func TestListByStatusWithCursor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var ids []string
	for range 5 {
		c, err := f.svc.CreateOrder(ctx, newOrder(""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Order.ID)
	}
	if _, err := f.svc.ChangeStatus(ctx, ids[1], order.StatusAccepted); err != nil {
		t.Fatal(err)
	}

	var seen []string
	filter := order.ListFilter{Status: order.StatusCreated, Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("cursor does not end")
		}
		p, err := f.svc.ListOrders(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Orders {
			if o.Status != order.StatusCreated || len(o.Items) != 2 {
				t.Errorf("listed order %s: status %s, %d items", o.ID, o.Status, len(o.Items))
			}
			seen = append(seen, o.ID)
		}
		if p.NextCursor == "" {
			break
		}
		filter.After = p.NextCursor
	}
	// IDs sort by creation time to the millisecond; within one millisecond their order is random.
	want := []string{ids[0], ids[2], ids[3], ids[4]}
	slices.Sort(want)
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want %v (oldest first, CREATED only)", seen, want)
	}
}

// The runtime role must not be able to change the schema or delete history.
func TestRuntimeRoleIsLeastPrivilege(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	user, pass := db.CreateUser(t, runtimeGrants)
	pool := open(t, db, user, pass)
	for _, stmt := range []string{"CREATE TABLE x (id INT)", "DROP DATABASE " + db.Name} {
		if _, err := pool.Exec(stmt); err == nil {
			t.Errorf("%q succeeded as the runtime role", stmt)
		}
	}
}

// fakeCipher seals by encoding value and row ID, so the test sees what reached MySQL and that reads pass the
// row's ID back. The real cipher (Vault transit data keys) is tested in platform/envelope and e2e.
type fakeCipher struct{ version int }

func (c *fakeCipher) Seal(_ context.Context, aad []byte, values ...string) (string, []string, error) {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = "sealed:" + string(aad) + ":" + hex.EncodeToString([]byte(v))
	}
	return fmt.Sprintf("vault:v%d:key", c.version), out, nil
}

func (c *fakeCipher) Open(_ context.Context, key string, aad []byte, sealed ...string) ([]string, error) {
	out := make([]string, len(sealed))
	for i, s := range sealed {
		rest, ok := strings.CutPrefix(s, "sealed:"+string(aad)+":")
		if !ok {
			return nil, fmt.Errorf("value not sealed for row %s", aad)
		}
		plain, err := hex.DecodeString(rest)
		if err != nil {
			return nil, err
		}
		out[i] = string(plain)
	}
	return out, nil
}

func (c *fakeCipher) Rewrap(_ context.Context, keys []string) ([]string, error) {
	out := make([]string, len(keys))
	for i := range keys {
		out[i] = fmt.Sprintf("vault:v%d:key", c.version)
	}
	return out, nil
}

func TestPIIIsSealedAndRewrapped(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	if _, err := mysqlstore.Migrate(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	cipher := &fakeCipher{version: 1}
	user, pass := db.CreateUser(t, runtimeGrants)
	store := mysqlstore.New(open(t, db, user, pass), mysqlstore.WithPII(cipher))
	svc := order.NewService(store, order.DefaultMenu)
	ctx := context.Background()

	n := newOrder("")
	n.Customer.Phone, n.Customer.Address = "+1 555 0199", "42 secret street"
	created, err := svc.CreateOrder(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	var phone, address, key string
	if err := root.QueryRow(`SELECT customer_phone, customer_address, pii_key FROM orders WHERE id = ?`, created.Order.ID).
		Scan(&phone, &address, &key); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(phone, "555") || strings.Contains(address, "secret") || key != "vault:v1:key" {
		t.Fatalf("stored phone %q, address %q, key %q: want sealed values and the wrapped key", phone, address, key)
	}
	got, err := svc.GetOrder(ctx, created.Order.ID)
	if err != nil || got.Customer.Phone != "+1 555 0199" || got.Customer.Address != "42 secret street" {
		t.Fatalf("GetOrder = %+v, %v; want the plaintext back", got.Customer, err)
	}

	cipher.version = 2
	if changed, err := store.RewrapPII(ctx); err != nil || changed != 1 {
		t.Fatalf("RewrapPII = %d, %v; want 1 key changed", changed, err)
	}
	if changed, err := store.RewrapPII(ctx); err != nil || changed != 0 {
		t.Fatalf("second RewrapPII = %d, %v; want nothing to change", changed, err)
	}
	if n := count(t, root, `SELECT COUNT(*) FROM orders WHERE pii_key = 'vault:v2:key'`); n != 1 {
		t.Errorf("rows on the new key version = %d, want 1", n)
	}
}

// The test-only hook runs inside Create's transaction after the INSERTs: the rows exist but are not committed,
// so nobody else sees the order until the hook returns (the fault tests kill the process there).
func TestBeforeCommitHookRunsBetweenInsertAndCommit(t *testing.T) {
	var (
		root   *sql.DB
		id     string
		called int
	)
	f := newFixture(t, mysqlstore.WithBeforeCommitHook(func(context.Context) {
		called++
		if n := count(t, root, `SELECT COUNT(*) FROM orders WHERE id = ?`, id); n != 0 {
			t.Errorf("inside the hook another session sees %d orders; want the INSERT uncommitted", n)
		}
	}))
	root = f.root
	now := time.Now().UTC()
	o := order.Order{
		ID: order.NewID(now), Status: order.StatusCreated, Customer: order.Customer{Name: "A", Phone: "12345", Address: "x"},
		Items:     []order.Item{{Pizza: "margherita", Size: "M", Quantity: 1, UnitPriceCents: 1}},
		CreatedAt: now, UpdatedAt: now,
	}
	id = o.ID
	if err := f.store.Create(context.Background(), o, order.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if called != 1 {
		t.Errorf("hook called %d times, want 1", called)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM orders WHERE id = ?`, id); n != 1 {
		t.Errorf("after Create: %d orders, want 1", n)
	}
}

// A write transaction never outlives MaxTransaction, whatever its caller's context allows: the event hub
// takes a gap in event IDs older than that for a rollback.
func TestCreateIsRolledBackPastMaxTransaction(t *testing.T) {
	var root *sql.DB
	f := newFixture(t, mysqlstore.WithBeforeCommitHook(func(ctx context.Context) {
		<-ctx.Done() // a transaction stuck between its INSERTs and COMMIT
	}))
	root = f.root
	now := time.Now().UTC()
	o := order.Order{
		ID: order.NewID(now), Status: order.StatusCreated, Customer: order.Customer{Name: "A", Phone: "12345", Address: "x"},
		Items:     []order.Item{{Pizza: "margherita", Size: "M", Quantity: 1, UnitPriceCents: 1}},
		CreatedAt: now, UpdatedAt: now,
	}
	// Without the bound the hook never returns and the test times out.
	err := f.store.Create(context.Background(), o, order.Idempotency{Key: "k-stuck", RequestHash: []byte("h")})
	if err == nil {
		t.Fatal("Create committed a transaction held past MaxTransaction")
	}
	for _, q := range []string{`SELECT COUNT(*) FROM orders WHERE id = ?`, `SELECT COUNT(*) FROM order_events WHERE order_id = ?`,
		`SELECT COUNT(*) FROM idempotency_keys WHERE order_id = ?`} {
		if n := count(t, root, q, o.ID); n != 0 {
			t.Errorf("%s = %d after the rollback; want 0", q, n)
		}
	}
}
