package replication

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

func identity(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestChannel runs two sites' channels on loopback: a key created at the
// primary reaches the replica through the sender; a peer pinned to another
// certificate gets nothing and shows FAILED.
func TestChannel(t *testing.T) {
	t.Parallel()
	pmk := make([]byte, 32)
	if _, err := rand.Read(pmk); err != nil {
		t.Fatal(err)
	}
	east, west := opstest.NewSite(t, "us-east-1", pmk), opstest.NewSite(t, "us-west-2", pmk)
	eID, wID, rogue := identity(t), identity(t), identity(t)
	eRep, err := New(Config{Certificate: eID, RetryInterval: 50 * time.Millisecond}, east, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	eLn, err := eRep.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		recvMu          sync.Mutex
		received        []ops.ReplicaSnapshot
		applied, synced []string
	)
	wRep, err := New(Config{Certificate: wID, Peers: []Peer{{Region: "us-east-1", Endpoint: eLn.Addr().String(),
		Fingerprint: Fingerprint(eID.Certificate[0])}}, Received: func(peer string, body []byte) {
		var s ops.ReplicaSnapshot
		if peer != "us-east-1" || json.Unmarshal(body, &s) != nil {
			t.Errorf("Received(%q, %.40q…)", peer, body)
		}
		recvMu.Lock()
		defer recvMu.Unlock()
		received = append(received, s)
	}, Applied: func(id, from string, gen uint64, deleted bool) {
		recvMu.Lock()
		defer recvMu.Unlock()
		applied = append(applied, fmt.Sprintf("%s from %s gen %d deleted %v", id, from, gen, deleted))
	}}, west, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	wLn, err := wRep.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Now that the addresses are known, the primary's peers: us-west-2
	// pinned right, eu-west-1 at the same endpoint pinned to another certificate.
	eRep, err = New(Config{Certificate: eID, RetryInterval: 50 * time.Millisecond, Peers: []Peer{
		{Region: "us-west-2", Endpoint: wLn.Addr().String(), Fingerprint: Fingerprint(wID.Certificate[0])},
		{Region: "eu-west-1", Endpoint: wLn.Addr().String(), Fingerprint: Fingerprint(rogue.Certificate[0])}},
		Synchronized: func(id, region string, gen uint64) {
			recvMu.Lock()
			defer recvMu.Unlock()
			synced = append(synced, fmt.Sprintf("%s to %s gen %d", id, region, gen))
		}}, east, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = eRep.Serve(eLn) }()
	go func() { _ = wRep.Serve(wLn) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go eRep.Run(ctx)
	t.Cleanup(func() {
		_ = eRep.Shutdown(context.Background())
		_ = wRep.Shutdown(context.Background())
	})

	attrs := keyspec.Attributes{Usage: keyspec.M7, Class: keyspec.Symmetric, Algorithm: keyspec.HMACSHA256,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	k, err := east.CreateKey(ops.CreateKeyInput{Attributes: attrs, ReplicationRegions: []string{"us-west-2", "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	westARN := strings.Replace(k.ARN, ":us-east-1:", ":us-west-2:", 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := east.GetKey(k.ARN)
		if err != nil {
			t.Fatal(err)
		}
		w, e := g.Replication.Regions["us-west-2"], g.Replication.Regions["eu-west-1"]
		if w.State == ops.ReplicationSynchronized && e.State == ops.ReplicationFailed {
			if !strings.Contains(e.Message, "pinned fingerprint") {
				t.Errorf("eu-west-1: %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("states: us-west-2 %+v, eu-west-1 %+v", w, e)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rk, err := west.GetKey(westARN)
	if err != nil || rk.KCV != k.KCV || rk.Replication == nil || rk.Replication.Role != ops.RoleReplica {
		t.Fatalf("replica %+v %v", rk, err)
	}
	// The Received hook saw what the endpoint decoded: the key's snapshot
	// from us-east-1, its block under the main key (never empty).
	recvMu.Lock()
	if len(received) == 0 || received[0].KCV != k.KCV || received[0].PrimaryRegion != "us-east-1" || received[0].KeyBlock == "" {
		t.Errorf("Received saw %+v", received)
	}
	// Applied at the replica, Synchronized at the primary (never for the
	// refused eu-west-1).
	id := k.ARN[strings.LastIndex(k.ARN, "/")+1:]
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(applied, id+" from us-east-1 gen 1 deleted false") ||
		!slices.Contains(synced, id+" to us-west-2 gen 1"); { // the hooks run just after the states are recorded
		if time.Now().After(deadline) {
			t.Errorf("Applied %q, Synchronized %q", applied, synced)
			break
		}
		recvMu.Unlock()
		time.Sleep(10 * time.Millisecond)
		recvMu.Lock()
	}
	for _, s := range synced {
		if strings.Contains(s, "eu-west-1") {
			t.Errorf("Synchronized for the refused peer: %s", s)
		}
	}
	recvMu.Unlock()
	// A disabled primary disables the replica.
	if _, err := east.StopKeyUsage(k.ARN); err != nil {
		t.Fatal(err)
	}
	for deadline = time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rk, _ := west.GetKey(westARN); !rk.Enabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica is still enabled")
		}
	}
	// The replica site refuses a client that is not a pinned peer.
	c := &tls.Config{Certificates: []tls.Certificate{rogue}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // G402: the test plays the rogue client
	conn, err := tls.Dial("tcp", wLn.Addr().String(), c)
	if err == nil {
		// TLS 1.3: the client's certificate is checked after the client's
		// handshake ends; the refusal arrives on the first read.
		_, err = conn.Read(make([]byte, 1))
		_ = conn.Close()
	}
	if err == nil {
		t.Fatal("an unpinned client was accepted")
	}
	if _, err := west.StopKeyUsage(westARN); fault.KindOf(err) != fault.Validation {
		t.Fatalf("StopKeyUsage on the replica: %v", err)
	}
}
