package sqlite

import (
	"context"
)

// PragmaCheck reads the durability settings of the write connection.
func (s *Store) PragmaCheck(ctx context.Context, mode, sync *string) error {
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(mode); err != nil {
		return err
	}
	return s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(sync)
}
