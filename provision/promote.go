package provision

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PromoteConfig is the replica that `meshctl promote-db` makes the primary (MESHCTL_DB_PROMOTE_*).
type PromoteConfig struct {
	Socket string `conf:"help:the replica's unix socket on which root may log in (promote-db)"`
	Addr   string `conf:"help:host:port of the replica (the primary after promote-db)"`
	// AddrFile is the primary's address as order reads it for every new connection (ORDER_DB_ADDR_FILE).
	AddrFile string `conf:"help:file holding the primary's host:port that promote-db rewrites (empty: none)"`
	// ApplyWait bounds how long the replica may take to apply what it had received from the lost primary.
	ApplyWait time.Duration `conf:"default:1m,help:how long the replica may take to apply its relay log"`
}

// DBPromotion makes the database replica the primary when the primary is lost for good: replication stopped
// once every transaction it received is applied, the replica's replication settings removed, writes allowed;
// Vault's database connection moved to it; the primary's address file rewritten, so order's pools follow.
//
// What the lost primary had committed but not yet sent is lost: with asynchronous replication an acknowledged
// order may be (README, "Losing the database primary"). The old primary must never come back as a primary: the
// stack does not start it again after a promotion.
type DBPromotion struct{ s *Session }

// NewDBPromotion returns the promotion on s; its Vault step needs BeginProvisioning (database/config is not
// the operator token's).
func NewDBPromotion(s *Session) *DBPromotion { return &DBPromotion{s: s} }

// Promote promotes the replica; run again after a failure, it finishes what is left.
func (p *DBPromotion) Promote(ctx context.Context) error {
	pc := p.s.cfg.DB.Promote
	if pc.Socket == "" || pc.Addr == "" {
		return errors.New("promote-db needs the replica's socket and address (MESHCTL_DB_PROMOTE_SOCKET, MESHCTL_DB_PROMOTE_ADDR)")
	}
	if _, _, err := net.SplitHostPort(pc.Addr); err != nil {
		return fmt.Errorf("MESHCTL_DB_PROMOTE_ADDR: %w", err)
	}
	if err := p.promoteReplica(ctx, pc.Socket, pc.ApplyWait); err != nil {
		return err
	}
	// An update keeps the fields it is not given (Vault merges connection_details), so the admin's password,
	// which only Vault knows, stays; Vault logs in with it at the new address before it answers.
	conn := p.s.cfg.DB.Connection
	if err := p.s.write(ctx, "database/config/"+conn, map[string]any{
		"connection_url": "{{username}}:{{password}}@tcp(" + pc.Addr + ")/",
	}); err != nil {
		return fmt.Errorf("vault's database connection to the new primary: %w", err)
	}
	p.s.logger.Info("vault's database connection moved to the new primary", "connection", conn, "addr", pc.Addr)
	if pc.AddrFile != "" {
		if err := writePublicFile(pc.AddrFile, pc.Addr+"\n"); err != nil {
			return fmt.Errorf("the primary's address file: %w", err)
		}
		p.s.logger.Info("primary's address file rewritten: order's new connections go to the new primary", "file", pc.AddrFile)
	}
	return nil
}

// promoteReplica turns the replica at socket into a writable primary. Its I/O thread is stopped first (nothing
// more can come from the lost primary), then the SQL thread is given up to wait (at most a minute) to apply the relay log: an
// order the replica had received must not be dropped with it.
func (p *DBPromotion) promoteReplica(ctx context.Context, socket string, wait time.Duration) error {
	db, err := rootOverSocket(socket)
	if err != nil {
		return err
	}
	defer db.Close()
	status, err := slaveStatus(ctx, db)
	if err != nil {
		return fmt.Errorf("the replica over %s: %w", socket, err)
	}
	if status == nil {
		p.s.logger.Info("the replica has no primary configured: promoted already")
	} else {
		if _, err := db.ExecContext(ctx, "STOP SLAVE IO_THREAD"); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := waitFor(wctx, "the replica applying its relay log", func() error {
			st, err := slaveStatus(ctx, db)
			switch {
			case err != nil:
				return err
			case st["Slave_SQL_Running"] != "Yes":
				// Applying stopped (an error): promoting now would drop what is left in the relay log.
				return fmt.Errorf("the SQL thread is not running: %s", st["Last_SQL_Error"])
			case !strings.Contains(st["Slave_SQL_Running_State"], "read all relay log"):
				return fmt.Errorf("still applying (%s)", st["Slave_SQL_Running_State"])
			}
			return nil
		}); err != nil {
			return err
		}
		var applied string
		if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_slave_pos").Scan(&applied); err != nil {
			return err
		}
		for _, stmt := range []string{"STOP SLAVE", "RESET SLAVE ALL"} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		p.s.logger.Info("replication stopped and reset; the relay log was applied", "gtid_applied", applied,
			"received_from", status["Master_Host"]+":"+status["Master_Port"])
	}
	// Not persistent: the stack starts the promoted server without read_only from now on (scripts/mariadb.sh).
	if _, err := db.ExecContext(ctx, "SET GLOBAL read_only = OFF"); err != nil {
		return err
	}
	p.s.logger.Info("the replica takes writes: it is the primary")
	return nil
}

// slaveStatus is SHOW SLAVE STATUS by column name; nil when no primary is configured.
func slaveStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st, rows.Err()
}

// writePublicFile writes value to path (0644) atomically: readers (each order instance's account) never see
// half an address.
func writePublicFile(path, value string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(value); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
