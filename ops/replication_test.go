package ops_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// sites returns a primary (us-east-1) and a replica site (us-west-2) that
// share their profile main key, the primary configured with us-west-2 and
// eu-west-1 as peers.
func sites(t *testing.T) (primary, replica *ops.Service, wakes *int) {
	t.Helper()
	pmk := make([]byte, 32)
	if _, err := rand.Read(pmk); err != nil {
		t.Fatal(err)
	}
	primary, replica = opstest.NewSite(t, "us-east-1", pmk), opstest.NewSite(t, "us-west-2", pmk)
	wakes = new(int)
	if err := primary.SetReplication([]string{"us-west-2", "eu-west-1"}, func() { *wakes++ }); err != nil {
		t.Fatal(err)
	}
	if err := replica.SetReplication([]string{"us-east-1"}, nil); err != nil {
		t.Fatal(err)
	}
	return primary, replica, wakes
}

var macKey = keyspec.Attributes{Usage: keyspec.M7, Class: keyspec.Symmetric, Algorithm: keyspec.HMACSHA256,
	Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}

func mustKind(t *testing.T, what string, err error, kind fault.Kind) *fault.Error {
	t.Helper()
	f := fault.As(err)
	if f == nil || f.Kind != kind {
		t.Fatalf("%s: got %v, want a %v fault", what, err, kind)
	}
	return f
}

// deliver moves every pending delivery of src to dst (region dstRegion), as
// the sender does, and returns how many it moved.
func deliver(t *testing.T, src, dst *ops.Service, dstRegion string) int {
	t.Helper()
	out, err := src.ReplicationOutbox()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range out {
		if o.Region != dstRegion {
			continue
		}
		snap, gen, ok, err := src.ReplicationSnapshot(o.KeyID, o.Region)
		if err != nil || !ok {
			t.Fatalf("snapshot %v: %v %v", o, ok, err)
		}
		if err := dst.ApplyReplica(src.Region(), snap); err != nil {
			t.Fatalf("apply %v: %v", o, err)
		}
		if err := src.ReplicationDelivered(o.KeyID, o.Region, gen); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func replicaARN(arn string) string { return strings.Replace(arn, ":us-east-1:", ":us-west-2:", 1) }

func TestReplicationCreateAndReplicate(t *testing.T) {
	t.Parallel()
	p, r, wakes := sites(t)
	k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, Exportable: true, ReplicationRegions: []string{"us-west-2"},
		Tags: []ops.Tag{{Key: "team", Value: "cards"}}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Replication == nil || k.Replication.Role != ops.RolePrimary || k.Replication.PrimaryRegion != "us-east-1" ||
		k.Replication.Regions["us-west-2"].State != ops.ReplicationInProgress || k.Replication.UsingDefault {
		t.Fatalf("CreateKey replication = %+v", k.Replication)
	}
	if *wakes == 0 {
		t.Error("the sender was not woken")
	}
	// Nothing at the replica site until delivered.
	if _, err := r.GetKey(replicaARN(k.ARN)); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("replica before delivery: %v", err)
	}
	if n := deliver(t, p, r, "us-west-2"); n != 1 {
		t.Fatalf("delivered %d", n)
	}
	got, err := p.GetKey(k.ARN)
	if err != nil || got.Replication.Regions["us-west-2"].State != ops.ReplicationSynchronized {
		t.Fatalf("after delivery: %+v %v", got.Replication, err)
	}
	rk, err := r.GetKey(replicaARN(k.ARN))
	if err != nil {
		t.Fatal(err)
	}
	if rk.Replication == nil || rk.Replication.Role != ops.RoleReplica || rk.Replication.PrimaryRegion != "us-east-1" {
		t.Fatalf("replica replication = %+v", rk.Replication)
	}
	if rk.KCV != k.KCV || rk.Attributes != k.Attributes || !rk.Enabled || rk.Exportable != k.Exportable {
		t.Fatalf("replica %+v, primary %+v", rk, k)
	}
	// The same key: the same MAC at both sites.
	msg := []byte("replicated keys give the same answers")
	m1, err := p.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k.ARN, MessageData: msg, Attributes: ops.MacAttributes{Algorithm: ops.MacHMACSHA256}})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := r.GenerateMac(ops.GenerateMacInput{KeyIdentifier: replicaARN(k.ARN), MessageData: msg, Attributes: ops.MacAttributes{Algorithm: ops.MacHMACSHA256}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m1.Mac, m2.Mac) {
		t.Fatalf("MAC at primary %X, at replica %X", m1.Mac, m2.Mac)
	}
	tags, _, err := r.ListTags(replicaARN(k.ARN), ops.Page{})
	if err != nil || len(tags) != 1 || tags[0] != (ops.Tag{Key: "team", Value: "cards"}) {
		t.Fatalf("replica tags %v %v", tags, err)
	}
	// Nothing is pending any more.
	if out, _ := p.ReplicationOutbox(); len(out) != 0 {
		t.Fatalf("outbox after delivery: %v", out)
	}
}

