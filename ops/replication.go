package ops

// Multi-Region key replication (user guide, "Replicating keys"): a key
// created at this site (region) can be replicated to peer sites. The key at
// the site that created it is the Primary Region key (PRK), the
// authoritative source; its copies are Replica Region keys (RRK), read-only.
//
// This file holds the semantics and the durable state; the transport (the
// mutually authenticated channel between sites, the sender loop) is package
// replication, which drives it through ReplicationOutbox,
// ReplicationSnapshot, ReplicationDelivered, ReplicationAttemptFailed and
// ApplyReplica.
//
// State lives in the key store as service meta records (authenticated like
// every record):
//
//	repl/defaults       the site's default replication regions (JSON list)
//	repl/key/<id>       a key's replication record (replRecord, JSON)
//	repl/pending/<id>   present while some region of primary key id is
//	                    pending: the outbox's index, written in the same
//	                    store transaction as the record (storeRepl), so the
//	                    sender's scan costs O(pending keys), not O(replicated
//	                    keys)
//	repl/pending-index  marks that the index is complete (stores written
//	                    before it existed get it rebuilt once at start)
//
// A primary's record is also its outbox: every change of a replicated key
// bumps the record's generation and sets every region's Want to it, durably
// and BEFORE the change itself is stored, so a crash between the two costs a
// resend of an unchanged state, never a lost change. A region is pending
// while Want > Done; the sender sends the key's whole current state (a
// snapshot, idempotent at the peer) and sets Done to the Want it captured.
// The snapshot is taken under the same lock as the changes, so a snapshot
// for generation W holds every change up to W.
// A new key's record (generation 1) is written in the key's own store
// transaction instead (planCreate), so creating keys takes no lock: a
// snapshot sees both or neither, and concurrent creations share the
// engine's group commit. CreateKey reads the default regions from an
// in-memory copy (kept by Enable/DisableDefaultReplicationRegions, and on
// a shared store dropped when Follow reports another node's change).
//
// Key material crosses as the stored X9.143 key block under the profile main
// key the two sites share through the TR-34 main-key synchronization
// (ceremony sync): the block is never opened for sending. The receiving site
// refuses a snapshot whose profile main key check value is not its own, and
// opens the block and checks the key check value before it stores anything
// (see docs/design.md, "Multi-Region key replication").

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// Roles of a key in a Multi-Region replication (the AWS MultiRegionKeyType enum).
const (
	RolePrimary = "PRIMARY"
	RoleReplica = "REPLICA"
)

// Replication states of a key in one region (the AWS KeyReplicationState enum).
const (
	ReplicationInProgress       = "IN_PROGRESS"
	ReplicationDeleteInProgress = "DELETE_IN_PROGRESS"
	ReplicationFailed           = "FAILED"
	ReplicationSynchronized     = "SYNCHRONIZED"
)

const (
	metaReplDefaults   = "repl/defaults"
	metaReplKey        = "repl/key/"
	metaReplPending    = "repl/pending/"
	metaReplIndexBuilt = "repl/pending-index"
)

// KeyReplication is a Multi-Region key's replication, as GetKey reports it.
type KeyReplication struct {
	Role          string // RolePrimary or RoleReplica
	PrimaryRegion string
	// Regions is the state in each replica region (primary keys only).
	Regions      map[string]RegionReplication
	UsingDefault bool // the key took the site's default regions at creation
}

// RegionReplication is a key's replication state in one region.
type RegionReplication struct {
	State   string // one of the Replication* states
	Message string // why, for IN_PROGRESS after a failed attempt and FAILED
}

// replRecord is a key's replication record (repl/key/<id>).
type replRecord struct {
	Role         string                   `json:"role"`
	Primary      string                   `json:"primary"`
	UsingDefault bool                     `json:"usingDefault,omitempty"`
	Gen          uint64                   `json:"gen"`
	Regions      map[string]*regionRecord `json:"regions,omitempty"`
	// Removed marks a replica whose key was deleted at the primary's request.
	Removed bool `json:"removed,omitempty"`
}

type regionRecord struct {
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	Want    uint64 `json:"want"` // the generation this region must reach
	Done    uint64 `json:"done"` // the generation it acknowledged
	// Remove: the region is being removed; the peer deletes its replica.
	Remove bool `json:"remove,omitempty"`
}

