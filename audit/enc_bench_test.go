package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// BenchmarkEncodeData measures chaining and encoding one data event (the
// writer's work per event when data events are on).
func BenchmarkEncodeData(b *testing.B) {
	k, err := deriveKeys(testKey)
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Protocol: "host", Operation: "CC", Source: "10.0.0.7:50122", Account: "000000000000", Profile: "default",
		Keys: []string{"S0112P0TB00N0000", "S0112P0TB00N0000"}, Outcome: OK, PAN: "0101555555123456"}
	var prev [HashSize]byte
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		e := Entry{Kind: KindData, Seq: 7, Event: &ev}
		e.MaskedPAN, e.PANHash = k.maskPAN(ev.PAN)
		var h [HashSize]byte
		var err error
		buf, h, err = appendEntryLine(buf[:0], &e, prev)
		if err != nil {
			b.Fatal(err)
		}
		prev = h
	}
}

// BenchmarkEntryJSON: one control-plane entry's body, through
// appendEntryJSON and through encoding/json, in one run.
//
//	go test -run '^$' -bench EntryJSON -benchmem ./audit/
func BenchmarkEntryJSON(b *testing.B) {
	e := &Entry{V: Version, Seq: 12345, Kind: KindControl, Time: time.Date(2026, 12, 5, 1, 2, 3, 456789, time.UTC),
		Prev: strings.Repeat("0f", HashSize), Event: &Event{Protocol: "aws", Operation: "CreateKey", Principal: "AKIAEXAMPLE",
			Source: "127.0.0.1:50122", RequestID: "4c1f7a3e-2b5d-4e8f-9a0b-1c2d3e4f5a6b", Account: "000000000000",
			Keys: []string{"arn:aws:payment-cryptography:us-east-1:000000000000:key/abcdefghijklmnop"}, Outcome: OK}}
	b.Run("encoder=append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			var ok bool
			if buf, ok = appendEntryJSON(buf[:0], e); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoder=marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