func TestReplicaIsReadOnly(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, p, r, "us-west-2")
	arn := replicaARN(k.ARN)
	days := 3
	for name, call := range map[string]func() error{
		"StopKeyUsage":  func() error { _, err := r.StopKeyUsage(arn); return err },
		"StartKeyUsage": func() error { _, err := r.StartKeyUsage(arn); return err },
		"DeleteKey":     func() error { _, err := r.DeleteKey(arn, &days); return err },
		"TagResource":   func() error { return r.TagResource(arn, []ops.Tag{{Key: "a", Value: "b"}}) },
		"UntagResource": func() error { return r.UntagResource(arn, []string{"a"}) },
		"AddKeyReplicationRegions": func() error {
			_, err := r.AddKeyReplicationRegions(arn, []string{"us-east-1"})
			return err
		},
		"RemoveKeyReplicationRegions": func() error {
			_, err := r.RemoveKeyReplicationRegions(arn, []string{"us-east-1"})
			return err
		},
	} {
		err := call()
		f := fault.As(err)
		if f == nil || f.Kind != fault.Validation {
			t.Errorf("%s on a replica: %v, want a Validation fault", name, err)
			continue
		}
		if name != "AddKeyReplicationRegions" && !strings.Contains(f.Message, "Replica Region key") {
			t.Errorf("%s on a replica: %q", name, f.Message)
		}
	}
	if rk, _ := r.GetKey(arn); !rk.Enabled || rk.State != ops.StateCreateComplete {
		t.Fatalf("a refused change changed the replica: %+v", rk)
	}
	// Aliases are the site's own resources, not the key's: allowed.
	if _, err := r.CreateAlias("alias/dr-mac", arn); err != nil {
		t.Errorf("alias on a replica: %v", err)
	}
}

func TestReplicationPropagatesPrimaryChanges(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, p, r, "us-west-2")
	arn := replicaARN(k.ARN)
	steps := []struct {
		name  string
		do    func() error
		check func(*ops.Key) bool
	}{
		{"StopKeyUsage", func() error { _, err := p.StopKeyUsage(k.ARN); return err }, func(k *ops.Key) bool { return !k.Enabled }},
		{"StartKeyUsage", func() error { _, err := p.StartKeyUsage(k.ARN); return err }, func(k *ops.Key) bool { return k.Enabled }},
		{"TagResource", func() error { return p.TagResource(k.ARN, []ops.Tag{{Key: "env", Value: "prod"}}) }, nil},
		{"DeleteKey", func() error { _, err := p.DeleteKey(k.ARN, nil); return err }, func(k *ops.Key) bool {
			return k.State == ops.StateDeletePending && !k.DeletePending.IsZero()
		}},
		{"RestoreKey", func() error { _, err := p.RestoreKey(k.ARN); return err }, func(k *ops.Key) bool { return k.State == ops.StateCreateComplete }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		pk, _ := p.GetKey(k.ARN)
		if pk.Replication.Regions["us-west-2"].State != ops.ReplicationInProgress {
			t.Fatalf("%s: region state %+v", st.name, pk.Replication.Regions)
		}
		if n := deliver(t, p, r, "us-west-2"); n != 1 {
			t.Fatalf("%s: delivered %d", st.name, n)
		}
		rk, err := r.GetKey(arn)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		pk, _ = p.GetKey(k.ARN)
		if rk.Enabled != pk.Enabled || rk.State != pk.State || !rk.DeletePending.Equal(pk.DeletePending) || !rk.UsageStop.Equal(pk.UsageStop) {
			t.Fatalf("%s: replica %+v, primary %+v", st.name, rk, pk)
		}
		if st.check != nil && !st.check(rk) {
			t.Fatalf("%s: replica %+v", st.name, rk)
		}
	}
	tags, _, _ := r.ListTags(arn, ops.Page{})
	if len(tags) != 1 || tags[0].Key != "env" {
		t.Fatalf("replica tags %v", tags)
	}
}

