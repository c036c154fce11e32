package audit

import (
	"slices"
	"strconv"
	"time"

	"payhsm/internal/jsontext"
)

// appendEntryJSON appends the bytes encoding/json's Marshal writes for an
// event entry (control, data, ceremony, denial: an Event, no Seal, Start
// or Notice) whose strings need no escaping, and reports true; it reports
// false, leaving what it appended past len(dst) to be overwritten, for any
// other entry, which the caller marshals with encoding/json. An entry is
// encoded under the trail's lock, once per call recorded (every
// control-plane call, and every data-plane call where data events are
// on): without reflection, it costs a fraction of Marshal
// (BenchmarkEncodeData). TestAppendEntryJSONMatchesMarshal and
// FuzzAppendEntryJSON hold it to Marshal's bytes.
func appendEntryJSON(dst []byte, e *Entry) ([]byte, bool) {
	ev := e.Event
	if ev == nil || e.Seal != nil || e.Start != nil || e.Notice != nil || e.Hash != "" {
		return dst, false
	}
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return dst, false // Marshal refuses it
	}
	if _, off := e.Time.Zone(); off != 0 {
		return dst, false // the trail's times are UTC; Marshal judges other offsets
	}
	for _, s := range [...]string{string(e.Kind), e.Prev, e.MaskedPAN, e.PANHash, ev.Protocol, ev.Operation, ev.Principal,
		ev.Source, ev.RequestID, ev.Account, ev.Profile, string(ev.Outcome), ev.Error, ev.Detail} {
		if !jsontext.Plain(s) {
			return dst, false
		}
	}
	if !allPlain(ev.Keys) || !allPlain(ev.Custodians) {
		return dst, false
	}
	for k, v := range ev.KCVs {
		if !jsontext.Plain(k) || !jsontext.Plain(v) {
			return dst, false
		}
	}
	b := append(dst, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendMember(b, "kind", string(e.Kind), false)
	b = appendMember(b, "prev", e.Prev, false)
	b = appendMember(b, "protocol", ev.Protocol, true)
	b = appendMember(b, "operation", ev.Operation, false)
	b = appendMember(b, "principal", ev.Principal, true)
	b = appendMember(b, "source", ev.Source, true)
	b = appendMember(b, "requestId", ev.RequestID, true)
	b = appendMember(b, "account", ev.Account, true)
	b = appendMember(b, "profile", ev.Profile, true)
	b = appendList(b, "keys", ev.Keys)
	b = appendList(b, "custodians", ev.Custodians)
	if len(ev.KCVs) > 0 {
		b = append(b, `,"kcvs":{`...)
		names := make([]string, 0, len(ev.KCVs))
		for k := range ev.KCVs {
			names = append(names, k)
		}
		slices.Sort(names)
		for i, k := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, `":"`...)
			b = append(b, ev.KCVs[k]...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = appendMember(b, "outcome", string(ev.Outcome), false)
	b = appendMember(b, "error", ev.Error, true)
	b = appendMember(b, "detail", ev.Detail, true)
	if ev.Online {
		b = append(b, `,"online":true`...)
	}
	b = appendMember(b, "pan", e.MaskedPAN, true)
	b = appendMember(b, "panHash", e.PANHash, true)
	return append(b, '}'), true
}

// appendMember appends ,"name":"value" (nothing for an empty value when
// omitEmpty).
func appendMember(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, value...)
	return append(b, '"')
}

// appendList appends ,"name":["a","b"] (nothing for an empty list).
func appendList(b []byte, name string, list []string) []byte {
	if len(list) == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":[`...)
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	return append(b, ']')
}

// allPlain reports whether every string of list is jsontext.Plain.
func allPlain(list []string) bool {
	for _, s := range list {
		if !jsontext.Plain(s) {
			return false
		}
	}
	return true
}
