package awsapi

// Multi-Region key replication: the five operations of the model
// (EnableDefaultKeyReplicationRegions, DisableDefaultKeyReplicationRegions,
// GetDefaultKeyReplicationRegions, AddKeyReplicationRegions,
// RemoveKeyReplicationRegions) and the replication members of Key and
// KeySummary. The semantics are ops/replication.go; the transport between
// sites is package replication, not this API.

import (
	"context"

	"payhsm/fault"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

// replicationMembers maps the faults of the replication operations.
var replicationMembers = members{fault.SubjectReplicationRegions: "ReplicationRegions", fault.SubjectKey: "KeyIdentifier"}

func (s *Server) replicationOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"EnableDefaultKeyReplicationRegions": handler(func(_ context.Context, in *cp.EnableDefaultKeyReplicationRegionsInput) (any, error) {
			rs, err := o.EnableDefaultReplicationRegions(in.ReplicationRegions)
			if err != nil {
				return nil, replicationMembers.name(err)
			}
			return &cp.EnableDefaultKeyReplicationRegionsOutput{EnabledReplicationRegions: regions(rs)}, nil
		}),
		"DisableDefaultKeyReplicationRegions": handler(func(_ context.Context, in *cp.DisableDefaultKeyReplicationRegionsInput) (any, error) {
			rs, err := o.DisableDefaultReplicationRegions(in.ReplicationRegions)
			if err != nil {
				return nil, replicationMembers.name(err)
			}
			return &cp.DisableDefaultKeyReplicationRegionsOutput{EnabledReplicationRegions: regions(rs)}, nil
		}),
		"GetDefaultKeyReplicationRegions": handler(func(_ context.Context, _ *cp.GetDefaultKeyReplicationRegionsInput) (any, error) {
			rs, err := o.GetDefaultReplicationRegions()
			if err != nil {
				return nil, err
			}
			return &cp.GetDefaultKeyReplicationRegionsOutput{EnabledReplicationRegions: regions(rs)}, nil
		}),
		"AddKeyReplicationRegions": handler(func(_ context.Context, in *cp.AddKeyReplicationRegionsInput) (any, error) {
			k, err := o.AddKeyReplicationRegions(*in.KeyIdentifier, in.ReplicationRegions)
			if err != nil {
				return nil, replicationMembers.name(err)
			}
			return &cp.AddKeyReplicationRegionsOutput{Key: key(k)}, nil
		}),
		"RemoveKeyReplicationRegions": handler(func(_ context.Context, in *cp.RemoveKeyReplicationRegionsInput) (any, error) {
			k, err := o.RemoveKeyReplicationRegions(*in.KeyIdentifier, in.ReplicationRegions)
			if err != nil {
				return nil, replicationMembers.name(err)
			}
			return &cp.RemoveKeyReplicationRegionsOutput{Key: key(k)}, nil
		}),
	}
}

// regions is a required Regions member: present (possibly empty).
func regions(rs []string) []string {
	if rs == nil {
		return []string{}
	}
	return rs
}

// replicationMembersOf sets the Multi-Region members of a Key from k.
func replicationMembersOf(out *cp.Key, k *ops.Key) {
	r := k.Replication
	if r == nil {
		return
	}
	out.MultiRegionKeyType = enum[cp.MultiRegionKeyType](r.Role)
	out.PrimaryRegion = opt(r.PrimaryRegion)
	if r.Role == ops.RolePrimary {
		out.UsingDefaultReplicationRegions = ptr(r.UsingDefault)
		out.ReplicationStatus = make(map[string]cp.ReplicationStatusType, len(r.Regions))
		for reg, st := range r.Regions {
			out.ReplicationStatus[reg] = cp.ReplicationStatusType{Status: enum[cp.KeyReplicationState](st.State), StatusMessage: opt(st.Message)}
		}
	}
}