// A change made while a snapshot is in flight is not lost: the delivery of
// the older generation leaves the region pending.
func TestReplicationChangeDuringDelivery(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	if err != nil {
		t.Fatal(err)
	}
	id := k.ARN[strings.LastIndex(k.ARN, "/")+1:]
	snap, gen, ok, err := p.ReplicationSnapshot(id, "us-west-2")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, err := p.StopKeyUsage(k.ARN); err != nil { // while snap travels
		t.Fatal(err)
	}
	if err := r.ApplyReplica("us-east-1", snap); err != nil {
		t.Fatal(err)
	}
	if err := p.ReplicationDelivered(id, "us-west-2", gen); err != nil {
		t.Fatal(err)
	}
	if out, _ := p.ReplicationOutbox(); len(out) != 1 {
		t.Fatalf("the stop was lost: outbox %v", out)
	}
	deliver(t, p, r, "us-west-2")
	if rk, _ := r.GetKey(replicaARN(k.ARN)); rk.Enabled {
		t.Fatal("the replica is still enabled")
	}
	// A stale snapshot arriving late changes nothing.
	if err := r.ApplyReplica("us-east-1", snap); err != nil {
		t.Fatal(err)
	}
	if rk, _ := r.GetKey(replicaARN(k.ARN)); rk.Enabled {
		t.Fatal("a stale snapshot re-enabled the replica")
	}
}

func TestReplicationRegionChecks(t *testing.T) {
	t.Parallel()
	p, _, _ := sites(t)
	for _, regions := range [][]string{{"us-east-2"}, {"us-east-1"}, {"us-west-2", "ap-south-1"}} {
		_, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: regions})
		f := mustKind(t, "CreateKey to "+strings.Join(regions, ","), err, fault.Validation)
		if f.Subject != fault.SubjectReplicationRegions {
			t.Errorf("%v: subject %v", regions, f.Subject)
		}
		if _, err := p.EnableDefaultReplicationRegions(regions); fault.KindOf(err) != fault.Validation {
			t.Errorf("EnableDefault %v: %v", regions, err)
		}
	}
	if ks, _, _ := p.ListKeys("", ops.Page{}); len(ks) != 0 {
		t.Fatalf("refused creates stored %d keys", len(ks))
	}
	// Asymmetric keys do not replicate.
	rsa := keyspec.Attributes{Usage: keyspec.D1, Class: keyspec.AsymmetricPair, Algorithm: keyspec.RSA2048,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	_, err := p.CreateKey(ops.CreateKeyInput{Attributes: rsa, ReplicationRegions: []string{"us-west-2"}})
	_ = mustKind(t, "asymmetric CreateKey with regions", err, fault.Validation)
	ak, err := p.CreateKey(ops.CreateKeyInput{Attributes: rsa})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.AddKeyReplicationRegions(ak.ARN, []string{"us-west-2"})
	_ = mustKind(t, "AddKeyReplicationRegions to an asymmetric key", err, fault.Validation)
	// Removing a region the key is not replicated to.
	k, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	_, err = p.RemoveKeyReplicationRegions(k.ARN, []string{"us-west-2"})
	_ = mustKind(t, "RemoveKeyReplicationRegions of a region not replicated to", err, fault.Validation)
	// A site without peers refuses every region.
	lone := opstest.New(t)
	if err := lone.SetReplication(nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err = lone.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	if f := mustKind(t, "CreateKey on a site without peers", err, fault.Validation); !strings.Contains(f.Message, "no replication peers") {
		t.Errorf("message %q", f.Message)
	}
}

func TestDefaultReplicationRegions(t *testing.T) {
	t.Parallel()
	p, _, _ := sites(t)
	if d, err := p.GetDefaultReplicationRegions(); err != nil || d == nil || len(d) != 0 {
		t.Fatalf("initial defaults %v %v", d, err)
	}
	before, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if d, err := p.EnableDefaultReplicationRegions([]string{"us-west-2", "eu-west-1", "us-west-2"}); err != nil || !slices.Equal(d, []string{"eu-west-1", "us-west-2"}) {
		t.Fatalf("enable: %v %v", d, err)
	}
	// Existing keys are not affected; new keys take the defaults.
	if k, _ := p.GetKey(before.ARN); k.Replication != nil {
		t.Fatalf("an existing key became multi-region: %+v", k.Replication)
	}
	k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if err != nil || k.Replication == nil || !k.Replication.UsingDefault || len(k.Replication.Regions) != 2 {
		t.Fatalf("new key: %+v %v", k, err)
	}
	// The key's own setting takes precedence, even an empty one.
	own, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	if own.Replication.UsingDefault || len(own.Replication.Regions) != 1 {
		t.Fatalf("own regions: %+v", own.Replication)
	}
	none, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{}})
	if none.Replication != nil {
		t.Fatalf("empty regions: %+v", none.Replication)
	}
	if d, err := p.DisableDefaultReplicationRegions([]string{"eu-west-1"}); err != nil || !slices.Equal(d, []string{"us-west-2"}) {
		t.Fatalf("disable: %v %v", d, err)
	}
	if d, _ := p.GetDefaultReplicationRegions(); !slices.Equal(d, []string{"us-west-2"}) {
		t.Fatalf("get: %v", d)
	}
}

