package ops_test

import (
	"bytes"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// ANSI X9 TR-31:2018 Annex A.7.2.2: a TDES 2-key KBPK and the version B
// block it protects, carrying a P0 TDES key with KCV 57C409 (the KCV as
// published with the example in openemv/tr31 test/tr31_decrypt_test.c).
const (
	hA722KBPK  = "DD7515F2BFC17F85CE48F3CA25CB21F6"
	hA722Block = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	hA722Key   = "3F419E1CB7079442AA37474C2EFBF8B8"
	hA722KCV   = "57C409"
)

// TestImportKeyBlockKnownAnswer imports the published A.7.2.2 block under
// its KBPK (stored, then carried as a key block) and checks the key comes
// back under the profile main key unchanged, then exports it again and opens
// the export with the published KBPK.
func TestImportKeyBlockKnownAnswer(t *testing.T) {
	svc := opstest.New(t)
	stored := opstest.Import(t, svc, xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), hA722KBPK)
	// The same KBPK as a host-carried block: exported under a stored AES KEK
	// and imported again (A8 then A6).
	aesKEK := xCreate(t, svc, xSym(keyspec.K1, keyspec.AES256, xMEDWU))
	out, _, err := svc.ExportKeyBlock(stored, aesKEK, "")
	if err != nil {
		t.Fatal(err)
	}
	kbpkBlock, _, err := svc.ImportKeyBlock("default", aesKEK, out)
	if err != nil {
		t.Fatal(err)
	}
	before := xKeyCount(t, svc)
	for name, kek := range map[string]string{"stored KEK": stored, "KEK as a key block": ops.BlockIdent("default", kbpkBlock)} {
		t.Run(name, func(t *testing.T) {
			blk, kcv, err := svc.ImportKeyBlock("default", kek, hA722Block)
			if err != nil {
				t.Fatal(err)
			}
			if kcv != hA722KCV {
				t.Errorf("KCV %s, published %s", kcv, hA722KCV)
			}
			w, err := svc.Working(ops.BlockIdent("default", blk), fault.SubjectKey, fault.SideNone)
			if err != nil {
				t.Fatal(err)
			}
			if a := w.Attributes(); a.Usage != keyspec.P0 || a.Algorithm != keyspec.TDES2Key || !a.Modes.Encrypt || a.Modes.Decrypt || !w.Record.Exportable {
				t.Errorf("attributes %+v exportable %v, want P0 TDES_2KEY encrypt-only exportable (header P0TE00E)", a, w.Record.Exportable)
			}
			if !bytes.Equal(w.Material, xUnhex(t, hA722Key)) {
				t.Error("the key under the profile main key differs from the published key")
			}
			exp, kcv2, err := svc.ExportKeyBlock(ops.BlockIdent("default", blk), kek, "")
			if err != nil {
				t.Fatal(err)
			}
			h, key, err := tr31.Unwrap(xUnhex(t, hA722KBPK), exp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, xUnhex(t, hA722Key)) || kcv2 != hA722KCV || exp[0] != 'B' || exp[5:12] != "P0TE00E" || h.ModeOfUse != 'E' {
				t.Errorf("export %s KCV %s, want the published key in a P0TE00E version B block", exp[:16], kcv2)
			}
		})
	}
	if after := xKeyCount(t, svc); after != before {
		t.Errorf("key count %d -> %d: host import and export must store nothing", before, after)
	}
}

// TestExportKeyBlockExportability checks that a requested exportability
// lands in the exported header and that the host-carried key round-trips
// under an AES KEK as a version D block.
func TestExportKeyBlockExportability(t *testing.T) {
	svc := opstest.New(t)
	kek, _, err := svc.GenerateKeyBlock("default", xSym(keyspec.K0, keyspec.AES256, xMEDWU), false)
	if err != nil {
		t.Fatal(err)
	}
	kekID := ops.BlockIdent("default", kek)
	key, kcv, err := svc.GenerateKeyBlock("default", xSym(keyspec.D0, keyspec.AES128, xMEDWU), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		x    keyspec.Exportability
		want byte
	}{{"", 'E'}, {keyspec.NonExportable, 'N'}, {keyspec.Sensitive, 'S'}} {
		exp, kcv2, err := svc.ExportKeyBlock(ops.BlockIdent("default", key), kekID, tc.x)
		if err != nil {
			t.Fatal(err)
		}
		if exp[0] != 'D' || exp[11] != tc.want || kcv2 != kcv {
			t.Errorf("exportability %q: header %.16s KCV %s, want version D, exportability %c, KCV %s", tc.x, exp, kcv2, tc.want, kcv)
		}
		back, kcv3, err := svc.ImportKeyBlock("default", kekID, exp)
		if tc.want == 'N' {
			// A block marked non-exportable still imports: it only may not leave again.
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := svc.ExportKeyBlock(ops.BlockIdent("default", back), kekID, ""); fault.As(err).Violation != fault.ViolationExportability {
				t.Errorf("re-export of a non-exportable import: %v", err)
			}
			continue
		}
		if err != nil || kcv3 != kcv {
			t.Errorf("re-import: KCV %s, %v", kcv3, err)
		}
	}
}