func (r *regionRecord) pending() bool { return r.Remove || r.Want > r.Done }

// pending reports whether some region of a primary's record is pending.
func (r *replRecord) pending() bool {
	if r.Role != RolePrimary {
		return false
	}
	for _, st := range r.Regions {
		if st.pending() {
			return true
		}
	}
	return false
}

// replication is the service's replication state.
type replication struct {
	// mu serializes every change of a replicated key (and of the records)
	// with the sender's snapshots, and the changes of the default regions.
	// Creating a key does not take it: the new key's record is written in
	// the key's own store transaction (planCreate), so no snapshot can see
	// one without the other.
	mu sync.Mutex
	// peers are the regions this site may replicate to: set once at start
	// (SetReplication), before serving; read without mu afterwards.
	peers map[string]bool
	// defaults is the in-memory copy of the site's default replication
	// regions (repl/defaults), nil until loaded or after another process
	// may have changed them; CreateKey reads it instead of the store.
	// dmu orders the copy's fills against its invalidations (dgen).
	defaults atomic.Pointer[[]string]
	dmu      sync.Mutex
	dgen     uint64
	// following: Follow runs on a shared store, so a change of the
	// defaults made by another node invalidates the copy.
	following atomic.Bool
	wake      func() // nudges the sender; nil when replication is off
	// any is false while no replication record exists, so that describing
	// a key costs no extra read on a site that does not replicate.
	any atomic.Bool
	// outboxReads counts the records ReplicationOutbox read (tests check
	// that a pass reads the pending records only).
	outboxReads atomic.Int64
}

// SetReplication configures the peer sites (regions) this site may replicate
// to and the function that wakes the sender when the outbox changes. Called
// once at start, before serving.
func (s *Service) SetReplication(peers []string, wake func()) error {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	s.repl.peers = map[string]bool{}
	for _, p := range peers {
		if p == s.cfg.Region {
			return fmt.Errorf("ops: replication peer %s is this site's own region", p)
		}
		s.repl.peers[p] = true
	}
	s.repl.wake = wake
	names, err := s.store.MetaNames(metaReplKey)
	if err != nil {
		return fmt.Errorf("ops: replication records: %w", err)
	}
	s.repl.any.Store(len(names) > 0)
	return s.buildPendingIndex(names)
}

// buildPendingIndex writes the outbox index (repl/pending/<id>) of a store
// whose records were written before the index existed: one scan of the
// records, once; the marker then says the index is complete.
func (s *Service) buildPendingIndex(names []string) error {
	if _, err := s.store.GetMeta(metaReplIndexBuilt); err == nil {
		return nil
	} else if !errors.Is(err, keystore.ErrNotFound) {
		return fmt.Errorf("ops: replication outbox index: %w", err)
	}
	puts := map[string][]byte{metaReplIndexBuilt: []byte("1")}
	for _, n := range names {
		id := strings.TrimPrefix(n, metaReplKey)
		r, err := s.loadRepl(id)
		if err != nil {
			return fmt.Errorf("ops: replication record %s: %w", id, err)
		}
		if r != nil && r.pending() {
			puts[metaReplPending+id] = []byte("1")
		}
	}
	if err := s.store.PutMetas(puts, nil); err != nil {
		return fmt.Errorf("ops: replication outbox index: %w", err)
	}
	if len(puts) > 1 {
		s.log.Info("replication outbox index built", zap.Int("pendingKeys", len(puts)-1))
	}
	return nil
}

func (s *Service) wakeSender() {
	if s.repl.wake != nil {
		s.repl.wake()
	}
}

// --- records ---

func (s *Service) loadRepl(id string) (*replRecord, error) {
	if !s.repl.any.Load() {
		return nil, nil
	}
	b, err := s.store.GetMeta(metaReplKey + id)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr("read replication record", err, "")
	}
	var r replRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fault.Internalf("decode replication record of "+id, err)
	}
	if r.Regions == nil {
		r.Regions = map[string]*regionRecord{}
	}
	return &r, nil
}

