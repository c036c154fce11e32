package access

import "strings"

// Service is the IAM service prefix of every payhsm action.
const Service = "payment-cryptography"

// Action is one AWS Payment Cryptography operation as an IAM action. The set
// is closed (the operations of both planes' models), so a statement's
// Action list compiles to a bit set and matching an action is one AND.
type Action uint8

// operations are the operation names of the control plane
// (payment-cryptography-2021-09-14) and the data plane
// (payment-cryptography-data-2022-02-03) models, in that order. The index
// of a name is its Action.
var operations = [...]string{
	// control plane
	"AddKeyReplicationRegions", "AssociateMpaTeam", "CreateAlias", "CreateKey", "DeleteAlias", "DeleteKey",
	"DeleteResourcePolicy", "DisableDefaultKeyReplicationRegions", "DisassociateMpaTeam",
	"EnableDefaultKeyReplicationRegions", "ExportKey", "GetAlias", "GetCertificateSigningRequest",
	"GetDefaultKeyReplicationRegions", "GetKey", "GetMpaTeamAssociation", "GetParametersForExport",
	"GetParametersForImport", "GetPublicKeyCertificate", "GetResourcePolicy", "ImportKey", "ListAliases",
	"ListKeys", "ListTagsForResource", "PutResourcePolicy", "RemoveKeyReplicationRegions", "RestoreKey",
	"StartKeyUsage", "StopKeyUsage", "TagResource", "UntagResource", "UpdateAlias",
	// data plane
	"DecryptData", "EncryptData", "GenerateAs2805KekValidation", "GenerateAuthRequestCryptogram",
	"GenerateCardValidationData", "GenerateMac", "GenerateMacEmvPinChange", "GeneratePinData", "ReEncryptData",
	"TranslateKeyMaterial", "TranslatePinData", "VerifyAuthRequestCryptogram", "VerifyCardValidationData",
	"VerifyMac", "VerifyPinData",
}

// actionSet is a set of Actions.
type actionSet uint64

var _ = [64 - len(operations)]struct{}{} // every Action fits actionSet

const allActions = actionSet(1)<<len(operations) - 1

func (s actionSet) has(a Action) bool { return s&(1<<a) != 0 }

// ActionOf returns the Action of an operation name ("DecryptData"), exactly
// as the models spell it.
func ActionOf(op string) (Action, bool) {
	for i, n := range operations {
		if n == op {
			return Action(i), true
		}
	}
	return 0, false
}

// MustAction is ActionOf for the tables of the front ends, built at start.
func MustAction(op string) Action {
	a, ok := ActionOf(op)
	if !ok {
		panic("access: no operation " + op)
	}
	return a
}

// Operation is the operation name of a.
func (a Action) Operation() string {
	if int(a) < len(operations) {
		return operations[a]
	}
	return "?"
}

// String is the IAM action name, "payment-cryptography:DecryptData".
func (a Action) String() string { return Service + ":" + a.Operation() }

// Operations lists the operation names every Action names.
func Operations() []string { return append([]string(nil), operations[:]...) }

// matchActions compiles an IAM action pattern ("payment-cryptography:Get*",
// case-insensitive) into the set of Actions it matches. ok is false when the
// pattern names another service or, without wildcards, no operation.
func matchActions(pattern string) (actionSet, string) {
	if pattern == "*" {
		return allActions, ""
	}
	svc, op, found := strings.Cut(pattern, ":")
	if !found {
		return 0, "must be \"*\" or \"payment-cryptography:<Operation>\""
	}
	if !globFold(strings.ToLower(svc), Service) {
		return 0, "names service " + svc + "; payhsm serves only payment-cryptography actions"
	}
	lop := strings.ToLower(op)
	var set actionSet
	for i, n := range operations {
		if globFold(lop, strings.ToLower(n)) {
			set |= 1 << i
		}
	}
	if set == 0 && !strings.ContainsAny(op, "*?") {
		return 0, "no Payment Cryptography operation is called " + op
	}
	return set, ""
}