// TestGenerateKeyBlockExport: A0 mode 1 returns one fresh key under the
// profile main key and under the KEK (opened here with the published
// A.7.2.2 KBPK), and refuses what ExportKeyBlock refuses.
func TestGenerateKeyBlockExport(t *testing.T) {
	svc := opstest.New(t)
	kek := opstest.Import(t, svc, xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), hA722KBPK)
	a := xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU)
	blk, kekBlk, kcv, err := svc.GenerateKeyBlockExport("default", a, true, kek, keyspec.Sensitive)
	if err != nil {
		t.Fatal(err)
	}
	w, err := svc.Working(ops.BlockIdent("default", blk), fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	h, key, err := tr31.Unwrap(xUnhex(t, hA722KBPK), kekBlk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, w.Material) || kcv != w.KCV() || h.Exportability != 'S' || h.KeyUsage != "P0" || !w.Record.Exportable {
		t.Errorf("the two blocks differ: KCV %s/%s, exported header %+v", kcv, w.KCV(), h)
	}
	if _, _, _, err := svc.GenerateKeyBlockExport("default", a, false, kek, ""); fault.As(err).Violation != fault.ViolationExportability {
		t.Errorf("non-exportable: %v", err)
	}
	if _, _, _, err := svc.GenerateKeyBlockExport("default", xSym(keyspec.D0, keyspec.AES128, xMEDWU), true, kek, ""); fault.As(err).Violation != fault.ViolationWrappingKey {
		t.Errorf("AES-128 under TDES 2-key: %v", err)
	}
	if _, _, _, err := svc.GenerateKeyBlockExport("default", xSym(keyspec.P0, keyspec.AES128, keyspec.ModesOfUse{Sign: true}), true, kek, ""); fault.KindOf(err) != fault.Validation {
		t.Errorf("invalid attributes: %v", err)
	}
}

