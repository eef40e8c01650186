package mysqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/order/mysqlstore/partitions"
	"github.com/pressly/goose/v3"
)

// migrationGrants are the order-migrate role's privileges (vault/database/order-migrate-creation.sql).
const migrationGrants = "CREATE, ALTER, INDEX, DROP, REFERENCES, SELECT, INSERT, UPDATE, DELETE"

// unpartitioned is a database migrated to the schema (catch-all partitions only) but not yet maintained, so a
// test can put orders of past months in before the months are split out.
func unpartitioned(t *testing.T) (store *mysqlstore.Store, mig, root *sql.DB) {
	t.Helper()
	db := mysqltest.NewDatabase(t)
	root = db.Open(t)
	u, p := db.CreateUser(t, migrationGrants)
	mig = open(t, db, u, p)
	if _, err := mysqlstore.Migrate(context.Background(), mig); err != nil {
		t.Fatal(err)
	}
	ru, rp := db.CreateUser(t, runtimeGrants)
	return mysqlstore.New(open(t, db, ru, rp)), mig, root
}

// storedOrder is an order created at, as the service would make it then.
func storedOrder(at time.Time) order.Order {
	at = at.UTC().Truncate(time.Microsecond)
	return order.Order{
		ID: order.NewID(at), TrackingToken: "tok", Status: order.StatusCreated,
		Customer: order.Customer{Name: "Ada", Phone: "12345", Address: "x"},
		Items: []order.Item{{Pizza: "margherita", Size: "M", Quantity: 1, UnitPriceCents: 1200},
			{Pizza: "diavola", Size: "L", Quantity: 2, UnitPriceCents: 1500}},
		TotalCents: 4200, CreatedAt: at, UpdatedAt: at,
	}
}

func month(t time.Time, delta int) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+time.Month(delta), 10, 12, 0, 0, 0, time.UTC)
}

func partitionRows(t *testing.T, root *sql.DB, table, partition string) int {
	t.Helper()
	return count(t, root, "SELECT COUNT(*) FROM "+table+" PARTITION ("+partition+")")
}

