package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"payhsm/fault"
	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv"
	"payhsm/keystore/kv/kvtest"
)

var prefixes atomic.Int64

// TestConformance runs the engine suite on a real 3-member cluster, each
// test under its own prefix.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	open := func(t *testing.T, prefix string) kv.Engine {
		e, err := Open(Config{Endpoints: c.Endpoints(), Prefix: prefix, RequestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	kvtest.Run(t, kvtest.Env{
		New: func(t *testing.T) kv.Engine {
			return open(t, fmt.Sprintf("/kvtest/%d/", prefixes.Add(1)))
		},
		Shared: func(t *testing.T, e kv.Engine) kv.Engine { return open(t, e.(*Engine).Prefix()) },
	})
}

func TestValidatePrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"/payhsm/", true},
		{"/payhsm/eu-west-1/", true},
		{"/a.b_c-d/", true},
		{"/", false},
		{"", false},
		{"payhsm/", false},
		{"/payhsm", false},
		{"/pay//hsm/", false},
		{"/pay hsm/", false},
		{"/payhsm\x00/", false},
		{"/" + strings.Repeat("a", 300) + "/", false},
	} {
		if err := ValidatePrefix(tc.prefix); (err == nil) != tc.ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}

// TestNoSpaceRefusesWrites: a cluster whose backend reaches its
// --quota-backend-bytes raises the NOSPACE alarm; a commit is then refused
// at once (not reported as of unknown outcome) with kv.ErrUnavailable and
// ErrNoSpace, a fault of kind Unavailable whose client message names the
// alarm and the remedy; reads go on; once an operator compacts,
// defragments and disarms the alarm, writes resume.
func TestNoSpaceRefusesWrites(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Members: 1, Args: []string{"--quota-backend-bytes", strconv.Itoa(4 << 20), "--unsafe-no-fsync"}})
	e, err := Open(Config{Endpoints: c.Endpoints(), Prefix: "/nospace/", RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	put := func(k string, v []byte) error {
		tx, err := e.Begin()
		if err != nil {
			return err
		}
		defer tx.Discard()
		if err := tx.Set([]byte(k), v); err != nil {
			return err
		}
		return tx.Commit()
	}
	big := make([]byte, 512<<10)
	var werr error
	n := 0
	for ; n < 100 && werr == nil; n++ {
		werr = put(fmt.Sprintf("big/%03d", n), big)
	}
	if werr == nil {
		t.Fatal("100 writes of 512 KiB into a 4 MiB quota: no NOSPACE")
	}
	t.Logf("refused after %d writes: %v", n-1, werr)
	f := fault.As(werr)
	if !errors.Is(werr, ErrNoSpace) || !errors.Is(werr, kv.ErrUnavailable) || f.Kind != fault.Unavailable || f.Message != noSpaceMessage ||
		strings.Contains(werr.Error(), unknownOutcome) {
		t.Fatalf("the write refused for NOSPACE: %v (kind %v, message %q)", werr, f.Kind, f.Message)
	}
	// A small write is refused too (the alarm, not the size), a read is served.
	if err := put("small", []byte("x")); !errors.Is(err, ErrNoSpace) {
		t.Errorf("a small write under the alarm: %v", err)
	}
	if _, ok, err := e.Get([]byte("big/000")); err != nil || !ok {
		t.Errorf("a read under the alarm: %v %v", ok, err)
	}
	// The operator's remedy: delete, compact, defragment, disarm.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := e.Client()
	resp, err := cl.Delete(ctx, "/nospace/big/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Defragment(ctx, c.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	if err := put("small", []byte("x")); err != nil {
		t.Errorf("a write after the alarm was cleared: %v", err)
	}
}
