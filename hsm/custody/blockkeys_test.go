package custody

import (
	"bytes"
	"encoding/hex"
	"testing"

	"go.uber.org/zap"

	"payhsm/hsm/tr31"
)

// TestMainKeyBlockKeys checks the TR-31 block keys a main key derives once:
// they are the published version D KBEK/KBMK of the TR-31:2018 A.7.4 KBPK
// (openemv/tr31 test/tr31_crypto_test.c), they live on memory of their own
// (the secret.Key bk, mlocked where the system allows), a profile holding
// them opens the published A.7.4 block to its published key and makes
// blocks that tr31.Unwrap opens under the KBPK itself, and destroy zeroes
// them.
func TestMainKeyBlockKeys(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kbpk := unhex("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
	m, err := newMainKey("default", kbpk, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.blocks.KBEK, unhex("396C9382A6E2E66A088774E1D6E46541F5EAD67D7204F8DD0D7AE8FDA334D3AC")) ||
		!bytes.Equal(m.blocks.KBAK, unhex("4EF24317696213840451890756757E573E0673483888F9B7F9B7517827F95022")) {
		t.Fatalf("block keys %X / %X", m.blocks.KBEK, m.blocks.KBAK)
	}
	if material := m.bk.Bytes(); len(material) != 64 || &material[0] != &m.blocks.KBEK[0] || &material[32] != &m.blocks.KBAK[0] {
		t.Fatal("the block keys are not the bytes of the secret.Key bk")
	}
	p := &Profile{name: "default", active: 1, keys: map[int]*mainKey{1: m}}
	// TR-31:2018 A.7.4 (version D).
	_, key, err := p.Unwrap("D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34")
	if err != nil || !bytes.Equal(key, unhex("3F419E1CB7079442AA37474C2EFBF8B8")) {
		t.Fatalf("Unwrap(A.7.4) = %X, %v", key, err)
	}
	clearKey := bytes.Repeat([]byte{0x17}, 32)
	block, err := p.Wrap(tr31.Header{KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}, clearKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := tr31.Unwrap(kbpk, block); err != nil || !bytes.Equal(got, clearKey) {
		t.Fatalf("tr31.Unwrap(Profile.Wrap block) = %X, %v", got, err)
	}
	material := m.bk.Bytes()
	p.destroy()
	if !m.bk.Destroyed() || m.blocks.KBEK != nil || !bytes.Equal(material, make([]byte, 64)) {
		t.Fatal("destroy left the block keys behind")
	}
}
