package awsapi

import (
	"slices"
	"testing"

	"payhsm/fault"
	cp "payhsm/protocol/awsapi/cpshape"
)

// TestResourcePolicyErrorsInTheModel: every fault the resource-policy
// operations can raise (ops/resource_policy.go, and the authorization
// before them) is answered with an exception their model lists.
func TestResourcePolicyErrorsInTheModel(t *testing.T) {
	raised := map[string][]fault.Kind{
		"PutResourcePolicy":    {fault.Validation, fault.NotFound, fault.Conflict, fault.AccessDenied, fault.PublicPolicy, fault.Internal},
		"GetResourcePolicy":    {fault.Validation, fault.NotFound, fault.AccessDenied, fault.Internal},
		"DeleteResourcePolicy": {fault.Validation, fault.NotFound, fault.Conflict, fault.AccessDenied, fault.Internal},
	}
	for op, kinds := range raised {
		errs := cp.Operations[op].Errors
		for _, k := range kinds {
			name, _ := controlException(k)
			if !slices.Contains(errs, name) {
				t.Errorf("%s: %v is answered %s, which the model does not list (%v)", op, k, name, errs)
			}
		}
	}
	if name, status := controlException(fault.PublicPolicy); name != "PublicPolicyException" || status != 400 {
		t.Errorf("PublicPolicy: %s %d", name, status)
	}
}
