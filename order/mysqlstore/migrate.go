package mysqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings the schema up to date. Run it with the migration credentials: the runtime role cannot
// change the schema, on purpose.
// After it, run partitions.Maintain: the partitioned tables start with one catch-all partition.
func Migrate(ctx context.Context, db *sql.DB) ([]string, error) { return migrateTo(ctx, db, 0) }

// migrateTo applies migrations up to version (0: all).
func migrateTo(ctx context.Context, db *sql.DB, version int64) ([]string, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, fsys)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var results []*goose.MigrationResult
	if version > 0 {
		results, err = p.UpTo(ctx, version)
	} else {
		results, err = p.Up(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate up: %w", err)
	}
	applied := make([]string, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Path)
	}
	return applied, nil
}
