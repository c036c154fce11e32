package opstest

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/keystore"
	"payhsm/ops"
)

// NewSite returns a Service for a site of region whose "default" profile
// main key is mainKey (32 bytes): sites made with the same mainKey share it,
// as two appliances do after the TR-34 main-key synchronization; each has
// its own token, region main key and key store.
func NewSite(tb testing.TB, region string, mainKey []byte) *ops.Service {
	tb.Helper()
	mod := memtoken.New()
	if err := mod.InitToken(tokenLabel, tokenPIN); err != nil {
		tb.Fatal(err)
	}
	log := zap.NewNop()
	store, err := keystore.Open("keystore", keystore.Options{FS: vfs.NewMem(), Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	cust, err := custody.Open(custody.Config{Module: mod, TokenLabel: tokenLabel, PIN: tokenPIN,
		Initialize: true, NotFound: keystore.ErrNotFound}, store, log)
	if err != nil {
		_ = store.Close() // the open error is the one to report
		tb.Fatal(err)
	}
	if err := store.SetAuthenticator(cust, "default"); err != nil {
		tb.Fatal(err)
	}
	if _, err := cust.InstallProfile("default", append([]byte(nil), mainKey...)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := errors.Join(cust.Close(), store.Close()); err != nil {
			tb.Error(err)
		}
	})
	svc, err := ops.New(ops.Config{Region: region, Account: "000000000000", NewRSAKey: testRSAKey}, store, cust, log)
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}
