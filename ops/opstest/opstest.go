// Package opstest builds an operations layer for tests and benchmarks of one
// layer: the real ops.Service, custody and Pebble keystore, over two
// stand-ins that keep the tests fast and independent of the machine: an
// in-memory PKCS#11 token (hsm/custody/memtoken; SoftHSM2 need not be
// installed) and Pebble's in-memory file system (vfs.NewMem). The real token
// and disk are covered by hsm/custody's, keystore's and test/e2e's tests.
package opstest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/internal/testkeys"
	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
)

// Test token credentials (of an in-memory token: nothing to protect).
const (
	tokenLabel = "payhsm-test"
	tokenPIN   = "0000"
)

// New returns a Service on a fresh appliance: a keystore in memory and a
// region main key in a fresh in-memory token.
func New(tb testing.TB) *ops.Service {
	tb.Helper()
	svc, _ := NewWithToken(tb)
	return svc
}

// NewWithToken is New that also returns the token's module, so that a test
// can make the token fail (Module.SetDead) and check that operations fail
// cleanly.
func NewWithToken(tb testing.TB) (*ops.Service, *memtoken.Module) {
	tb.Helper()
	svc, mod, _, _ := newService(tb)
	return svc, mod
}

// NewWithCustody is NewWithToken that also returns the custodian, so that a
// test can probe the token as the daemon does (Custodian.Probe). Its loss
// grace is zero: once a probe finds the token gone, every operation that
// uses a key is refused.
func NewWithCustody(tb testing.TB) (*ops.Service, *memtoken.Module, *custody.Custodian) {
	tb.Helper()
	svc, mod, _, cust := newService(tb)
	return svc, mod, cust
}

// NewWithStore is New that also returns the key store beneath the service,
// so that a test can write records the service would not (a bug's, or an
// older release's) and check what the service makes of them.
func NewWithStore(tb testing.TB) (*ops.Service, *keystore.Store) {
	tb.Helper()
	svc, _, store, _ := newService(tb)
	return svc, store
}

// NewWithConfig is New with the service's configuration adjusted by tune
// (a clock, a purge hook).
func NewWithConfig(tb testing.TB, tune func(*ops.Config)) *ops.Service {
	tb.Helper()
	svc, _, _, _ := newService(tb, tune)
	return svc
}

func newService(tb testing.TB, tune ...func(*ops.Config)) (*ops.Service, *memtoken.Module, *keystore.Store, *custody.Custodian) {
	tb.Helper()
	return newServiceWith(tb, nil, tune...)
}

// newServiceWith is newService whose "default" profile main key is mainKey
// (nil: a new one).
func newServiceWith(tb testing.TB, mainKey []byte, tune ...func(*ops.Config)) (*ops.Service, *memtoken.Module, *keystore.Store, *custody.Custodian) {
	tb.Helper()
	store, err := keystore.Open("keystore", keystore.Options{FS: vfs.NewMem(), Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	return newServiceOn(tb, store, mainKey, tune...)
}

// newServiceOn is newServiceWith on store, which it closes when the test
// ends.
func newServiceOn(tb testing.TB, store *keystore.Store, mainKey []byte, tune ...func(*ops.Config)) (*ops.Service, *memtoken.Module, *keystore.Store, *custody.Custodian) {
	tb.Helper()
	mod := memtoken.New()
	if err := mod.InitToken(tokenLabel, tokenPIN); err != nil {
		_ = store.Close()
		tb.Fatal(err)
	}
	log := zap.NewNop()
	cust, err := custody.Open(custody.Config{Module: mod, TokenLabel: tokenLabel, PIN: tokenPIN,
		Initialize: true, NotFound: keystore.ErrNotFound}, store, log)
	if err != nil {
		_ = store.Close() // the open error is the one to report
		tb.Fatal(err)
	}
	if err := store.SetAuthenticator(cust, "default"); err != nil {
		tb.Fatal(err)
	}
	if mainKey == nil {
		_, err = cust.CreateProfile("default")
	} else {
		_, err = cust.InstallProfile("default", append([]byte(nil), mainKey...))
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := errors.Join(cust.Close(), store.Close()); err != nil {
			tb.Error(err)
		}
	})
	cfg := ops.Config{Region: "us-east-1", Account: "000000000000", NewRSAKey: testRSAKey}
	for _, f := range tune {
		f(&cfg)
	}
	svc, err := ops.New(cfg, store, cust, log)
	if err != nil {
		tb.Fatal(err)
	}
	return svc, mod, store, cust
}

// Import imports a known clear key (hex) with the given attributes through
// the public path (GetParametersForImport + an RSA-OAEP key cryptogram) and
// returns its ARN.
func Import(tb testing.TB, svc *ops.Service, a keyspec.Attributes, keyHex string) string {
	tb.Helper()
	p, err := svc.GetParametersForImport(ops.MaterialKeyCryptogram, keyspec.RSA3072, true)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(p.Certificate)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		tb.Fatal(err)
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, cert.PublicKey.(*rsa.PublicKey), key, nil)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := svc.ImportKey(ops.ImportKeyInput{KeyCryptogram: &ops.ImportKeyCryptogram{
		Attributes: a, Exportable: true, ImportToken: p.Token, Cryptogram: ct}})
	if err != nil {
		tb.Fatalf("import: %v", err)
	}
	return k.ARN
}

// testKeys are committed test-only RSA keys (testdata/rsa-<bits>-<n>.pem, made
// once with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:<bits>`):
// generating RSA keys took over 90% of the ops tests' CPU.
//
//go:embed testdata/*.pem
var testKeys embed.FS

var rsaPool = struct {
	sync.Mutex
	keys map[int][]*rsa.PrivateKey
	next map[int]int
}{next: map[int]int{}}

// testRSAKey is the services' ops.Config.NewRSAKey: it hands out the
// committed keys of the size asked for in turn, so consecutive keys differ.
func testRSAKey(bits int) (*rsa.PrivateKey, error) {
	rsaPool.Lock()
	defer rsaPool.Unlock()
	if rsaPool.keys == nil {
		rsaPool.keys = map[int][]*rsa.PrivateKey{}
		names, err := fs.Glob(testKeys, "testdata/rsa-*.pem")
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			raw, err := testKeys.ReadFile(name)
			if err != nil {
				return nil, err
			}
			rk, err := testkeys.Parse(raw)
			if err != nil {
				return nil, fmt.Errorf("opstest: %s: %w", name, err)
			}
			rsaPool.keys[rk.N.BitLen()] = append(rsaPool.keys[rk.N.BitLen()], rk)
		}
	}
	ks := rsaPool.keys[bits]
	if len(ks) == 0 {
		return nil, fmt.Errorf("opstest: no committed %d-bit test key", bits)
	}
	k := ks[rsaPool.next[bits]%len(ks)]
	rsaPool.next[bits]++
	return k, nil
}

// NewStoreCustody returns a Service with its key store and custodian, for
// packages that keep sealed records beside the keys (ceremony/mpa).
func NewStoreCustody(tb testing.TB) (*ops.Service, *keystore.Store, *custody.Custodian) {
	tb.Helper()
	svc, _, store, cust := newService(tb)
	return svc, store, cust
}

// NewOn is New on store (for benchmarks on a store of their own, such as a
// large one on disk), which it closes when the test ends.
func NewOn(tb testing.TB, store *keystore.Store) *ops.Service {
	tb.Helper()
	svc, _, _, _ := newServiceOn(tb, store, nil)
	return svc
}