// replMetas are the meta changes that store key id's replication record
// and its entry in the outbox index: present while a region is pending,
// absent otherwise.
func (s *Service) replMetas(id string, r *replRecord) (puts map[string][]byte, dels []string, _ error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, nil, fault.Internalf("encode replication record", err)
	}
	s.repl.any.Store(true)
	puts = map[string][]byte{metaReplKey + id: b}
	if r.pending() {
		puts[metaReplPending+id] = []byte("1")
	} else {
		dels = []string{metaReplPending + id}
	}
	return puts, dels, nil
}

// storeRepl writes key id's replication record and, in the same store
// transaction, its entry in the outbox index (replMetas).
func (s *Service) storeRepl(id string, r *replRecord) error {
	puts, dels, err := s.replMetas(id, r)
	if err != nil {
		return err
	}
	if err := s.store.PutMetas(puts, dels); err != nil {
		return storeErr("write replication record", err, "")
	}
	return nil
}

// replicationOf describes k's replication (nil: not a Multi-Region key).
func (s *Service) replicationOf(id string) *KeyReplication {
	r, err := s.loadRepl(id)
	if err != nil {
		s.log.Error("read replication record", zap.String("key", s.keyARN(id)), zap.Error(err))
		return nil
	}
	if r == nil || r.Removed || (r.Role == RolePrimary && len(r.Regions) == 0) {
		return nil
	}
	out := &KeyReplication{Role: r.Role, PrimaryRegion: r.Primary, UsingDefault: r.UsingDefault}
	if r.Role == RolePrimary {
		out.Regions = make(map[string]RegionReplication, len(r.Regions))
		for reg, st := range r.Regions {
			out.Regions[reg] = RegionReplication{State: st.State, Message: st.Message}
		}
	}
	return out
}

// --- regions ---