func TestReplicationRemoveRegionDeletesReplica(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	k, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2", "eu-west-1"}})
	deliver(t, p, r, "us-west-2")
	got, err := p.RemoveKeyReplicationRegions(k.ARN, []string{"us-west-2"})
	if err != nil || got.Replication.Regions["us-west-2"].State != ops.ReplicationDeleteInProgress {
		t.Fatalf("remove: %+v %v", got, err)
	}
	deliver(t, p, r, "us-west-2")
	if _, err := r.GetKey(replicaARN(k.ARN)); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("replica after removal: %v", err)
	}
	got, _ = p.GetKey(k.ARN)
	if _, ok := got.Replication.Regions["us-west-2"]; ok || len(got.Replication.Regions) != 1 {
		t.Fatalf("regions after removal: %+v", got.Replication.Regions)
	}
	// Adding the region again brings the replica back.
	if _, err := p.AddKeyReplicationRegions(k.ARN, []string{"us-west-2"}); err != nil {
		t.Fatal(err)
	}
	deliver(t, p, r, "us-west-2")
	if rk, err := r.GetKey(replicaARN(k.ARN)); err != nil || rk.KCV != k.KCV {
		t.Fatalf("replica re-added: %+v %v", rk, err)
	}
}

func TestReplicationAttemptStates(t *testing.T) {
	t.Parallel()
	p, _, _ := sites(t)
	k, _ := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
	id := k.ARN[strings.LastIndex(k.ARN, "/")+1:]
	for _, c := range []struct {
		permanent bool
		want      string
	}{{false, ops.ReplicationInProgress}, {true, ops.ReplicationFailed}} {
		if err := p.ReplicationAttemptFailed(id, "us-west-2", "peer down", c.permanent); err != nil {
			t.Fatal(err)
		}
		st := must(p.GetKey(k.ARN)).Replication.Regions["us-west-2"]
		if st.State != c.want || st.Message != "peer down" {
			t.Fatalf("permanent=%v: %+v", c.permanent, st)
		}
	}
	// A failure stays in the outbox.
	if out, _ := p.ReplicationOutbox(); len(out) != 1 {
		t.Fatalf("outbox %v", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Only sites sharing the profile main key exchange keys, and what crosses
// is the wrapped key block, never the clear key.
func TestReplicationMaterial(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	const clearKey = "0123456789ABCDEFFEDCBA9876543210"
	arn := opstest.Import(t, p, keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}, clearKey)
	if _, err := p.AddKeyReplicationRegions(arn, []string{"us-west-2"}); err != nil {
		t.Fatal(err)
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	snap, _, _, err := p.ReplicationSnapshot(id, "us-west-2")
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(snap)
	if strings.Contains(strings.ToUpper(string(wire)), clearKey) || strings.Contains(strings.ToUpper(string(wire)), clearKey[:16]) {
		t.Fatal("the clear key is in the snapshot")
	}
	if snap.KeyBlock == "" || !strings.HasPrefix(snap.KeyBlock, "D") {
		t.Fatalf("the snapshot carries no X9.143 block: %q", snap.KeyBlock)
	}
	// A site with another profile main key refuses it and stores nothing.
	other := opstest.NewSite(t, "us-west-2", bytes.Repeat([]byte{7}, 32))
	if err := other.SetReplication([]string{"us-east-1"}, nil); err != nil {
		t.Fatal(err)
	}
	err = other.ApplyReplica("us-east-1", snap)
	if f := mustKind(t, "apply under another main key", err, fault.Conflict); !strings.Contains(f.Message, "ceremony sync") {
		t.Errorf("message %q", f.Message)
	}
	if _, err := other.GetKey(replicaARN(arn)); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("stored after refusal: %v", err)
	}
	// A snapshot claiming the right main key but carrying a block that does
	// not open as the key it describes is refused.
	bad := *snap
	bad.KCV = "000000"
	_ = mustKind(t, "apply with a wrong KCV", r.ApplyReplica("us-east-1", &bad), fault.Validation)
	// A peer may only send its own region's keys.
	_ = mustKind(t, "apply from another region", r.ApplyReplica("eu-west-1", snap), fault.AccessDenied)
	if err := r.ApplyReplica("us-east-1", snap); err != nil {
		t.Fatal(err)
	}
	if rk, err := r.GetKey(replicaARN(arn)); err != nil || rk.KCV != "08D7B4" {
		t.Fatalf("replica %+v %v", rk, err)
	}
}

// TestImportKeyReplicationRegions: ImportKey's ReplicationRegions member
// (ImportKeyInput in the model) is honoured like CreateKey's: an
// unconfigured region is refused before anything is stored, explicit
// regions are replicated (the replica opens to the same key), and without
// the member the site's default regions apply.
func TestImportKeyReplicationRegions(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	kek := must(p.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.K1, Class: keyspec.Symmetric,
		Algorithm: keyspec.AES256, Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, Exportable: true}))
	src := must(p.CreateKey(ops.CreateKeyInput{Attributes: macKey, Exportable: true}))
	exported := must(p.ExportKey(ops.ExportKeyInput{KeyIdentifier: src.ARN, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: kek.ARN}}))
	imp := func(regions []string) (*ops.Key, error) {
		return p.ImportKey(ops.ImportKeyInput{ReplicationRegions: regions,
			Tr31KeyBlock: &ops.ImportTr31KeyBlock{WrappingKeyIdentifier: kek.ARN, KeyBlock: exported.KeyMaterial}})
	}
	count := func() int {
		ks, _, err := p.ListKeys("", ops.Page{Max: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(ks)
	}
	before := count()
	for _, regions := range [][]string{{"us-east-2"}, {"us-east-1"}, {"us-west-2", "ap-south-1"}} {
		_, err := imp(regions)
		f := mustKind(t, "ImportKey to "+strings.Join(regions, ","), err, fault.Validation)
		if f.Subject != fault.SubjectReplicationRegions || !strings.Contains(f.Message, "not a replication peer") && !strings.Contains(f.Message, "own region") {
			t.Errorf("%v: subject %v message %q", regions, f.Subject, f.Message)
		}
	}
	if n := count(); n != before {
		t.Fatalf("refused imports stored %d keys", n-before)
	}
	// Explicit regions: a primary, replicated, the same key at the replica.
	k := must(imp([]string{"us-west-2"}))
	if k.Replication == nil || k.Replication.Role != ops.RolePrimary || k.Replication.UsingDefault ||
		k.Replication.Regions["us-west-2"].State != ops.ReplicationInProgress || len(k.Replication.Regions) != 1 {
		t.Fatalf("ImportKey replication = %+v", k.Replication)
	}
	if n := deliver(t, p, r, "us-west-2"); n != 1 {
		t.Fatalf("delivered %d, want the imported key only", n)
	}
	rk, err := r.GetKey(replicaARN(k.ARN))
	if err != nil || rk.KCV != src.KCV || rk.Replication == nil || rk.Replication.Role != ops.RoleReplica || rk.Origin != k.Origin {
		t.Fatalf("replica of the imported key: %+v %v (KCV want %s)", rk, err, src.KCV)
	}
	// Without the member: the site's defaults; an empty list: none.
	if _, err := p.EnableDefaultReplicationRegions([]string{"eu-west-1"}); err != nil {
		t.Fatal(err)
	}
	if d := must(imp(nil)); d.Replication == nil || !d.Replication.UsingDefault || d.Replication.Regions["eu-west-1"].State == "" {
		t.Fatalf("ImportKey without regions, defaults eu-west-1: %+v", d.Replication)
	}
	if e := must(imp([]string{})); e.Replication != nil {
		t.Fatalf("ImportKey with an empty region list: %+v", e.Replication)
	}
}

// synchronizedKeys creates n keys replicated to us-west-2 at p and records
// them delivered (SYNCHRONIZED), as the sender would after the peer's ack.
func synchronizedKeys(tb testing.TB, p *ops.Service, n int) {
	tb.Helper()
	for range n {
		k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}})
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.ReplicationDelivered(keyID(k.ARN), "us-west-2", 1); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestReplicationOutboxReadsPendingOnly: with many replicated keys of which
// a few are pending, an outbox pass reads the pending keys' records only
// (the outbox index), and a key leaves the index once delivered and joins
// it again on its next change.
func TestReplicationOutboxReadsPendingOnly(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	const many = 400
	synchronizedKeys(t, p, many)
	out, err := p.ReplicationOutbox()
	if err != nil || len(out) != 0 {
		t.Fatalf("outbox with every key synchronized: %v %v", out, err)
	}
	a := must(p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2", "eu-west-1"}}))
	b := must(p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}}))
	before := p.ReplicationOutboxReadsForTest()
	out, err = p.ReplicationOutbox()
	if err != nil {
		t.Fatal(err)
	}
	want := []ops.Outbound{{KeyID: keyID(a.ARN), Region: "eu-west-1"}, {KeyID: keyID(a.ARN), Region: "us-west-2"}, {KeyID: keyID(b.ARN), Region: "us-west-2"}}
	slices.SortFunc(want, func(x, y ops.Outbound) int { return strings.Compare(x.Region+x.KeyID, y.Region+y.KeyID) })
	if !slices.Equal(out, want) {
		t.Fatalf("outbox %v, want %v", out, want)
	}
	if reads := p.ReplicationOutboxReadsForTest() - before; reads != 2 {
		t.Fatalf("the outbox pass read %d records for 2 pending keys among %d replicated", reads, many+2)
	}
	// Delivered to us-west-2: b leaves the outbox, a stays (eu-west-1).
	if n := deliver(t, p, r, "us-west-2"); n != 2 {
		t.Fatalf("delivered %d", n)
	}
	before = p.ReplicationOutboxReadsForTest()
	out, _ = p.ReplicationOutbox()
	if !slices.Equal(out, []ops.Outbound{{KeyID: keyID(a.ARN), Region: "eu-west-1"}}) || p.ReplicationOutboxReadsForTest()-before != 1 {
		t.Fatalf("after delivery: outbox %v, %d reads", out, p.ReplicationOutboxReadsForTest()-before)
	}
	// A change of a synchronized key puts it back.
	if _, err := p.StopKeyUsage(b.ARN); err != nil {
		t.Fatal(err)
	}
	out, _ = p.ReplicationOutbox()
	if !slices.Contains(out, ops.Outbound{KeyID: keyID(b.ARN), Region: "us-west-2"}) || len(out) != 2 {
		t.Fatalf("after StopKeyUsage on a synchronized key: outbox %v", out)
	}
}

