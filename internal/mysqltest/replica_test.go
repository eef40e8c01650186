package mysqltest

import (
	"testing"
)

// The replica follows the primary: a table and a user made on the primary appear on it, and it refuses writes.
func TestReplica_followsPrimaryAndIsReadOnly(t *testing.T) {
	db := NewDatabase(t)
	r := NewReplica(t)
	primary := db.Open(t)
	mustExec(t, primary, "CREATE TABLE t (id INT PRIMARY KEY)")
	mustExec(t, primary, "INSERT INTO t VALUES (1), (2)")
	user, pass := db.CreateUser(t, "SELECT, INSERT")
	r.CatchUp(t)

	replica := openAs(t, r.DSNFor(db, user, pass))
	var n int
	if err := replica.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows on the replica = %d, %v; want 2", n, err)
	}
	if _, err := replica.Exec("INSERT INTO t VALUES (3)"); err == nil {
		t.Fatal("a write on the read_only replica succeeded")
	}
}