func partitionNames(t *testing.T, root *sql.DB, table string) []string {
	t.Helper()
	rows, err := root.Query(`SELECT PARTITION_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE()
		AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

// Orders of different months land in different partitions, with their items and events; a lookup by ID reads
// exactly one partition.
func TestOrdersLandInTheirMonthsPartition(t *testing.T) {
	store, mig, root := unpartitioned(t)
	ctx := context.Background()
	now := time.Now()
	var orders []order.Order
	for _, d := range []int{-2, -1, 0} {
		o := storedOrder(month(now, d))
		if err := store.Create(ctx, o, order.Idempotency{}); err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o)
	}
	if _, err := partitions.Maintain(ctx, mig, now, partitions.DefaultPolicy); err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		p := o.CreatedAt.Format("p200601")
		for table, want := range map[string]int{"orders": 1, "order_items": 2, "order_events": 1} {
			if n := partitionRows(t, root, table, p); n != want {
				t.Errorf("%s partition %s holds %d rows, want %d (the order of %s)", table, p, n, want, o.CreatedAt)
			}
		}
		from, to, _ := mysqlstore.CreatedRange(o.ID)
		var (
			id, selectType, table, partitions, typ string
			rest                                   [6]sql.NullString
		)
		if err := root.QueryRow("EXPLAIN PARTITIONS "+mysqlstore.GetOrderQuery, o.ID, from, to).Scan(&id, &selectType, &table,
			&partitions, &typ, &rest[0], &rest[1], &rest[2], &rest[3], &rest[4], &rest[5]); err != nil {
			t.Fatal(err)
		}
		if partitions != p {
			t.Errorf("lookup of %s reads partitions %q, want only %s", o.ID, partitions, p)
		}
		got, err := store.Get(ctx, o.ID)
		if err != nil || got.ID != o.ID || len(got.Items) != 2 {
			t.Errorf("get %s = %+v, %v", o.ID, got, err)
		}
	}
}

// Maintenance adds the coming months, changes nothing when run again, and runs once when several processes
// run it at the same time.
func TestPartitionMaintenanceIsIdempotent(t *testing.T) {
	_, mig, root := unpartitioned(t)
	ctx := context.Background()
	now := time.Now()
	policy := partitions.Policy{Ahead: 3}

	var wg sync.WaitGroup
	var failed, worked atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := partitions.Maintain(ctx, mig, now, policy)
			if err != nil {
				t.Error(err)
				failed.Add(1)
			}
			if len(rep.Added) > 0 {
				worked.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 || worked.Load() != 1 {
		t.Fatalf("concurrent runs: %d added partitions, %d failed; want exactly one to add them", worked.Load(), failed.Load())
	}
	want := []string{}
	for d := 0; d <= 3; d++ {
		want = append(want, month(now, d).Format("p200601"))
	}
	want = append(want, "pmax")
	for _, table := range []string{"orders", "order_items", "order_events"} {
		if got := partitionNames(t, root, table); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s partitions = %v, want %v", table, got, want)
		}
	}
	rep, err := partitions.Maintain(ctx, mig, now, policy)
	if err != nil || len(rep.Added) != 0 || len(rep.Dropped) != 0 {
		t.Fatalf("second run = %+v, %v; want no change", rep, err)
	}
	// A month later the next month appears, and nothing else changes.
	rep, err = partitions.Maintain(ctx, mig, month(now, 1), policy)
	if err != nil || fmt.Sprint(rep.Added) != fmt.Sprint([]string{
		"orders." + month(now, 4).Format("p200601"), "order_items." + month(now, 4).Format("p200601"),
		"order_events." + month(now, 4).Format("p200601")}) {
		t.Fatalf("run a month later = %+v, %v; want the fourth month ahead added", rep, err)
	}
}

// With a retention, maintenance drops the expired months whole: exactly their orders, items and events.
func TestRetentionDropsExpiredMonths(t *testing.T) {
	store, mig, root := unpartitioned(t)
	ctx := context.Background()
	now := time.Now()
	byMonth := map[int][]string{}
	for _, d := range []int{-3, -2, -1, 0} {
		for range 3 {
			o := storedOrder(month(now, d))
			if err := store.Create(ctx, o, order.Idempotency{Key: o.ID, RequestHash: make([]byte, 32)}); err != nil {
				t.Fatal(err)
			}
			byMonth[d] = append(byMonth[d], o.ID)
		}
	}
	if err := store.Create(ctx, storedOrder(month(now, -1)), order.Idempotency{}); err != nil {
		t.Fatal(err)
	}
	if err := store.Transition(ctx, byMonth[-1][0], []order.Status{order.StatusCreated}, order.StatusAccepted, now); err != nil {
		t.Fatal(err)
	}
	if _, err := partitions.Maintain(ctx, mig, now, partitions.Policy{Ahead: 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := partitions.Maintain(ctx, mig, now, partitions.Policy{Ahead: 1, RetentionMonths: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Dropped) != 6 {
		t.Errorf("dropped %v; want the two oldest months of three tables", rep.Dropped)
	}
	for d, ids := range byMonth {
		for _, id := range ids {
			n := count(t, root, `SELECT COUNT(*) FROM orders WHERE id = ?`, id)
			items := count(t, root, `SELECT COUNT(*) FROM order_items WHERE order_id = ?`, id)
			events := count(t, root, `SELECT COUNT(*) FROM order_events WHERE order_id = ?`, id)
			kept := d >= -1
			if (n == 1) != kept || (items == 2) != kept || (events >= 1) != kept || (!kept && (items != 0 || events != 0 || n != 0)) {
				t.Errorf("order of month %+d: %d orders, %d items, %d events; kept should be %v", d, n, items, events, kept)
			}
		}
	}
	if n := count(t, root, `SELECT COUNT(*) FROM orders`); n != 7 {
		t.Errorf("%d orders left, want 7 (two months of 3, and 1)", n)
	}
}

// Idempotency keys live outside the partitions: a retry in the next month still finds the first order.
func TestIdempotencyAcrossMonthBoundary(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	first := storedOrder(next.Add(-time.Millisecond))
	idem := order.Idempotency{Key: "month-end-retry", RequestHash: make([]byte, 32)}
	if err := f.store.Create(ctx, first, idem); err != nil {
		t.Fatal(err)
	}
	retry := storedOrder(next.Add(time.Millisecond))
	if err := f.store.Create(ctx, retry, idem); !errors.Is(err, order.ErrIdempotencyKeyTaken) {
		t.Fatalf("retry in the next month: %v, want ErrIdempotencyKeyTaken", err)
	}
	got, _, err := f.store.OrderByIdempotencyKey(ctx, idem.Key)
	if err != nil || got.ID != first.ID {
		t.Fatalf("order by key = %s, %v; want %s", got.ID, err, first.ID)
	}
	if partitionRows(t, f.root, "orders", first.CreatedAt.Format("p200601")) != 1 || count(t, f.root, `SELECT COUNT(*) FROM orders`) != 1 {
		t.Error("want one order, in the first month's partition")
	}
	// Past the retention the key is purged (a retry after that makes a new order).
	if _, err := partitions.Maintain(ctx, f.mig, next.Add(25*time.Hour), partitions.DefaultPolicy); err != nil {
		t.Fatal(err)
	}
	if n := count(t, f.root, `SELECT COUNT(*) FROM idempotency_keys`); n != 0 {
		t.Errorf("%d idempotency keys left after their retention, want 0", n)
	}
}

// The partitioning migration takes a database filled by the previous schema there without losing an order,
// an item, an event or an idempotency key.
func TestMigrationKeepsOrdersOfThePreviousSchema(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	u, p := db.CreateUser(t, migrationGrants)
	mig := open(t, db, u, p)
	ctx := context.Background()
	if _, err := mysqlstore.MigrateTo(ctx, mig, 3); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var ids []string
	for i, d := range []int{-14, -2, -1, 0, 0} {
		o := storedOrder(month(now, d).Add(time.Duration(i) * time.Minute))
		ids = append(ids, o.ID)
		var key any
		if i%2 == 0 {
			key = fmt.Sprintf("key-%d", i)
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO orders (id, status, customer_name, customer_phone, customer_address, tracking_token, total_cents,
				idempotency_key, request_hash, created_at, updated_at) VALUES (?, 'CREATED', 'Ada', '12345', 'x', 'tok', 4200, ?, ?, ?, ?)`,
				[]any{o.ID, key, []byte("0123456789abcdef0123456789abcdef"), o.CreatedAt, o.CreatedAt}},
			{`INSERT INTO order_items (order_id, line, pizza, size, quantity, unit_price_cents) VALUES (?, 0, 'margherita', 'M', 1, 1200), (?, 1, 'diavola', 'L', 2, 1500)`,
				[]any{o.ID, o.ID}},
			{`INSERT INTO order_events (order_id, status, created_at) VALUES (?, 'CREATED', ?)`, []any{o.ID, o.CreatedAt}},
		} {
			if _, err := root.Exec(q.sql, q.args...); err != nil {
				t.Fatalf("fill the old schema: %v", err)
			}
		}
	}
	if applied, err := mysqlstore.Migrate(ctx, mig); err != nil || len(applied) == 0 {
		t.Fatalf("migrate = %v, %v", applied, err)
	}
	// No purge of idempotency keys here: these orders are older than the keys' retention.
	if _, err := partitions.Maintain(ctx, mig, now, partitions.Policy{Ahead: 3}); err != nil {
		t.Fatal(err)
	}
	ru, rp := db.CreateUser(t, runtimeGrants)
	store := mysqlstore.New(open(t, db, ru, rp))
	svc := order.NewService(store, order.DefaultMenu)
	for _, id := range ids {
		o, err := svc.GetOrder(ctx, id)
		if err != nil || len(o.Items) != 2 || o.TotalCents != 4200 {
			t.Errorf("order %s after the migration: %+v, %v", id, o, err)
		}
		if n := count(t, root, `SELECT COUNT(*) FROM order_events WHERE order_id = ?`, id); n != 1 {
			t.Errorf("order %s has %d events, want 1", id, n)
		}
	}
	if n := count(t, root, `SELECT COUNT(*) FROM idempotency_keys`); n != 3 {
		t.Errorf("%d idempotency keys, want 3", n)
	}
	if o, _, err := store.OrderByIdempotencyKey(ctx, "key-2"); err != nil || o.ID != ids[2] {
		t.Errorf("order of key-2 = %s, %v; want %s", o.ID, err, ids[2])
	}
	// The oldest order's month got its own partition, and every month since.
	if n := partitionRows(t, root, "orders", month(now, -14).Format("p200601")); n != 1 {
		t.Errorf("the oldest month's partition holds %d orders, want 1", n)
	}
	if n := len(partitionNames(t, root, "orders")); n != 14+3+1+1 {
		t.Errorf("%d partitions, want %d (14 months back, this one, 3 ahead, catch-all)", n, 14+3+1+1)
	}
	if _, err := svc.ChangeStatus(ctx, ids[0], order.StatusAccepted); err != nil {
		t.Errorf("change status of a migrated order: %v", err)
	}
}