// TestHostKeyBlockRefused checks every refusal names the rule it broke
// (the host edge turns the rule into payShield's code).
func TestHostKeyBlockRefused(t *testing.T) {
	svc := opstest.New(t)
	kbpk := opstest.Import(t, svc, xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), hA722KBPK)
	gen := func(a keyspec.Attributes, exportable bool) string {
		t.Helper()
		b, _, err := svc.GenerateKeyBlock("default", a, exportable)
		if err != nil {
			t.Fatal(err)
		}
		return ops.BlockIdent("default", b)
	}
	aesKEK := gen(xSym(keyspec.K0, keyspec.AES128, xMEDWU), false)
	wrapOnly := gen(xSym(keyspec.K0, keyspec.AES256, keyspec.ModesOfUse{Encrypt: true, Wrap: true}), false)
	unwrapOnly := gen(xSym(keyspec.K0, keyspec.AES256, keyspec.ModesOfUse{Decrypt: true, Unwrap: true}), false)
	notKEK := gen(xSym(keyspec.D0, keyspec.AES256, xMEDWU), true)
	aes256 := gen(xSym(keyspec.D0, keyspec.AES256, xMEDWU), true)
	nonExp := gen(xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU), false)
	tampered := hA722Block[:len(hA722Block)-1] + "0"
	// A block whose KP optional block names another KBPK.
	wrongKP, err := tr31.Wrap(xUnhex(t, hA722KBPK), tr31.Header{Version: 'B', KeyUsage: "P0", Algorithm: 'T', ModeOfUse: 'E',
		Exportability: 'E', Blocks: []tr31.OptionalBlock{{ID: "KP", Data: "00ABCDEF"}}}, xUnhex(t, hA722Key))
	if err != nil {
		t.Fatal(err)
	}
	// A block marked for storage only (X9.143:2021 table 1, key context 1).
	storageOnly, err := tr31.Wrap(xUnhex(t, hA722KBPK), tr31.Header{Version: 'B', KeyUsage: "P0", Algorithm: 'T', ModeOfUse: 'E',
		Exportability: 'E', KeyContext: '1'}, xUnhex(t, hA722Key))
	if err != nil {
		t.Fatal(err)
	}
	// A version D block offered to a TDES KBPK.
	versionD, _, err := svc.ExportKeyBlock(gen(xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU), true), aesKEK, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		run       func() error
		violation string
		subject   fault.Subject // what the fault is about (no transport's member)
		kind      fault.Kind
	}{
		{"import: tampered block", func() error { _, _, err := svc.ImportKeyBlock("default", kbpk, tampered); return err }, fault.ViolationIntegrity, fault.SubjectWrappedKey, fault.Validation},
		{"import: KP names another KBPK", func() error { _, _, err := svc.ImportKeyBlock("default", kbpk, wrongKP); return err }, fault.ViolationWrappingKey, fault.SubjectWrappedKey, fault.Validation},
		{"import: version D under TDES", func() error { _, _, err := svc.ImportKeyBlock("default", kbpk, versionD); return err }, fault.ViolationWrappingKey, fault.SubjectWrappedKey, fault.Validation},
		{"import: storage-only block", func() error { _, _, err := svc.ImportKeyBlock("default", kbpk, storageOnly); return err }, "", fault.SubjectWrappedKey, fault.Validation},
		{"import: KEK is not K0/K1", func() error { _, _, err := svc.ImportKeyBlock("default", notKEK, hA722Block); return err }, fault.ViolationUsage, fault.SubjectWrappingKey, fault.Validation},
		{"import: KEK cannot unwrap", func() error { _, _, err := svc.ImportKeyBlock("default", wrapOnly, versionD); return err }, fault.ViolationModes, fault.SubjectWrappingKey, fault.Validation},
		{"import: unknown profile", func() error { _, _, err := svc.ImportKeyBlock("nope", kbpk, hA722Block); return err }, "", fault.SubjectNone, fault.NotFound},
		{"import: unknown KEK", func() error { _, _, err := svc.ImportKeyBlock("default", "alias/none", hA722Block); return err }, "", fault.SubjectNone, fault.NotFound},
		{"export: non-exportable key", func() error { _, _, err := svc.ExportKeyBlock(nonExp, kbpk, ""); return err }, fault.ViolationExportability, fault.SubjectKey, fault.Validation},
		{"export: KEK weaker than key", func() error { _, _, err := svc.ExportKeyBlock(aes256, kbpk, ""); return err }, fault.ViolationWrappingKey, fault.SubjectNone, fault.Validation},
		{"export: KEK is not K0/K1", func() error { _, _, err := svc.ExportKeyBlock(aes256, notKEK, ""); return err }, fault.ViolationUsage, fault.SubjectWrappingKey, fault.Validation},
		{"export: KEK cannot wrap", func() error { _, _, err := svc.ExportKeyBlock(aes256, unwrapOnly, ""); return err }, fault.ViolationModes, fault.SubjectWrappingKey, fault.Validation},
		{"export: key under itself", func() error { _, _, err := svc.ExportKeyBlock(kbpk, kbpk, ""); return err }, fault.ViolationWrappingKey, fault.SubjectWrappingKey, fault.Validation},
		{"export: bad exportability", func() error { _, _, err := svc.ExportKeyBlock(aes256, wrapOnly, "X"); return err }, "", fault.SubjectHeaderExportability, fault.Validation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			xWantKind(t, err, tc.kind)
			if v := fault.As(err).Violation; v != tc.violation {
				t.Errorf("violation %q, want %q (%v)", v, tc.violation, err)
			}
			if f := fault.As(err); f.Subject != tc.subject {
				t.Errorf("subject %d, want subject %d (%v)", f.Subject, tc.subject, err)
			}
		})
	}
}

// BenchmarkImportKeyBlock measures A6's work: open the A.7.2.2 block under a
// cached KEK and wrap the key under the profile main key (both in memory).
func BenchmarkImportKeyBlock(b *testing.B) {
	svc := opstest.New(b)
	kek := opstest.Import(b, svc, xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), hA722KBPK)
	for b.Loop() {
		if _, _, err := svc.ImportKeyBlock("default", kek, hA722Block); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExportKeyBlock measures A8's work: a cached key under a cached KEK.
func BenchmarkExportKeyBlock(b *testing.B) {
	svc := opstest.New(b)
	kek := opstest.Import(b, svc, xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), hA722KBPK)
	key, _, err := svc.ImportKeyBlock("default", kek, hA722Block)
	if err != nil {
		b.Fatal(err)
	}
	id := ops.BlockIdent("default", key)
	for b.Loop() {
		if _, _, err := svc.ExportKeyBlock(id, kek, ""); err != nil {
			b.Fatal(err)
		}
	}
}
