package hostcmd

import (
	"testing"

	"payhsm/fault"
)

// TestKeyFault: a key command's fault about the key or the ZMK itself that
// breaks no key-separation rule answers 29 (errorCode maps the subject);
// every other fault keeps the code of its rule or subject.
func TestKeyFault(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"key pair exported under a ZMK", fault.About(fault.SubjectKey, "only symmetric keys are exported"), codeKeyFunction},
		{"ZMK of the wrong algorithm", fault.About(fault.SubjectWrappingKey, "cannot protect a TR-31 key block"), codeKeyFunction},
		{"non-exportable key", fault.KeyRule(fault.ViolationExportability, "not exportable"), codeExportField},
		{"ZMK of the wrong usage", func() error {
			f := fault.KeyRule(fault.ViolationUsage, "needs a K0 or K1 key")
			f.Subject = fault.SubjectWrappingKey
			return f
		}(), codeBadUsage},
		{"tampered block", func() error {
			f := fault.About(fault.SubjectWrappedKey, "does not verify")
			f.Violation = fault.ViolationIntegrity
			return f
		}(), codeBlockAuth},
		{"bad header change", fault.About(fault.SubjectHeaderExportability, "must be E, N or S"), codeInvalidInput},
		{"unknown key", fault.NotFoundf("alias/none", "not found"), codeNotStored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorCode(tc.err); got != tc.want {
				t.Errorf("code %s, want %s", got, tc.want)
			}
		})
	}
}