// countingDialer counts the packets a client sends: one per round trip to the server.
type countingDialer struct{ writes atomic.Int64 }

type countingConn struct {
	net.Conn
	d *countingDialer
}

func (c countingConn) Write(b []byte) (int, error) {
	c.d.writes.Add(1)
	return c.Conn.Write(b)
}

// An order write is one round trip: BEGIN, the INSERTs and COMMIT in one packet.
func TestCreateIsOneRoundTrip(t *testing.T) {
	f := newFixture(t)
	d := &countingDialer{}
	network := fmt.Sprintf("counted-%p", d)
	mysql.RegisterDialContext(network, func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, d: d}, nil
	})
	cfg, err := mysql.ParseDSN(f.db.DSNFor(f.user, f.pass))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Net, cfg.MultiStatements, cfg.InterpolateParams = network, true, true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(connector)
	t.Cleanup(func() { pool.Close() })
	pool.SetMaxOpenConns(1)
	if err := pool.Ping(); err != nil { // the login's packets are not the write's
		t.Fatal(err)
	}
	store := mysqlstore.New(pool)
	for i, idem := range []order.Idempotency{{}, {Key: "one-trip", RequestHash: make([]byte, 32)}} {
		before := d.writes.Load()
		if err := store.Create(context.Background(), storedOrder(time.Now()), idem); err != nil {
			t.Fatal(err)
		}
		if n := d.writes.Load() - before; n != 1 {
			t.Errorf("create %d took %d round trips, want 1", i, n)
		}
	}
}

