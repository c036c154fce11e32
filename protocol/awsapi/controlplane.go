package awsapi

import (
	"context"
	"time"

	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

// handler adapts a typed control-plane handler to an operation.
func handler[I any, PI interface {
	*I
	validator
}](f func(ctx context.Context, in *I) (any, error)) operation {
	return operation{
		newInput: func() validator { return PI(new(I)) },
		call:     func(ctx context.Context, in any) (any, error) { return f(ctx, in.(*I)) },
	}
}

func (s *Server) controlOperations() map[string]operation {
	ops := s.lifecycleOperations()
	for name, op := range s.exchangeOperations() {
		ops[name] = op
	}
	for name, op := range s.replicationOperations() {
		ops[name] = op
	}
	for name, op := range s.mpaOperations() {
		ops[name] = op
	}
	for name, op := range s.resourcePolicyOperations() {
		ops[name] = op
	}
	return ops
}

func (s *Server) lifecycleOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"CreateKey": handler(func(ctx context.Context, in *cp.CreateKeyInput) (any, error) {
			k, err := o.CreateKey(ops.CreateKeyInput{
				Attributes: attributes(in.KeyAttributes), DeriveKeyUsage: keyspec.KeyUsage(str(in.DeriveKeyUsage)),
				KCVAlgorithm: keyspec.KCVAlgorithm(str(in.KeyCheckValueAlgorithm)), Exportable: *in.Exportable,
				Enabled: in.Enabled, Tags: tags(in.Tags), ReplicationRegions: in.ReplicationRegions,
				AuditOutbox: outboxFor(ctx, in),
			})
			if err != nil {
				return nil, createKeyMembers.name(err)
			}
			return &cp.CreateKeyOutput{Key: key(k)}, nil
		}),
		"GetKey": handler(func(_ context.Context, in *cp.GetKeyInput) (any, error) {
			k, err := o.GetKey(*in.KeyIdentifier)
			if err != nil {
				return nil, err
			}
			return &cp.GetKeyOutput{Key: key(k)}, nil
		}),
		"ListKeys": handler(func(_ context.Context, in *cp.ListKeysInput) (any, error) {
			ks, next, err := o.ListKeys(str(in.KeyState), page(in.NextToken, in.MaxResults))
			if err != nil {
				return nil, listMembers.name(err)
			}
			out := &cp.ListKeysOutput{Keys: make([]cp.KeySummary, len(ks)), NextToken: opt(next)}
			for i, k := range ks {
				full := key(k)
				out.Keys[i] = cp.KeySummary{KeyArn: full.KeyArn, KeyState: full.KeyState, KeyAttributes: full.KeyAttributes,
					KeyCheckValue: full.KeyCheckValue, Exportable: full.Exportable, Enabled: full.Enabled,
					MultiRegionKeyType: full.MultiRegionKeyType, PrimaryRegion: full.PrimaryRegion}
			}
			return out, nil
		}),
		"DeleteKey": handler(func(_ context.Context, in *cp.DeleteKeyInput) (any, error) {
			var days *int
			if in.DeleteKeyInDays != nil {
				d := int(*in.DeleteKeyInDays)
				days = &d
			}
			k, err := o.DeleteKey(*in.KeyIdentifier, days)
			if err != nil {
				return nil, deleteKeyMembers.name(err)
			}
			return &cp.DeleteKeyOutput{Key: key(k)}, nil
		}),
		"RestoreKey": handler(func(_ context.Context, in *cp.RestoreKeyInput) (any, error) {
			k, err := o.RestoreKey(*in.KeyIdentifier)
			if err != nil {
				return nil, err
			}
			return &cp.RestoreKeyOutput{Key: key(k)}, nil
		}),
		"StartKeyUsage": handler(func(_ context.Context, in *cp.StartKeyUsageInput) (any, error) {
			k, err := o.StartKeyUsage(*in.KeyIdentifier)
			if err != nil {
				return nil, err
			}
			return &cp.StartKeyUsageOutput{Key: key(k)}, nil
		}),
		"StopKeyUsage": handler(func(_ context.Context, in *cp.StopKeyUsageInput) (any, error) {
			k, err := o.StopKeyUsage(*in.KeyIdentifier)
			if err != nil {
				return nil, err
			}
			return &cp.StopKeyUsageOutput{Key: key(k)}, nil
		}),
		"CreateAlias": handler(func(_ context.Context, in *cp.CreateAliasInput) (any, error) {
			a, err := o.CreateAlias(*in.AliasName, str(in.KeyArn))
			if err != nil {
				return nil, err
			}
			return &cp.CreateAliasOutput{Alias: alias(a)}, nil
		}),
		"GetAlias": handler(func(_ context.Context, in *cp.GetAliasInput) (any, error) {
			a, err := o.GetAlias(*in.AliasName)
			if err != nil {
				return nil, err
			}
			return &cp.GetAliasOutput{Alias: alias(a)}, nil
		}),
		"UpdateAlias": handler(func(_ context.Context, in *cp.UpdateAliasInput) (any, error) {
			a, err := o.UpdateAlias(*in.AliasName, str(in.KeyArn))
			if err != nil {
				return nil, err
			}
			return &cp.UpdateAliasOutput{Alias: alias(a)}, nil
		}),
		"DeleteAlias": handler(func(_ context.Context, in *cp.DeleteAliasInput) (any, error) {
			return &cp.DeleteAliasOutput{}, o.DeleteAlias(*in.AliasName)
		}),
		"ListAliases": handler(func(_ context.Context, in *cp.ListAliasesInput) (any, error) {
			as, next, err := o.ListAliases(str(in.KeyArn), page(in.NextToken, in.MaxResults))
			if err != nil {
				return nil, listMembers.name(err)
			}
			out := &cp.ListAliasesOutput{Aliases: make([]cp.Alias, len(as)), NextToken: opt(next)}
			for i, a := range as {
				out.Aliases[i] = *alias(a)
			}
			return out, nil
		}),
		"TagResource": handler(func(_ context.Context, in *cp.TagResourceInput) (any, error) {
			return &cp.TagResourceOutput{}, tagMembers.name(o.TagResource(*in.ResourceArn, tags(in.Tags)))
		}),
		"UntagResource": handler(func(_ context.Context, in *cp.UntagResourceInput) (any, error) {
			return &cp.UntagResourceOutput{}, o.UntagResource(*in.ResourceArn, in.TagKeys)
		}),
		"ListTagsForResource": handler(func(_ context.Context, in *cp.ListTagsForResourceInput) (any, error) {
			ts, next, err := o.ListTags(*in.ResourceArn, page(in.NextToken, in.MaxResults))
			if err != nil {
				return nil, listMembers.name(err)
			}
			out := &cp.ListTagsForResourceOutput{Tags: make([]cp.Tag, len(ts)), NextToken: opt(next)}
			for i, t := range ts {
				out.Tags[i] = cp.Tag{Key: opt(t.Key), Value: opt(t.Value)}
			}
			return out, nil
		}),
		"GetPublicKeyCertificate": handler(func(_ context.Context, in *cp.GetPublicKeyCertificateInput) (any, error) {
			c, err := o.GetPublicKeyCertificate(*in.KeyIdentifier)
			if err != nil {
				return nil, err
			}
			return &cp.GetPublicKeyCertificateOutput{KeyCertificate: pemBase64("CERTIFICATE", c.Certificate),
				KeyCertificateChain: pemBase64("CERTIFICATE", c.Chain)}, nil
		}),
		"GetParametersForImport": handler(func(_ context.Context, in *cp.GetParametersForImportInput) (any, error) {
			reuse := in.ReuseLastGeneratedToken != nil && *in.ReuseLastGeneratedToken
			p, err := o.GetParametersForImport(keyMaterialTypes[cp.KeyMaterialType(str(in.KeyMaterialType))], keyspec.Algorithm(str(in.WrappingKeyAlgorithm)), reuse)
			if err != nil {
				return nil, importParamMembers.name(err)
			}
			alg := cp.KeyAlgorithm(p.Algorithm)
			return &cp.GetParametersForImportOutput{
				WrappingKeyCertificate:      pemBase64("CERTIFICATE", p.Certificate),
				WrappingKeyCertificateChain: pemBase64("CERTIFICATE", p.CertificateChain),
				WrappingKeyAlgorithm:        &alg, ImportToken: opt(p.Token), ParametersValidUntilTimestamp: ts(p.ValidUntil),
			}, nil
		}),
		"ImportKey": handler(func(ctx context.Context, in *cp.ImportKeyInput) (any, error) {
			material, out, err := importKey(o, in, ops.CallerFrom(ctx))
			if err != nil {
				return nil, importMembers[material].name(err)
			}
			return out, nil
		}),
	}
}

