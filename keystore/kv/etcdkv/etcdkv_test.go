package etcdkv

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
