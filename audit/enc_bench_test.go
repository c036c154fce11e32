package audit

import "testing"

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
	b.ReportAllocs()
	for b.Loop() {
		e := Entry{Kind: KindData, Seq: 7, Event: &ev}
		e.MaskedPAN, e.PANHash = k.maskPAN(ev.PAN)
		_, h, err := encodeEntry(&e, prev)
		if err != nil {
			b.Fatal(err)
		}
		prev = h
	}
}
