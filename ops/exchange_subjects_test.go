package ops_test

import (
	"crypto"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
)

// TestControlPlaneSubjects: the control plane's refusals say what they are
// about by fault.Subject (and, for key-separation rules, by Violation) and
// name no transport's member: each edge maps the subject on its own.
func TestControlPlaneSubjects(t *testing.T) {
	f := xNewExchange(t)
	svc := f.svc
	p, err := svc.GetParametersForImport(ops.MaterialKeyCryptogram, keyspec.RSA3072, true)
	if err != nil {
		t.Fatal(err)
	}
	days := 2
	nonExp, err := svc.CreateKey(ops.CreateKeyInput{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU)})
	if err != nil {
		t.Fatal(err)
	}
	good, err := svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.pekTDES2, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekTDES3}})
	if err != nil {
		t.Fatal(err)
	}
	tampered := good.KeyMaterial[:len(good.KeyMaterial)-1] + map[bool]string{true: "0", false: "1"}[strings.HasSuffix(good.KeyMaterial, "1")]
	exportTR31 := func(key string, h *ops.KeyBlockHeaders) error {
		_, err := svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: key, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES256, Headers: h}})
		return err
	}
	importTR31 := func(kek, block string) error {
		_, err := svc.ImportKey(ops.ImportKeyInput{Tr31KeyBlock: &ops.ImportTr31KeyBlock{WrappingKeyIdentifier: kek, KeyBlock: block}})
		return err
	}
	importCryptogram := func(c ops.ImportKeyCryptogram) error {
		_, err := svc.ImportKey(ops.ImportKeyInput{KeyCryptogram: &c})
		return err
	}
	for _, tc := range []struct {
		name      string
		err       error
		subject   fault.Subject
		violation string
	}{
		{"asymmetric key with a CMAC check value", func() error {
			_, err := svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.K3, Class: keyspec.AsymmetricPair,
				Algorithm: keyspec.ECCP256, Modes: keyspec.ModesOfUse{DeriveKey: true}}, DeriveKeyUsage: keyspec.K1, KCVAlgorithm: keyspec.KCVCMAC})
			return err
		}(), fault.SubjectKeyCheckValueAlgorithm, ""},
		{"deletion in 2 days", func() error { _, err := svc.DeleteKey(f.dekAES256, &days); return err }(), fault.SubjectDeletionPeriod, ""},
		{"bad page token", func() error { _, _, err := svc.ListKeys("", ops.Page{NextToken: "garbage"}); return err }(), fault.SubjectPageToken, ""},
		{"duplicate tags", svc.TagResource(f.dekAES256, []ops.Tag{{Key: "a"}, {Key: "a"}}), fault.SubjectTags, ""},
		{"import token for a TR-31 block", func() error {
			_, err := svc.GetParametersForImport(ops.MaterialTR31, keyspec.RSA2048, false)
			return err
		}(), fault.SubjectKeyMaterialType, ""},
		{"ECC import token", func() error {
			_, err := svc.GetParametersForImport(ops.MaterialTR34, keyspec.ECCP256, false)
			return err
		}(), fault.SubjectTokenKeyAlgorithm, ""},
		{"no key material", func() error { _, err := svc.ImportKey(ops.ImportKeyInput{}); return err }(), fault.SubjectKeyMaterial, ""},
		{"cryptogram of a public key", importCryptogram(ops.ImportKeyCryptogram{Attributes: xCaAttrs, ImportToken: p.Token, Cryptogram: []byte{1}}),
			fault.SubjectKeyAlgorithm, ""},
		{"cryptogram under an unknown token", importCryptogram(ops.ImportKeyCryptogram{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU),
			ImportToken: "import-token-aaaaaaaaaaaaaaaa", Cryptogram: []byte{1}}), fault.SubjectToken, ""},
		{"cryptogram that does not decrypt", importCryptogram(ops.ImportKeyCryptogram{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU),
			ImportToken: p.Token, Cryptogram: make([]byte, 384)}), fault.SubjectWrappedKey, ""},
		{"cryptogram with an unknown OAEP variant", importCryptogram(ops.ImportKeyCryptogram{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU),
			ImportToken: p.Token, Cryptogram: []byte{1}, WrappingSpec: 7}), fault.SubjectWrappingSpec, ""},
		{"TR-31 block under a data key", importTR31(f.dekAES128, good.KeyMaterial), fault.SubjectWrappingKey, fault.ViolationUsage},
		{"tampered TR-31 block", importTR31(f.kekTDES3, tampered), fault.SubjectWrappedKey, fault.ViolationIntegrity},
		{"version B block under an AES KEK", importTR31(f.kekAES128, good.KeyMaterial), fault.SubjectWrappedKey, fault.ViolationWrappingKey},
		{"export of a non-exportable key", exportTR31(nonExp.ARN, nil), fault.SubjectKey, ""},
		{"export under itself", exportTR31(f.kekAES256, nil), fault.SubjectWrappingKey, fault.ViolationWrappingKey},
		{"widened modes", exportTR31(f.mac, &ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{Encrypt: true}}), fault.SubjectHeaderModesOfUse, ""},
		{"bad exportability", exportTR31(f.dekAES128, &ops.KeyBlockHeaders{Exportability: "MAYBE"}), fault.SubjectHeaderExportability, ""},
		{"bad key version", exportTR31(f.dekAES128, &ops.KeyBlockHeaders{KeyVersion: "a"}), fault.SubjectHeaderKeyVersion, ""},
		{"service's optional block", exportTR31(f.dekAES128, &ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"HM": "21"}}), fault.SubjectHeaderOptionalBlocks, ""},
		{"check value method of another algorithm", func() error {
			_, err := svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES128, KCVAlgorithm: keyspec.KCVANSIX924, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES256}})
			return err
		}(), fault.SubjectKeyCheckValueAlgorithm, ""},
		{"short DUKPT key serial number", func() error {
			_, err := svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.bdk, DukptKSN: []byte{1, 2, 3}, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES256}})
			return err
		}(), fault.SubjectInitialKeySerialNumber, ""},
		{"no export material", func() error { _, err := svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES128}); return err }(), fault.SubjectKeyMaterial, ""},
		{"CSR with SHA-1", func() error {
			_, err := svc.GetCertificateSigningRequest(f.dekAES128, crypto.SHA1, ops.CertificateSubject{CommonName: "x"})
			return err
		}(), fault.SubjectSigningAlgorithm, ""},
		{"CSR without a common name", func() error {
			_, err := svc.GetCertificateSigningRequest(f.dekAES128, crypto.SHA256, ops.CertificateSubject{})
			return err
		}(), fault.SubjectCommonName, ""},
		{"CSR for a symmetric key", func() error {
			_, err := svc.GetCertificateSigningRequest(f.dekAES128, crypto.SHA256, ops.CertificateSubject{CommonName: "x"})
			return err
		}(), fault.SubjectKey, ""},
		{"certificate that is not one", func() error {
			_, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: []byte("not a cert")})
			return err
		}(), fault.SubjectCertificate, ""},
		{"certificate as a symmetric key", func() error {
			_, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU), Certificate: []byte{0x30}})
			return err
		}(), fault.SubjectKeyClass, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xWantSubject(t, tc.err, tc.subject)
			if v := fault.As(tc.err).Violation; v != tc.violation {
				t.Errorf("violation %q, want %q", v, tc.violation)
			}
		})
	}
}
