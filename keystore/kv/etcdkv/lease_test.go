package etcdkv

import (
	"testing"
	"time"

	"payhsm/internal/etcdtest"
)

// TestPutLeased: a leased key is readable, renewing keeps its lease, a
// revoked lease deletes the key, and a lease that expired is replaced.
func TestPutLeased(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	e, err := Open(Config{Endpoints: c.Endpoints(), Prefix: "/lease/", RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	key := []byte("sys/fleet/node/a")
	l1, err := e.PutLeased(key, []byte("one"), 0, 2*time.Second)
	if err != nil || l1 == 0 {
		t.Fatalf("first put: lease %d, %v", l1, err)
	}
	l2, err := e.PutLeased(key, []byte("two"), l1, 2*time.Second)
	if err != nil || l2 != l1 {
		t.Fatalf("renewal: lease %d (was %d), %v", l2, l1, err)
	}
	if v, ok, err := e.Get(key); err != nil || !ok || string(v) != "two" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if err := e.Revoke(l2); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.Get(key); err != nil || ok {
		t.Fatalf("after revoke: present %v, %v", ok, err)
	}
	// A revoked (as an expired) lease is replaced by a new one.
	l3, err := e.PutLeased(key, []byte("three"), l2, time.Second)
	if err != nil || l3 == 0 || l3 == l2 {
		t.Fatalf("put after expiry: lease %d (old %d), %v", l3, l2, err)
	}
	// Not renewed: the key expires.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := e.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a leased key outlived its lease by 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