// --- shape mapping ---

func str[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func enum[T ~string](s string) *T {
	if s == "" {
		return nil
	}
	v := T(s)
	return &v
}

func ts(t time.Time) *cp.Timestamp {
	if t.IsZero() {
		return nil
	}
	return &cp.Timestamp{Time: t}
}

func boolv(p *bool) bool { return p != nil && *p }

func page(next *string, max *int32) ops.Page {
	p := ops.Page{NextToken: str(next)}
	if max != nil {
		p.Max = int(*max)
	}
	return p
}

func attributes(a *cp.KeyAttributes) keyspec.Attributes {
	out := keyspec.Attributes{Usage: keyspec.KeyUsage(str(a.KeyUsage)), Class: keyspec.Class(str(a.KeyClass)), Algorithm: keyspec.Algorithm(str(a.KeyAlgorithm))}
	if m := a.KeyModesOfUse; m != nil {
		out.Modes = keyspec.ModesOfUse{Encrypt: boolv(m.Encrypt), Decrypt: boolv(m.Decrypt), Wrap: boolv(m.Wrap), Unwrap: boolv(m.Unwrap),
			Generate: boolv(m.Generate), Sign: boolv(m.Sign), Verify: boolv(m.Verify), DeriveKey: boolv(m.DeriveKey), NoRestrictions: boolv(m.NoRestrictions)}
	}
	return out
}

func tags(in []cp.Tag) []ops.Tag {
	out := make([]ops.Tag, len(in))
	for i, t := range in {
		out[i] = ops.Tag{Key: str(t.Key), Value: str(t.Value)}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func key(k *ops.Key) *cp.Key {
	m := k.Attributes.Modes
	out := &cp.Key{
		KeyArn: opt(k.ARN),
		KeyAttributes: &cp.KeyAttributes{
			KeyUsage: enum[cp.KeyUsage](string(k.Attributes.Usage)), KeyClass: enum[cp.KeyClass](string(k.Attributes.Class)),
			KeyAlgorithm: enum[cp.KeyAlgorithm](string(k.Attributes.Algorithm)),
			KeyModesOfUse: &cp.KeyModesOfUse{Encrypt: ptr(m.Encrypt), Decrypt: ptr(m.Decrypt), Wrap: ptr(m.Wrap), Unwrap: ptr(m.Unwrap),
				Generate: ptr(m.Generate), Sign: ptr(m.Sign), Verify: ptr(m.Verify), DeriveKey: ptr(m.DeriveKey), NoRestrictions: ptr(m.NoRestrictions)},
		},
		KeyCheckValue:          opt(k.KCV),
		KeyCheckValueAlgorithm: enum[cp.KeyCheckValueAlgorithm](string(k.KCVAlgorithm)),
		Enabled:                ptr(k.Enabled),
		Exportable:             ptr(k.Exportable),
		KeyState:               enum[cp.KeyState](k.State),
		KeyOrigin:              enum[cp.KeyOrigin](k.Origin),
		CreateTimestamp:        ts(k.Created),
		UsageStartTimestamp:    ts(k.UsageStart),
		UsageStopTimestamp:     ts(k.UsageStop),
		DeletePendingTimestamp: ts(k.DeletePending),
		DeleteTimestamp:        ts(k.Deleted),
		DeriveKeyUsage:         enum[cp.DeriveKeyUsage](string(k.DeriveKeyUsage)),
	}
	replicationMembersOf(out, k)
	out.MpaStatus = mpaStatus(k.Mpa)
	return out
}

func alias(a *ops.Alias) *cp.Alias {
	return &cp.Alias{AliasName: opt(a.Name), KeyArn: opt(a.KeyARN)}
}
