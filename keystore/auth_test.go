package keystore

import (
	"crypto/sha256"
	"fmt"
	"sync"
)

// testAuth is an Authenticator with deterministic keys (so that a crash
// test's child process has the same ones): profile p's version v key is
// SHA-256("test record key " p v). Profiles "default" and "other" exist at
// version 1; rotate and retire move a profile on.
type testAuth struct {
	mu       sync.Mutex
	active   map[string]int
	versions map[string]map[int]bool
}

func newTestAuth() *testAuth {
	return &testAuth{active: map[string]int{"default": 1, "other": 1},
		versions: map[string]map[int]bool{"default": {1: true}, "other": {1: true}}}
}

func testRecordKey(profile string, v int) []byte {
	k := sha256.Sum256([]byte(fmt.Sprintf("test record key %s %d", profile, v)))
	return k[:]
}

func (a *testAuth) RecordKey(profile string, v int) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.versions[profile][v] {
		return nil, nil
	}
	return testRecordKey(profile, v), nil
}

func (a *testAuth) ActiveRecordKey(profile string) (int, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.active[profile]
	if v == 0 {
		return 0, nil, nil
	}
	return v, testRecordKey(profile, v), nil
}

// rotate makes a new version of profile active, keeping the old ones.
func (a *testAuth) rotate(profile string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active[profile]++
	a.versions[profile][a.active[profile]] = true
	return a.active[profile]
}

// retire forgets every version of profile but the active one.
func (a *testAuth) retire(profile string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.versions[profile] = map[int]bool{a.active[profile]: true}
}

// opts gives o a fresh test authenticator with namespace "default".
func opts(o Options) Options {
	if o.Authenticator == nil {
		o.Authenticator = newTestAuth()
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	return o
}
