package ops_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"strings"
	"testing"

	"payhsm/hsm/cardverify"
	"payhsm/hsm/cmac"
	"payhsm/hsm/emv"
	"payhsm/hsm/mac"
	"payhsm/hsm/pinblock"
	"payhsm/hsm/pinverify"
	"payhsm/hsm/tdes"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// BenchmarkPrimitives runs each data-plane primitive twice in one run:
// through the operations layer with its keys cached (ops/…) and as its
// crypto ceiling (ceiling/…): the same cryptography on the Go standard
// library and payhsm's hsm packages alone, keys scheduled once, no lookup,
// checks or result building. The ops side calls what the front ends call:
// for MACs and data encryption, AppendMac and AppendEncryptData into a
// buffer the caller keeps (as the host port and the HTTP data plane do).
// The ratio of the two is the operations layer's overhead (issue #20 goal
// 4: at most 1.5). Besides ns/op it reports the
// process's CPU time per operation (cpu-ns/op), steadier than the wall
// clock on a shared machine.
//
//	go test ./ops -run '^$' -bench Primitives -benchmem -count 3
func BenchmarkPrimitives(b *testing.B) {
	svc := opstest.New(b)
	e := newPinEnv(b)
	cvk, imkAC, _, _ := cardKeys(b, svc)
	m3 := opstest.Import(b, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	m6 := opstest.Import(b, svc, sym(keyspec.M6, keyspec.AES128, genVer), "2B7E151628AED2A6ABF7158809CF4F3C")
	m7 := createKey(b, svc, sym(keyspec.M7, keyspec.HMACSHA256, genVer))
	aesKey := opstest.Import(b, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	data := hb(strings.Repeat("A5", 64))

	tdesBlock := func(k string) cipher.Block {
		c, err := tdes.NewCipher(hb(k))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	aesBlock := func(k string) cipher.Block {
		c, err := aes.NewCipher(hb(k))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	desBlock := func(k string) cipher.Block {
		c, err := des.NewCipher(hb(k)[:8])
		if err != nil {
			b.Fatal(err)
		}
		return c
	}

	// TranslatePinData: ISO 0 under one TDES PEK to ISO 0 under another.
	pinIn := ops.TranslatePinInput{IncomingKey: e.tdesPEK, Incoming: pinSpec(ops.PinFormatISO0, ep2PAN),
		OutgoingKey: e.tdesPEK2, Outgoing: pinSpec(ops.PinFormatISO0, ep2PAN), EncryptedPinBlock: hb(ep2ISO0)}
	pek1, pek2 := tdesBlock(tdesKey), tdesBlock(tdesKey2)
	// VerifyPinData: Visa PVV of an ISO 0 block.
	pvvIn := ops.VerifyPinInput{VerificationKey: e.pvk, EncryptionKey: e.tdesPEK,
		Visa: &ops.VisaPinCheck{PVKI: 1, PVV: "8523"}, EncryptedPinBlock: hb(blk4524), PAN: pvvPAN, Format: ops.PinFormatISO0}
	pvk := tdesBlock(tdesKey)
	// VerifyCardValidationData: CVV2.
	cvvIn := ops.CardValidationInput{KeyIdentifier: cvk, PAN: "171234567890123", Kind: ops.CardCVV2, ExpiryDate: "0123"}
	cvv, err := svc.GenerateCardValidationData(cvvIn)
	if err != nil {
		b.Fatal(err)
	}
	cvkL, cvkB := desBlock(testIMK), tdesBlock(testIMK)
	// VerifyAuthRequestCryptogram: CVN 18 (EMV common session key, option B).
	arqcIn := ops.AuthRequestCryptogramInput{KeyIdentifier: imkAC, TransactionData: hb(cvnData + "06011203A0B800" + "80"), MajorKeyMode: ops.EmvOptionB,
		Session: ops.EMVSession{Scheme: ops.EmvCommon, PAN: "1234567890123456", PSN: "00", ATC: hb("001C")}}
	arqc := hb("7A788EA6B8A3E733")
	imk := tdesBlock(testIMK)
	// MACs over 64 bytes.
	m3L, m3B := desBlock("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"), tdesBlock("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	cm, err := cmac.NewKey(aesBlock("2B7E151628AED2A6ABF7158809CF4F3C"))
	if err != nil {
		b.Fatal(err)
	}
	hm := hmac.New(sha256.New, make([]byte, 32))
	aesB := aesBlock("2B7E151628AED2A6ABF7158809CF4F3C")
	var buf [64]byte
	iv := make([]byte, 16)
	// The MAC and data primitives run as the host port and the HTTP data
	// plane call them: appending the result to a buffer the caller keeps.
	out := make([]byte, 0, 256)
	encIn := ops.EncryptDataInput{KeyIdentifier: aesKey, PlainText: data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}}
	decIn := ops.DecryptDataInput{KeyIdentifier: aesKey, CipherText: data, Attributes: encIn.Attributes}
	reIn := ops.ReEncryptDataInput{IncomingKeyIdentifier: aesKey, OutgoingKeyIdentifier: aesKey, CipherText: data, Incoming: encIn.Attributes, Outgoing: encIn.Attributes}
	var clearBuf [64]byte
	cases := []struct {
		name         string
		ops, ceiling func() error
	}{
		{"TranslatePin-ISO0-TDES",
			func() error { _, err := e.svc.TranslatePin(pinIn); return err },
			func() error {
				_, _, err := pinblock.Translate(pek1, pinblock.ISO0, pinIn.EncryptedPinBlock, ep2PAN, pek2, pinblock.ISO0, ep2PAN, nil)
				return err
			}},
		{"VerifyPin-VisaPVV",
			func() error { _, err := e.svc.VerifyPin(pvvIn); return err },
			func() error {
				pin, err := pinblock.Decrypt(pek1, pinblock.ISO0, pvvIn.EncryptedPinBlock, pvvPAN)
				if err != nil {
					return err
				}
				defer clear(pin)
				_, err = pinverify.VerifyVisaPVV(pvk, pvvPAN, 1, pin, []byte("8523"))
				return err
			}},
		{"VerifyCVV2",
			func() error { _, err := svc.VerifyCardValidationData(cvvIn, cvv.Value); return err },
			func() error {
				v, err := cardverify.CVVCiphers(cvkL, cvkB, cvvIn.PAN, "0123", "000", 3)
				_ = cardverify.Equal(v, cvv.Value)
				return err
			}},
		{"VerifyARQC-CVN18",
			func() error { _, err := svc.VerifyAuthRequestCryptogram(arqcIn, arqc, nil); return err },
			func() error {
				mk, err := emv.ICCMasterKeyBlock(imk, emv.OptionB, "1234567890123456", "00")
				if err != nil {
					return err
				}
				sk, err := emv.ACSessionKey(mk, emv.SchemeEMVCommon, [2]byte{0x00, 0x1C}, [4]byte{})
				clear(mk)
				if err != nil {
					return err
				}
				ac, err := emv.Cryptogram(sk, arqcIn.TransactionData, emv.PadMethod1)
				clear(sk)
				_ = subtle.ConstantTimeCompare(ac, arqc)
				return err
			}},
		{"GenerateMac-ISO9797-3-64B",
			func() error {
				_, _, err := svc.AppendMac(out[:0], ops.GenerateMacInput{KeyIdentifier: m3, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}})
				return err
			},
			func() error { _, err := mac.Algorithm3Ciphers(m3L, m3B, data, mac.Method1); return err }},
		{"GenerateMac-CMAC-AES128-64B",
			func() error {
				_, _, err := svc.AppendMac(out[:0], ops.GenerateMacInput{KeyIdentifier: m6, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
				return err
			},
			func() error { _, err := cm.Sum(buf[:0], data); return err }},
		{"GenerateMac-HMAC-SHA256-64B",
			func() error {
				_, _, err := svc.AppendMac(out[:0], ops.GenerateMacInput{KeyIdentifier: m7, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacHMAC}})
				return err
			},
			func() error { hm.Reset(); hm.Write(data); hm.Sum(buf[:0]); return nil }},
		{"EncryptData-AES128-CBC-64B",
			func() error {
				_, _, err := svc.AppendEncryptData(out[:0], encIn)
				return err
			},
			func() error { cbcEncryptCeiling(aesB, iv, buf[:], data); return nil }},
		{"DecryptData-AES128-CBC-64B",
			func() error {
				_, _, err := svc.AppendDecryptData(out[:0], decIn)
				return err
			},
			func() error { cbcDecryptCeiling(aesB, iv, buf[:], data); return nil }},
		{"ReEncryptData-AES128-CBC-64B",
			func() error {
				_, _, err := svc.AppendReEncryptData(out[:0], reIn)
				return err
			},
			// Deciphered into a buffer of its own, cleared, as the operation does.
			func() error {
				cbcDecryptCeiling(aesB, iv, clearBuf[:], data)
				cbcEncryptCeiling(aesB, iv, buf[:], clearBuf[:])
				clear(clearBuf[:])
				return nil
			}},
	}
	for _, c := range cases {
		for _, side := range []struct {
			name string
			f    func() error
		}{{"ops", c.ops}, {"ceiling", c.ceiling}} {
			b.Run(c.name+"/"+side.name, func(b *testing.B) {
				if err := side.f(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					if err := side.f(); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, start)
			})
		}
	}
}

// cbcEncryptCeiling is CBC encryption as the block cipher's own chain into
// dst, the ceiling of EncryptData: crypto/cipher's NewCBCEncrypter copies
// the AES key schedule into a new BlockMode per message, most of a 64-byte
// message's cost.
func cbcEncryptCeiling(b cipher.Block, iv, dst, src []byte) {
	prev := iv
	for i := 0; i < len(src); i += aes.BlockSize {
		d := dst[i : i+aes.BlockSize]
		subtle.XORBytes(d, src[i:i+aes.BlockSize], prev)
		b.Encrypt(d, d)
		prev = d
	}
}

// cbcDecryptCeiling is cbcEncryptCeiling's decryption, dst and src apart.
func cbcDecryptCeiling(b cipher.Block, iv, dst, src []byte) {
	prev := iv
	for i := 0; i < len(src); i += aes.BlockSize {
		d, c := dst[i:i+aes.BlockSize], src[i:i+aes.BlockSize]
		b.Decrypt(d, c)
		subtle.XORBytes(d, d, prev)
		prev = c
	}
}
