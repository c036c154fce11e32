package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestRecordTagMatchesHMAC checks recordTag against crypto/hmac over the
// same message, for keys shorter than, as long as and longer than a SHA-256
// block, and records from empty to past the size recordTag keeps on the
// stack.
func TestRecordTagMatchesHMAC(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 5))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, keyLen := range []int{0, 1, 32, 63, 64, 65, 100, 200} {
		for _, n := range []int{0, 1, 55, 64, 300, 800, 900, 1000, 1024, 4000} {
			key, pk, signed := fill(keyLen), fill(1+rng.IntN(60)), fill(n)
			m := hmac.New(sha256.New, key)
			m.Write([]byte(macContext))
			m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(pk))))
			m.Write(pk)
			m.Write(signed)
			want := m.Sum(nil)
			got := recordTag(key, pk, signed)
			if !bytes.Equal(got[:], want) {
				t.Fatalf("key %d bytes, record %d bytes: tag %x, crypto/hmac %x", keyLen, n, got, want)
			}
			if !bytes.Equal(recordMAC(key, pk, signed), want) {
				t.Fatalf("key %d bytes, record %d bytes: recordMAC differs", keyLen, n)
			}
		}
	}
}

// BenchmarkRecordTag measures the tag of a 400-byte record.
func BenchmarkRecordTag(b *testing.B) {
	key, pk, signed := bytes.Repeat([]byte{7}, 32), []byte("k/0123456789abcdef"), bytes.Repeat([]byte{1}, 400)
	b.ReportAllocs()
	for b.Loop() {
		recordTag(key, pk, signed)
	}
}
