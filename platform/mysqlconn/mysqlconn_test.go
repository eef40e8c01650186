package mysqlconn_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

func config(db *mysqltest.DB) mysqlconn.Config {
	return mysqlconn.Config{Addr: db.Addr, Name: db.Name, MaxOpen: 4, MaxIdle: 4, ConnMaxLifetime: time.Minute,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
}

// rotatingSource hands out one user until Refresh is called for it, then the next, as Vault would.
type rotatingSource struct {
	mu        sync.Mutex
	users     []mysqlconn.Credentials
	refreshes int
}

func (s *rotatingSource) Credentials(context.Context) (mysqlconn.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[0], nil
}

func (s *rotatingSource) Refresh(_ context.Context, rejected string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rejected == s.users[0].Username && len(s.users) > 1 {
		s.users = s.users[1:]
		s.refreshes++
	}
	return nil
}

// A dropped user's login is refused; the connector asks for new credentials once and the connection opens.
func TestRefusedLoginFetchesNewCredentials(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	oldUser, oldPass := db.CreateUser(t, "SELECT")
	newUser, newPass := db.CreateUser(t, "SELECT")
	src := &rotatingSource{users: []mysqlconn.Credentials{{oldUser, oldPass}, {newUser, newPass}}}
	pool, err := mysqlconn.Open(config(db), src)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	if _, err := root.Exec(fmt.Sprintf("DROP USER '%s'@'%%'", oldUser)); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&got); err != nil {
		t.Fatalf("query after the user was dropped: %v", err)
	}
	if got != newUser || src.refreshes != 1 {
		t.Errorf("connected as %s after %d refreshes; want %s after 1", got, src.refreshes, newUser)
	}
}

// Replacing the credentials file changes the user of new connections, with no restart.
func TestFileCredentialsAreReadPerConnection(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	first, firstPass := db.CreateUser(t, "SELECT")
	second, secondPass := db.CreateUser(t, "SELECT")
	file := filepath.Join(t.TempDir(), "db-credentials")
	write := func(user, pass string) {
		if err := os.WriteFile(file, []byte(user+":"+pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(first, firstPass)
	pool, err := mysqlconn.Open(config(db), mysqlconn.FileCredentials{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	user := func() string {
		conn, err := pool.Conn(context.Background()) // a fresh connection: the pool is emptied below
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var u string
		if err := conn.QueryRowContext(context.Background(), "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := user(); u != first {
		t.Fatalf("connected as %s, want %s", u, first)
	}
	write(second, secondPass)
	pool.SetMaxIdleConns(0) // retire the idle connection of the first user
	if u := user(); u != second {
		t.Errorf("after the file changed, connected as %s, want %s", u, second)
	}
}

// With AddrFile, every new connection dials the address the file holds now, not Addr: rewriting the file (an
// operator's promotion of a replica) moves the pool to another server with no restart.
func TestAddrFileIsReadPerConnection(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	user, pass := db.CreateUser(t, "SELECT")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: a dial is refused at once
	file := filepath.Join(t.TempDir(), "db-addr")
	point := func(addr string) {
		if err := os.WriteFile(file, []byte(addr+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config(db)
	cfg.Addr, cfg.AddrFile = dead, file
	pool, err := mysqlconn.Open(cfg, mysqlconn.Static{Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.SetMaxIdleConns(0) // every query below opens a new connection
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	point(db.Addr)
	if err := pool.PingContext(ctx); err != nil {
		t.Fatalf("the file names the live server, Addr a dead one: %v; want the file's address dialled", err)
	}
	point(dead)
	if err := pool.PingContext(ctx); err == nil {
		t.Fatal("the file was rewritten to a dead address, and a new connection still opened: the file was not read again")
	}
	point(db.Addr)
	if err := pool.PingContext(ctx); err != nil {
		t.Fatalf("the file names the live server again: %v", err)
	}
	point("not an address")
	if err := pool.PingContext(ctx); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a file without host:port: %v; want an error naming the file", err)
	}
}
