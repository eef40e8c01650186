package provision

import (
	"cmp"
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// ReplicaConfig is a database replica that setup makes follow the primary (MESHCTL_DB_REPLICA_*): Compose's
// mariadb-replica. On `make run`, scripts/mariadb.sh does the same over the two servers' sockets.
type ReplicaConfig struct {
	Socket string `conf:"help:the replica's unix socket on which root may log in (empty: no replica to set up)"`
	// Primary is where the replica's I/O thread connects: the primary as the replica's network names it.
	Primary string `conf:"help:host:port at which the replica reaches the primary"`
	// ReplicatorHost is the host part of the replication account on the primary.
	ReplicatorHost string `conf:"default:%,help:host part of the replication account on the primary"`
}

// replicatorUser may read the primary's binary log and nothing else.
const replicatorUser = "replicator"

// replication makes the replica a GTID replica of the primary, once: a replica with a primary configured (the
// last step here) is left as it is, so every start of the stack can run it. The replica follows the primary's
// binary log from its beginning, which the primary writes from its first start (deploy/docker's entrypoint), so
// it needs no copy of the data. The replication account's password goes from memory to the replica (which keeps
// it in its master.info, as MariaDB does) and, as a hash only, to the primary and its binary log.
func (vs *VaultSetup) replication(ctx context.Context) error {
	rc := vs.s.cfg.DB.Replica
	if rc.Socket == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(rc.Primary)
	if err != nil {
		return fmt.Errorf("MESHCTL_DB_REPLICA_PRIMARY: %w", err)
	}
	ctx, cancel := vs.s.ctx(ctx)
	defer cancel()
	db, err := rootOverSocket(rc.Socket)
	if err != nil {
		return err
	}
	defer db.Close()
	status, err := slaveStatus(ctx, db)
	if err != nil {
		return fmt.Errorf("the replica over %s: %w", rc.Socket, err)
	}
	if status == nil {
		password, err := randomHex(32)
		if err != nil {
			return err
		}
		if err := vs.rootSQL(ctx, fmt.Sprintf("CREATE OR REPLACE USER '%[1]s'@'%[2]s' IDENTIFIED BY PASSWORD '%[3]s';\n"+
			"GRANT REPLICATION SLAVE ON *.* TO '%[1]s'@'%[2]s';\n", replicatorUser, rc.ReplicatorHost, nativePasswordHash(password))); err != nil {
			return fmt.Errorf("the replication account on the primary: %w", err)
		}
		// MASTER_CONNECT_RETRY=1: after the primary restarts, replication resumes within a second of it answering.
		if _, err := db.ExecContext(ctx, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', "+
			"MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", host, port, replicatorUser, password)); err != nil {
			return fmt.Errorf("CHANGE MASTER on the replica: %w", err)
		}
		vs.s.logger.Info("replica pointed at the primary", "primary", rc.Primary)
	}
	if _, err := db.ExecContext(ctx, "START SLAVE"); err != nil {
		return fmt.Errorf("START SLAVE on the replica: %w", err)
	}
	if err := waitFor(ctx, "the replica replicating", func() error {
		st, err := slaveStatus(ctx, db)
		switch {
		case err != nil:
			return err
		case st == nil:
			return fmt.Errorf("no primary configured")
		case !threadsRunning(st):
			return fmt.Errorf("I/O thread %s, SQL thread %s: %s %s", st["Slave_IO_Running"], st["Slave_SQL_Running"],
				st["Last_IO_Error"], st["Last_SQL_Error"])
		}
		return nil
	}); err != nil {
		return err
	}
	vs.s.logger.Info("replica replicating", "primary", rc.Primary)
	return nil
}

// rootOverSocket is a one-connection pool as MariaDB's root over its unix socket (the unix_socket plugin checks
// the peer's uid; no password is involved).
func rootOverSocket(socket string) (*sql.DB, error) {
	connector, err := mysql.NewConnector(rootConfig(socket))
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	return db, nil
}

// rootConfig is the driver's login as MariaDB's root over its unix socket.
func rootConfig(socket string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", socket
	return cfg
}

// threadsRunning: a replica's SHOW SLAVE STATUS says both its I/O and its SQL thread run.
func threadsRunning(st map[string]string) bool {
	return st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes"
}

// nativePasswordHash is MariaDB's mysql_native_password hash of password ("*" and the upper-case hex of
// SHA1(SHA1(password))), so that CREATE USER and the binary log carry no password.
func nativePasswordHash(password string) string {
	first := sha1.Sum([]byte(password))
	second := sha1.Sum(first[:])
	return "*" + strings.ToUpper(hex.EncodeToString(second[:]))
}

// ReplicaStatus is the database replica as `meshctl cluster status` shows it.
type ReplicaStatus struct {
	Primary     string `json:"primary"`
	Replicating bool   `json:"replicating"` // both replication threads run
	// Lag is the replica's Seconds_Behind_Master ("" while it cannot tell, e.g. the primary is away).
	Lag string `json:"lag_seconds"`
	// Applied is the replica's GTID position, PrimaryAt the primary's: equal when the replica has caught up.
	Applied   string `json:"gtid_applied"`
	PrimaryAt string `json:"gtid_primary,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (r *ReplicaStatus) String() string {
	if r.Error != "" {
		return fmt.Sprintf("database replica (of %s): %s", r.Primary, r.Error)
	}
	state, lag := "NOT replicating", r.Lag
	if r.Replicating {
		state = "replicating"
	}
	if lag == "" {
		lag = "unknown"
	}
	return fmt.Sprintf("database replica (of %s): %s, %s s behind; applied GTID %s, primary at %s",
		r.Primary, state, lag, r.Applied, cmp.Or(r.PrimaryAt, "unknown"))
}

// replicaStatus reads the replica's replication over its root socket, and the primary's GTID position over
// primarySocket (if any); a failure is reported in the status, not as an error: it is what an operator needs.
func replicaStatus(ctx context.Context, primarySocket string, rc ReplicaConfig) *ReplicaStatus {
	r := &ReplicaStatus{Primary: rc.Primary}
	db, err := rootOverSocket(rc.Socket)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	switch {
	case err != nil:
		r.Error = "unreachable: " + err.Error()
		return r
	case st == nil:
		r.Error = "no primary configured (meshctl setup points it at the primary)"
		return r
	}
	r.Replicating = threadsRunning(st)
	r.Lag = st["Seconds_Behind_Master"]
	_ = db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_slave_pos").Scan(&r.Applied)
	if primarySocket != "" {
		if p, err := rootOverSocket(primarySocket); err == nil {
			_ = p.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&r.PrimaryAt)
			p.Close()
		}
	}
	return r
}