// checkRegions refuses regions that are not configured peers of this site
// (or are this site), and returns them sorted without duplicates.
func (s *Service) checkRegions(regions []string) ([]string, error) {
	out := make([]string, 0, len(regions))
	for _, r := range regions {
		switch {
		case r == s.cfg.Region:
			return nil, fault.About(fault.SubjectReplicationRegions, "region %s is this site's own region; a key cannot be replicated to it", r)
		case !s.repl.peers[r]:
			if len(s.repl.peers) == 0 {
				return nil, fault.About(fault.SubjectReplicationRegions, "region %s is not a replication peer: this site (%s) has no replication peers configured", r, s.cfg.Region)
			}
			return nil, fault.About(fault.SubjectReplicationRegions, "region %s is not a replication peer of this site (%s); configured peers: %s",
				r, s.cfg.Region, strings.Join(s.peerList(), ", "))
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// precheckRegions refuses, before any work is done, an import's explicit
// replication regions that are not configured peers of this site; the
// import stores its key through finishCreate, which checks them again and
// records the replication (planCreate), as CreateKey does.
func (s *Service) precheckRegions(regions []string) error {
	if len(regions) == 0 {
		return nil
	}
	_, err := s.checkRegions(regions)
	return err
}

func (s *Service) peerList() []string {
	out := make([]string, 0, len(s.repl.peers))
	for p := range s.repl.peers {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func (s *Service) defaults() ([]string, error) {
	b, err := s.store.GetMeta(metaReplDefaults)
	if errors.Is(err, keystore.ErrNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, storeErr("read default replication regions", err, "")
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fault.Internalf("decode default replication regions", err)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// storeDefaults writes the default regions (under repl.mu) and sets the
// in-memory copy to them; when the write fails the copy is dropped (the
// write may have happened).
func (s *Service) storeDefaults(regions []string) error {
	b, err := json.Marshal(regions)
	if err != nil {
		return fault.Internalf("encode default replication regions", err)
	}
	if err := s.store.PutMeta(metaReplDefaults, b); err != nil {
		s.dropDefaults()
		return storeErr("write default replication regions", err, "")
	}
	s.repl.dmu.Lock()
	s.repl.dgen++
	if s.defaultsCacheable() {
		cp := slices.Clone(regions)
		s.repl.defaults.Store(&cp)
	} else {
		s.repl.defaults.Store(nil)
	}
	s.repl.dmu.Unlock()
	return nil
}

// defaultsCacheable reports whether the in-memory copy of the default
// regions can stand for the store's: always on a store of one process; on
// a shared store only while Follow reports the other nodes' changes.
func (s *Service) defaultsCacheable() bool {
	return !s.store.Shared() || s.repl.following.Load()
}

// dropDefaults forgets the in-memory copy of the default regions (another
// process may have changed them).
func (s *Service) dropDefaults() {
	s.repl.dmu.Lock()
	s.repl.dgen++
	s.repl.defaults.Store(nil)
	s.repl.dmu.Unlock()
}

// defaultRegions returns the site's default replication regions from the
// in-memory copy, loading it from the store when there is none. The slice
// is shared: callers must not change it.
func (s *Service) defaultRegions() ([]string, error) {
	if p := s.repl.defaults.Load(); p != nil {
		return *p, nil
	}
	s.repl.dmu.Lock()
	gen := s.repl.dgen
	s.repl.dmu.Unlock()
	d, err := s.defaults()
	if err != nil {
		return nil, err
	}
	s.repl.dmu.Lock()
	if s.repl.dgen == gen && s.defaultsCacheable() {
		s.repl.defaults.Store(&d)
	}
	s.repl.dmu.Unlock()
	return d, nil
}

// GetDefaultReplicationRegions returns the site's default replication regions.
func (s *Service) GetDefaultReplicationRegions() ([]string, error) {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	return s.defaults()
}

// EnableDefaultReplicationRegions adds regions to the site's default
// replication regions (keys created afterwards replicate there) and returns
// them all. Existing keys are not affected.
func (s *Service) EnableDefaultReplicationRegions(regions []string) ([]string, error) {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	add, err := s.checkRegions(regions)
	if err != nil {
		return nil, err
	}
	cur, err := s.defaults()
	if err != nil {
		return nil, err
	}
	cur = append(cur, add...)
	slices.Sort(cur)
	cur = slices.Compact(cur)
	return cur, s.storeDefaults(cur)
}

// DisableDefaultReplicationRegions removes regions from the site's default
// replication regions and returns those left. Existing keys are not affected.
// A region that is no longer a configured peer can still be removed.
func (s *Service) DisableDefaultReplicationRegions(regions []string) ([]string, error) {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	cur, err := s.defaults()
	if err != nil {
		return nil, err
	}
	cur = slices.DeleteFunc(cur, func(r string) bool { return slices.Contains(regions, r) })
	return cur, s.storeDefaults(cur)
}

// --- changes of keys ---

// replicable refuses keys that cannot be replicated: asymmetric keys (user
// guide: "Asymmetric Payment Cryptography keys do not support Multi-Region
// key replication") and keys that are not active.
func (s *Service) replicable(k *keystore.Key) error {
	if !k.Attributes.Algorithm.IsSymmetric() {
		return fault.About(fault.SubjectKey, "key %s is an asymmetric key (%s); only symmetric keys support Multi-Region key replication",
			s.keyARN(k.ID), k.Attributes.Algorithm)
	}
	if k.State != StateCreateComplete {
		return fault.Conflictf("key %s is in state %s; replication regions can be added only to an active key", s.keyARN(k.ID), k.State)
	}
	return nil
}

func (s *Service) replicaRefusal(id string, r *replRecord) error {
	return fault.About(fault.SubjectKey, "key %s is a Replica Region key (RRK) of the Primary Region key in %s; a replica is read-only: make changes on the primary",
		s.keyARN(id), r.Primary)
}

// markAll bumps r's generation and sets every region to reach it.
func markAll(r *replRecord) {
	r.Gen++
	for _, st := range r.Regions {
		st.Want = r.Gen
		if st.State == ReplicationSynchronized {
			st.State, st.Message = ReplicationInProgress, ""
		}
	}
}

// beginChange is called before a control-plane change of key id is stored:
// it refuses changes to a replica, and for a primary records durably in its
// outbox that every region needs the new state. The caller calls the
// returned function once the change is stored (or failed).
func (s *Service) beginChange(id string) (func(), error) {
	if !s.repl.any.Load() {
		return func() {}, nil
	}
	s.repl.mu.Lock()
	r, err := s.loadRepl(id)
	if err != nil {
		s.repl.mu.Unlock()
		return nil, err
	}
	switch {
	case r == nil || r.Removed:
		s.repl.mu.Unlock()
		return func() {}, nil
	case r.Role == RoleReplica:
		s.repl.mu.Unlock()
		return nil, s.replicaRefusal(id, r)
	case len(r.Regions) == 0:
		s.repl.mu.Unlock()
		return func() {}, nil
	}
	markAll(r)
	if err := s.storeRepl(id, r); err != nil {
		s.repl.mu.Unlock()
		return nil, err
	}
	return func() {
		s.repl.mu.Unlock()
		s.wakeSender()
	}, nil
}

// planCreate decides the replication of a key about to be created: to
// explicit regions (the request's ReplicationRegions, when given) or else
// to the site's default regions (the in-memory copy: no store read). It
// returns the meta records (the key's replication record and its outbox
// index entry) that the caller stores in the key's own transaction, nil
// when the key is not replicated. No lock is held: the record and the key
// become visible together, so the sender never sees one without the other,
// and creations of different keys run concurrently (their writes share the
// engine's group commit).
func (s *Service) planCreate(rec *keystore.Key, explicit []string) (map[string][]byte, error) {
	var regions []string
	usingDefault := explicit == nil
	if explicit == nil {
		d, err := s.defaultRegions()
		if err != nil {
			return nil, err
		}
		regions = d
		if !rec.Attributes.Algorithm.IsSymmetric() {
			regions = nil // the defaults apply to the keys that can replicate
		}
	} else {
		var err error
		if regions, err = s.checkRegions(explicit); err != nil {
			return nil, err
		}
		if len(regions) > 0 && !rec.Attributes.Algorithm.IsSymmetric() {
			return nil, fault.About(fault.SubjectReplicationRegions, "asymmetric keys (%s) do not support Multi-Region key replication", rec.Attributes.Algorithm)
		}
	}
	if len(regions) == 0 {
		return nil, nil
	}
	r := &replRecord{Role: RolePrimary, Primary: s.cfg.Region, UsingDefault: usingDefault, Gen: 1, Regions: map[string]*regionRecord{}}
	for _, reg := range regions {
		r.Regions[reg] = &regionRecord{State: ReplicationInProgress, Want: 1}
	}
	puts, _, err := s.replMetas(rec.ID, r) // pending: no deletes
	return puts, err
}

// AddKeyReplicationRegions replicates a primary (or not yet replicated) key
// to more regions.
func (s *Service) AddKeyReplicationRegions(ident string, regions []string) (*Key, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	add, err := s.checkRegions(regions)
	if err != nil {
		return nil, err
	}
	r, err := s.loadRepl(k.ID)
	if err != nil {
		return nil, err
	}
	if r != nil && r.Role == RoleReplica && !r.Removed {
		return nil, fault.About(fault.SubjectKey, "key %s is a Replica Region key (RRK) of the Primary Region key in %s; a replica cannot be replicated to other regions",
			s.keyARN(k.ID), r.Primary)
	}
	if err := s.replicable(k); err != nil {
		return nil, err
	}
	if r == nil || r.Role != RolePrimary {
		r = &replRecord{Role: RolePrimary, Primary: s.cfg.Region, Regions: map[string]*regionRecord{}}
	}
	r.UsingDefault = false
	r.Gen++
	for _, reg := range add {
		st := r.Regions[reg]
		if st == nil {
			st = &regionRecord{}
			r.Regions[reg] = st
		}
		st.Remove, st.Want, st.State, st.Message = false, r.Gen, ReplicationInProgress, ""
	}
	if err := s.storeRepl(k.ID, r); err != nil {
		return nil, err
	}
	s.wakeSender()
	return s.describe(k), nil
}

// RemoveKeyReplicationRegions removes regions from a primary key's
// replication: their replicas are deleted (eventually: the region shows
// DELETE_IN_PROGRESS until the peer confirms).
func (s *Service) RemoveKeyReplicationRegions(ident string, regions []string) (*Key, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	r, err := s.loadRepl(k.ID)
	if err != nil {
		return nil, err
	}
	if r != nil && r.Role == RoleReplica && !r.Removed {
		return nil, s.replicaRefusal(k.ID, r)
	}
	for _, reg := range regions {
		if r == nil || r.Regions[reg] == nil || r.Regions[reg].Remove {
			return nil, fault.About(fault.SubjectReplicationRegions, "key %s is not replicated to region %s", s.keyARN(k.ID), reg)
		}
	}
	r.UsingDefault = false
	r.Gen++
	for _, reg := range regions {
		st := r.Regions[reg]
		st.Remove, st.Want, st.State, st.Message = true, r.Gen, ReplicationDeleteInProgress, ""
	}
	if err := s.storeRepl(k.ID, r); err != nil {
		return nil, err
	}
	s.wakeSender()
	return s.describe(k), nil
}

// --- the sender's side (package replication) ---

// Outbound is one pending delivery: key KeyID must reach region Region.
type Outbound struct {
	KeyID, Region string
}

// ReplicationOutbox lists every pending delivery (the sender calls it at
// start, when woken and every retry interval). It reads the outbox index and
// the records it names only: its cost is in the pending keys, not in all the
// replicated keys.
func (s *Service) ReplicationOutbox() ([]Outbound, error) {
	names, err := s.store.MetaNames(metaReplPending)
	if err != nil {
		return nil, storeErr("list the replication outbox", err, "")
	}
	var out []Outbound
	for _, n := range names {
		id := strings.TrimPrefix(n, metaReplPending)
		s.repl.outboxReads.Add(1)
		r, err := s.loadRepl(id)
		if err != nil {
			s.log.Error("read replication record", zap.String("record", n), zap.Error(err))
			continue
		}
		if r == nil || r.Role != RolePrimary {
			continue
		}
		for reg, st := range r.Regions {
			if st.pending() {
				out = append(out, Outbound{KeyID: id, Region: reg})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].KeyID < out[j].KeyID
	})
	return out, nil
}

// ReplicaSnapshot is the whole replicated state of a key, as it crosses to a
// replica site: metadata, tags and the key block as stored, under the
// profile main key both sites share (never clear key material).
type ReplicaSnapshot struct {
	KeyID         string `json:"keyId"`
	PrimaryRegion string `json:"primaryRegion"`
	Gen           uint64 `json:"gen"`
	// Delete asks the replica site to delete its replica.
	Delete bool `json:"delete,omitempty"`
	// MainKeyKCV is the check value of the profile main key the block is
	// wrapped under; the receiving site refuses a key under another.
	MainKeyKCV     string               `json:"mainKeyKcv,omitempty"`
	Attributes     keyspec.Attributes   `json:"attributes"`
	DeriveKeyUsage keyspec.KeyUsage     `json:"deriveKeyUsage,omitempty"`
	KCV            string               `json:"kcv,omitempty"`
	KCVAlgorithm   keyspec.KCVAlgorithm `json:"kcvAlgorithm,omitempty"`
	Exportable     bool                 `json:"exportable"`
	Enabled        bool                 `json:"enabled"`
	State          string               `json:"state,omitempty"`
	Origin         string               `json:"origin,omitempty"`
	Created        time.Time            `json:"created"`
	UsageStart     time.Time            `json:"usageStart"`
	UsageStop      time.Time            `json:"usageStop"`
	DeletePending  time.Time            `json:"deletePending"`
	KeyBlock       string               `json:"keyBlock,omitempty"`
	Tags           []Tag                `json:"tags,omitempty"`
}

// ReplicationSnapshot returns the state of key id that region must reach
// and the generation it stands for (to hand back to ReplicationDelivered).
// ok is false when nothing is pending for region.
func (s *Service) ReplicationSnapshot(id, region string) (_ *ReplicaSnapshot, gen uint64, ok bool, _ error) {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	r, err := s.loadRepl(id)
	if err != nil || r == nil || r.Role != RolePrimary {
		return nil, 0, false, err
	}
	st := r.Regions[region]
	if st == nil || !st.pending() {
		return nil, 0, false, nil
	}
	snap := &ReplicaSnapshot{KeyID: id, PrimaryRegion: s.cfg.Region, Gen: st.Want}
	k, err := s.store.GetKey(id)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		snap.Delete = true // deleted here (its waiting period ended): delete the replica
	case err != nil:
		return nil, 0, false, storeErr("read key", err, s.keyARN(id))
	case st.Remove:
		snap.Delete = true
	default:
		p, err := s.cust.Profile(k.Profile)
		if err != nil {
			return nil, 0, false, fault.Internalf("profile main key", err)
		}
		snap.MainKeyKCV = p.KCV()
		snap.Attributes, snap.DeriveKeyUsage, snap.KCV, snap.KCVAlgorithm = k.Attributes, k.DeriveKeyUsage, k.KCV, k.KCVAlgorithm
		snap.Exportable, snap.Enabled, snap.State, snap.Origin = k.Exportable, k.Enabled, k.State, k.Origin
		snap.Created, snap.UsageStart, snap.UsageStop, snap.DeletePending = k.Created, k.UsageStart, k.UsageStop, k.DeletePending
		snap.KeyBlock = k.KeyBlock
		tags, err := s.allTags(id)
		if err != nil {
			return nil, 0, false, err
		}
		snap.Tags = tags
	}
	return snap, st.Want, true, nil
}

func (s *Service) allTags(id string) ([]Tag, error) {
	var out []Tag
	next := ""
	for {
		ts, n, err := s.store.ListTags(id, next, 100)
		if err != nil {
			return nil, storeErr("list tags", err, s.keyARN(id))
		}
		for _, t := range ts {
			out = append(out, Tag{Key: t.Key, Value: t.Value})
		}
		if n == "" {
			return out, nil
		}
		next = n
	}
}

// ReplicationDelivered records that region acknowledged generation gen of
// key id: the region is SYNCHRONIZED (or, once a removal is confirmed, no
// longer listed).
func (s *Service) ReplicationDelivered(id, region string, gen uint64) error {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	r, err := s.loadRepl(id)
	if err != nil || r == nil {
		return err
	}
	st := r.Regions[region]
	if st == nil {
		return nil
	}
	if gen > st.Done {
		st.Done = gen
	}
	if st.Done >= st.Want {
		if st.Remove {
			delete(r.Regions, region)
		} else {
			st.State, st.Message = ReplicationSynchronized, ""
		}
	}
	return s.storeRepl(id, r)
}

// ReplicationAttemptFailed records why a delivery of key id to region did
// not succeed: permanent says the peer refused it (FAILED), otherwise the
// peer could not be reached and the region stays IN_PROGRESS (or
// DELETE_IN_PROGRESS) with the reason. The sender keeps retrying either way.
func (s *Service) ReplicationAttemptFailed(id, region, reason string, permanent bool) error {
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	r, err := s.loadRepl(id)
	if err != nil || r == nil {
		return err
	}
	st := r.Regions[region]
	if st == nil || !st.pending() {
		return nil
	}
	state := ReplicationInProgress
	switch {
	case st.Remove:
		state = ReplicationDeleteInProgress
	case permanent:
		state = ReplicationFailed
	}
	if st.State == state && st.Message == reason {
		return nil
	}
	st.State, st.Message = state, reason
	return s.storeRepl(id, r)
}

// --- the receiving side ---

// ApplyReplica stores (or deletes) the replica a primary site sent. from is
// the region of the peer that sent it, as its authenticated identity says.
// It is idempotent: a snapshot older than the one applied is acknowledged
// and ignored.
func (s *Service) ApplyReplica(from string, snap *ReplicaSnapshot) error {
	if snap.PrimaryRegion != from {
		return fault.AccessDeniedf("the peer of region %s sent a key of region %s", from, snap.PrimaryRegion)
	}
	if !keystore.ValidID(snap.KeyID) {
		return fault.Validationf("invalid key id")
	}
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	id := snap.KeyID
	r, err := s.loadRepl(id)
	if err != nil {
		return err
	}
	existing, err := s.store.GetKey(id)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return storeErr("read key", err, s.keyARN(id))
	}
	if existing != nil && (r == nil || r.Role != RoleReplica || r.Primary != from) {
		return fault.Conflictf("key %s exists at this site and is not a replica of region %s", s.keyARN(id), from)
	}
	if r != nil && r.Role == RoleReplica && r.Primary == from && r.Gen >= snap.Gen {
		return nil // already applied
	}
	if snap.Delete {
		s.cache.dropKey(id)
		if existing != nil {
			if err := s.store.PurgeKey(id); err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return storeErr("delete replica", err, s.keyARN(id))
			}
		}
		s.log.Info("replica deleted at the primary's request", zap.String("key", s.keyARN(id)), zap.String("primaryRegion", from))
		return s.storeRepl(id, &replRecord{Role: RoleReplica, Primary: from, Gen: snap.Gen, Removed: true})
	}
	rec, err := s.replicaRecord(snap)
	if err != nil {
		return err
	}
	prev := uint64(0)
	if r != nil && r.Role == RoleReplica && r.Primary == from {
		prev = r.Gen
	}
	// The record is a replica's before its key exists, so that no client
	// change can slip in between; its generation moves only once applied.
	if err := s.storeRepl(id, &replRecord{Role: RoleReplica, Primary: from, Gen: prev}); err != nil {
		return err
	}
	s.cache.dropKey(id)
	if existing == nil {
		if err := s.store.CreateKey(rec, storeTags(snap.Tags), ""); err != nil {
			return storeErr("store replica", err, s.keyARN(id))
		}
	} else {
		if _, err := s.store.UpdateKey(id, func(k *keystore.Key) error {
			rev := k.Revision
			*k = *rec
			k.Revision = rev
			return nil
		}); err != nil {
			return storeErr("update replica", err, s.keyARN(id))
		}
		if err := s.replaceTags(id, snap.Tags); err != nil {
			return err
		}
	}
	s.cache.dropKey(id)
	return s.storeRepl(id, &replRecord{Role: RoleReplica, Primary: from, Gen: snap.Gen})
}

// replicaRecord checks a snapshot's key material and makes the key record:
// the block must be under this site's profile main key (the one the sites
// share) and open to a key with the snapshot's check value.
func (s *Service) replicaRecord(snap *ReplicaSnapshot) (*keystore.Key, error) {
	p, err := s.cust.Profile(s.cfg.Profile)
	if err != nil {
		return nil, fault.Internalf("profile main key", err)
	}
	if snap.MainKeyKCV != p.KCV() {
		return nil, fault.Conflictf("the key is wrapped under a profile main key with check value %s; this site's profile %s main key is %s: the sites must share it (payhsm ceremony sync)",
			snap.MainKeyKCV, s.cfg.Profile, p.KCV())
	}
	if !snap.Attributes.Algorithm.IsSymmetric() {
		return nil, fault.Validationf("only symmetric keys are replicated")
	}
	rec := &keystore.Key{
		ID: snap.KeyID, Profile: s.cfg.Profile, Attributes: snap.Attributes, DeriveKeyUsage: snap.DeriveKeyUsage,
		KCV: snap.KCV, KCVAlgorithm: snap.KCVAlgorithm, Exportable: snap.Exportable, Enabled: snap.Enabled,
		State: snap.State, Origin: snap.Origin, Created: snap.Created, UsageStart: snap.UsageStart,
		UsageStop: snap.UsageStop, DeletePending: snap.DeletePending, KeyBlock: snap.KeyBlock,
	}
	_, key, err := s.loadMaterial(rec)
	if err != nil {
		return nil, fault.Validationf("the replicated key block does not open under this site's profile main key as the key it describes")
	}
	defer clear(key)
	kcv, err := symmetricKCV(rec.Attributes.Algorithm, rec.KCVAlgorithm, key)
	if err != nil || kcv != rec.KCV {
		return nil, fault.Validationf("the replicated key's check value does not match its key block")
	}
	return rec, nil
}

// replaceTags makes key id's tags exactly tags.
func (s *Service) replaceTags(id string, tags []Tag) error {
	cur, err := s.allTags(id)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, t := range tags {
		keep[t.Key] = true
	}
	var drop []string
	for _, t := range cur {
		if !keep[t.Key] {
			drop = append(drop, t.Key)
		}
	}
	if len(drop) > 0 {
		if err := s.store.UntagKey(id, drop); err != nil {
			return storeErr("untag replica", err, s.keyARN(id))
		}
	}
	if len(tags) > 0 {
		if err := s.store.TagKey(id, storeTags(tags), max(s.cfg.MaxTagsPerKey, len(tags))); err != nil {
			return storeErr("tag replica", err, s.keyARN(id))
		}
	}
	return nil
}

// KeyARN is the ARN of key id at this site.
func (s *Service) KeyARN(id string) string { return s.keyARN(id) }

// Region is this site's region.
func (s *Service) Region() string { return s.cfg.Region }
