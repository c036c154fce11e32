package opstest

import (
	"testing"

	"payhsm/ops"
)

// NewSite returns a Service for a site of region whose "default" profile
// main key is mainKey (32 bytes): sites made with the same mainKey share it,
// as two appliances do after the TR-34 main-key synchronization; each has
// its own token, region main key and key store.
func NewSite(tb testing.TB, region string, mainKey []byte) *ops.Service {
	tb.Helper()
	svc, _, _, _ := newServiceWith(tb, mainKey, func(c *ops.Config) { c.Region = region })
	return svc
}
