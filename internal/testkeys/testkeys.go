// Package testkeys hands tests committed, test-only RSA keys instead of keys
// generated at test time (an RSA-4096 generation takes anywhere from a
// fraction of a second to many seconds, which made test times erratic).
//
// The keys are PEM files in the testdata directory of the package under test
// (go test runs in that directory), named rsa-<bits>-<n>.pem with n = 1, 2,
// …, each made once with
//
//	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:<bits>
//
// and prefixed with a line saying it is a test-only key. They protect
// nothing. Only tests import this package.
package testkeys

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Dir is where RSA looks for the keys, relative to the package under test.
const Dir = "testdata"

// use counts, per top-level test, the keys of each size handed out so far;
// an entry lives while any test or subtest that took a key from it runs, so
// a test run again (-count) starts from key 1.
var use = struct {
	sync.Mutex
	m    map[string]*counter
	held map[testing.TB]bool // tests and subtests holding a reference
}{m: map[string]*counter{}, held: map[testing.TB]bool{}}

type counter struct {
	next map[int]int // bits → keys handed out
	refs int         // tests and subtests holding keys from this entry
}

// RSA returns a committed test-only RSA private key of the given size. Within
// one top-level test (with its subtests) every call returns a different key,
// so a test can make, say, a CA and an unrelated impostor CA; the test fails
// when testdata holds too few keys of that size.
func RSA(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	root, _, _ := strings.Cut(tb.Name(), "/")
	use.Lock()
	c := use.m[root]
	if c == nil {
		c = &counter{next: map[int]int{}}
		use.m[root] = c
	}
	if !use.held[tb] {
		use.held[tb] = true
		c.refs++
		tb.Cleanup(func() {
			use.Lock()
			defer use.Unlock()
			delete(use.held, tb)
			if c.refs--; c.refs == 0 && use.m[root] == c {
				delete(use.m, root)
			}
		})
	}
	c.next[bits]++
	n := c.next[bits]
	use.Unlock()

	path := filepath.Join(Dir, fmt.Sprintf("rsa-%d-%d.pem", bits, n))
	raw, err := os.ReadFile(path) //nolint:gosec // G304: a committed key file, testdata/rsa-<bits>-<n>.pem.
	if err != nil {
		tb.Fatalf("testkeys: test %s needs RSA-%d key number %d: %v (add one to %s with openssl genpkey)", root, bits, n, err, Dir)
	}
	rk, err := Parse(raw)
	if err != nil {
		tb.Fatalf("testkeys: %s: %v", path, err)
	}
	if rk.N.BitLen() != bits {
		tb.Fatalf("testkeys: %s is not an RSA-%d key", path, bits)
	}
	return rk
}

// Parse reads a committed key file: a PKCS#8 PEM RSA private key (after
// any comment lines).
func Parse(raw []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("no PKCS#8 PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an RSA key")
	}
	return rk, nil
}
