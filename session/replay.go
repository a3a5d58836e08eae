package session

import (
	"context"
	"fmt"
	"time"
)

// replayPrefix keys the one-time identifiers Claim records.
const replayPrefix = "j:"

// Claim records the one-time identifier id (a logout token's issuer and
// jti, say) as used for ttl, fleet-wide when the store is shared, and
// reports whether this was its first use: every later Claim of id within
// ttl, on any replica, reports false. The store sees only a hash of id.
func (m *Manager) Claim(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	n, _, err := m.store.Incr(ctx, hashKey(replayPrefix, []byte(id)), ttl)
	if err != nil {
		return false, fmt.Errorf("session: claim: %w", err)
	}
	return n == 1, nil
}

// Unclaim forgets a Claim whose work failed, so that a retry of the same
// id is not taken for a replay.
func (m *Manager) Unclaim(ctx context.Context, id string) error {
	if err := m.store.Delete(ctx, hashKey(replayPrefix, []byte(id))); err != nil {
		return fmt.Errorf("session: unclaim: %w", err)
	}
	return nil
}
