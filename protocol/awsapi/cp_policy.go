package awsapi

// Resource-based policies: PutResourcePolicy, GetResourcePolicy and
// DeleteResourcePolicy of the model. The semantics (storage, public-access
// check, cache) are ops/resource_policy.go; the policy language and its
// evaluation are package access.

import (
	"context"

	cp "payhsm/protocol/awsapi/cpshape"
)

func (s *Server) resourcePolicyOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"PutResourcePolicy": handler(func(_ context.Context, in *cp.PutResourcePolicyInput) (any, error) {
			arn, err := o.PutResourcePolicy(*in.ResourceArn, *in.Policy)
			if err != nil {
				return nil, err
			}
			return &cp.PutResourcePolicyOutput{ResourceArn: &arn, Policy: in.Policy}, nil
		}),
		"GetResourcePolicy": handler(func(_ context.Context, in *cp.GetResourcePolicyInput) (any, error) {
			arn, doc, err := o.GetResourcePolicy(*in.ResourceArn)
			if err != nil {
				return nil, err
			}
			return &cp.GetResourcePolicyOutput{ResourceArn: &arn, Policy: &doc}, nil
		}),
		"DeleteResourcePolicy": handler(func(_ context.Context, in *cp.DeleteResourcePolicyInput) (any, error) {
			return &cp.DeleteResourcePolicyOutput{}, o.DeleteResourcePolicy(*in.ResourceArn)
		}),
	}
}