// The partitioning migration can be rolled back without losing an order or its idempotency key, and applied
// again.
func TestPartitionMigrationRollsBack(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	u, p := db.CreateUser(t, migrationGrants)
	mig := open(t, db, u, p)
	ctx := context.Background()
	if _, err := mysqlstore.Migrate(ctx, mig); err != nil {
		t.Fatal(err)
	}
	if _, err := partitions.Maintain(ctx, mig, time.Now(), partitions.Policy{Ahead: 2}); err != nil {
		t.Fatal(err)
	}
	o := storedOrder(time.Now())
	if err := mysqlstore.New(mig).Create(ctx, o, order.Idempotency{Key: "rollback", RequestHash: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	migrations, err := goose.NewProvider(goose.DialectMySQL, mig, os.DirFS("migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.DownTo(ctx, 3); err != nil { // the partitions (4) and everything after
		t.Fatalf("down: %v", err)
	}
	var key string
	if err := root.QueryRow(`SELECT idempotency_key FROM orders WHERE id = ?`, o.ID).Scan(&key); err != nil || key != "rollback" {
		t.Errorf("after the rollback the order's key is %q, %v; want it back on the order", key, err)
	}
	if n := count(t, root, `SELECT COUNT(*) FROM order_items WHERE order_id = ?`, o.ID); n != 2 {
		t.Errorf("after the rollback the order has %d items, want 2", n)
	}
	if _, err := mysqlstore.Migrate(ctx, mig); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
}