// BenchmarkReplicationOutbox is one outbox pass with one pending key among
// n synchronized ones: its cost must not grow with n.
func BenchmarkReplicationOutbox(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("synchronized=%d", n), func(b *testing.B) {
			pmk := make([]byte, 32)
			if _, err := rand.Read(pmk); err != nil {
				b.Fatal(err)
			}
			p := opstest.NewSite(b, "us-east-1", pmk)
			if err := p.SetReplication([]string{"us-west-2"}, nil); err != nil {
				b.Fatal(err)
			}
			synchronizedKeys(b, p, n)
			if _, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				out, err := p.ReplicationOutbox()
				if err != nil || len(out) != 1 {
					b.Fatalf("outbox %v %v", out, err)
				}
			}
		})
	}
}

// keyID is the key id of a key ARN (arn:...:key/<id>).
func keyID(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// TestReplicationOutboxIndexRebuilt: a store whose replication records were
// written before the outbox index existed gets the index at start
// (SetReplication), and nothing pending is lost.
func TestReplicationOutboxIndexRebuilt(t *testing.T) {
	t.Parallel()
	p, r, _ := sites(t)
	synchronizedKeys(t, p, 3)
	k := must(p.CreateKey(ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"us-west-2"}}))
	if err := p.DropReplicationIndexForTest(); err != nil {
		t.Fatal(err)
	}
	if out, _ := p.ReplicationOutbox(); len(out) != 0 {
		t.Fatalf("outbox without its index: %v", out)
	}
	if err := p.SetReplication([]string{"us-west-2", "eu-west-1"}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := p.ReplicationOutbox()
	if err != nil || !slices.Equal(out, []ops.Outbound{{KeyID: keyID(k.ARN), Region: "us-west-2"}}) {
		t.Fatalf("outbox after the rebuild: %v %v", out, err)
	}
	if n := deliver(t, p, r, "us-west-2"); n != 1 {
		t.Fatalf("delivered %d", n)
	}
}
