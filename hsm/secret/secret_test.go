package secret

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// keyBytes is recognisable in every rendering: its hex (upper and lower),
// its decimal bytes and its raw bytes are all searched for.
var keyBytes = []byte{0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18, 0x29, 0x3A, 0x4B, 0x5C, 0x6D, 0x7E, 0x8F, 0x90}

func newTestKey() Key { return NewKey(bytes.Clone(keyBytes)) }

// leaks reports which forms of the secret s contains.
func leaks(s string, secrets ...string) []string {
	var found []string
	for _, x := range secrets {
		if x != "" && strings.Contains(s, x) {
			found = append(found, x)
		}
	}
	return found
}

func keyForms() []string {
	dec := make([]string, len(keyBytes))
	for i, b := range keyBytes {
		dec[i] = strconv.Itoa(int(b))
	}
	return []string{hex.EncodeToString(keyBytes), strings.ToUpper(hex.EncodeToString(keyBytes)),
		hex.EncodeToString(keyBytes[:4]), string(keyBytes[:4]), strings.Join(dec[:4], " "), strings.Join(dec[:4], ","),
		"161 178 195"}
}

const (
	testPAN    = "4761739001010119"
	testPANMsk = "476173******0119"
	testPIN    = "90571234"
)

var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10v", "%-8s", "% x", "%#x", "%o", "%b", "%c", "%U"}

// Every fmt verb, on the value, a pointer to it, and inside slices, maps,
// exported and unexported struct fields, prints the redaction and never the
// secret.
func TestFormattingRedacts(t *testing.T) {
	k := newTestKey()
	pan, err := ParsePAN(testPAN)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := NewPIN([]byte(testPIN))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		v       any
		want    string // every rendering contains it
		secrets []string
	}{
		{"Key", k, "[REDACTED 16 bytes]", keyForms()},
		{"*Key", &k, "[REDACTED 16 bytes]", keyForms()},
		{"[]Key", []Key{k, k}, "[REDACTED 16 bytes]", keyForms()},
		{"map", map[string]Key{"k": k}, "[REDACTED 16 bytes]", keyForms()},
		{"exported field", struct{ Material Key }{k}, "[REDACTED 16 bytes]", keyForms()},
		{"unexported field", struct{ material Key }{k}, "", keyForms()},
		{"unexported field via pointer", &struct{ material Key }{k}, "", keyForms()},
		{"unexported field, nested", struct{ w struct{ m []Key } }{struct{ m []Key }{[]Key{k}}}, "", keyForms()},
		{"PAN", pan, testPANMsk, []string{testPAN, "9001010", hex.EncodeToString([]byte(testPAN))}},
		{"*PAN", &pan, testPANMsk, []string{testPAN, "9001010"}},
		{"PAN field", struct{ PAN PAN }{pan}, testPANMsk, []string{testPAN, "9001010"}},
		{"unexported PAN field", struct{ pan PAN }{pan}, "", []string{testPAN, "9001010"}},
		{"PIN", pin, "****", []string{testPIN, "9057", hex.EncodeToString([]byte(testPIN))}},
		{"*PIN", &pin, "****", []string{testPIN, "9057"}},
		{"PIN field", struct{ PIN PIN }{pin}, "****", []string{testPIN, "9057"}},
		{"unexported PIN field", struct{ pin PIN }{pin}, "", []string{testPIN, "9057", "57 48 53 55"}},
		{"unexported PIN field via pointer", &struct{ pin PIN }{pin}, "", []string{testPIN, "9057", "57 48 53 55"}},
		{"unexported PAN field via pointer", &struct{ pan PAN }{pan}, "", []string{testPAN, "9001010"}},
	}
	for _, c := range cases {
		for _, verb := range verbs {
			t.Run(c.name+"/"+verb, func(t *testing.T) {
				s := fmt.Sprintf(verb, c.v)
				if l := leaks(s, c.secrets...); l != nil {
					t.Errorf("%s of %s = %q shows %q", verb, c.name, s, l)
				}
				// The verbs that print the value itself (not a pointer's
				// address or a field by reflection) print the redaction.
				direct := !strings.HasPrefix(c.name, "unexported") && !strings.HasPrefix(c.name, "*")
				if direct && c.want != "" && !strings.Contains(s, c.want) && !strings.Contains(s, strconv.Quote(c.want)) {
					t.Errorf("%s of %s = %q, want it to contain %q", verb, c.name, s, c.want)
				}
			})
		}
	}
}

// The exact forms of the main verbs.
func TestFormats(t *testing.T) {
	k := newTestKey()
	pan, _ := ParsePAN(testPAN)
	pin, _ := NewPIN([]byte(testPIN))
	for _, c := range []struct {
		verb string
		v    any
		want string
	}{
		{"%v", k, "[REDACTED 16 bytes]"},
		{"%s", k, "[REDACTED 16 bytes]"},
		{"%+v", k, "[REDACTED 16 bytes]"},
		{"%x", k, "[REDACTED 16 bytes]"},
		{"%q", k, `"[REDACTED 16 bytes]"`},
		{"%#v", k, "secret.Key([REDACTED 16 bytes])"},
		{"%v", Key{}, "[NO KEY]"},
		{"%v", pan, testPANMsk},
		{"%x", pan, testPANMsk},
		{"%q", pan, `"` + testPANMsk + `"`},
		{"%#v", pan, "secret.PAN(" + testPANMsk + ")"},
		{"%v", PAN{}, "[NO PAN]"},
		{"%v", pin, "****"},
		{"%d", pin, "****"},
		{"%q", pin, `"****"`},
		{"%#v", pin, "secret.PIN(****)"},
		{"%v", PIN{}, "****"},
	} {
		if got := fmt.Sprintf(c.verb, c.v); got != c.want {
			t.Errorf("%s of %T = %q, want %q", c.verb, c.v, got, c.want)
		}
	}
}

// Errors built from a secret carry the redaction.
func TestErrorsRedact(t *testing.T) {
	k := newTestKey()
	pan, _ := ParsePAN(testPAN)
	pin, _ := NewPIN([]byte(testPIN))
	for _, err := range []error{
		fmt.Errorf("%v", k),
		fmt.Errorf("bad key %s: %w", k, errors.New("x")),
		fmt.Errorf("key %x pan %v pin %v", k, pan, pin),
		fmt.Errorf("%+v", struct {
			K   Key
			PAN PAN
			PIN PIN
		}{k, pan, pin}),
		errors.New(fmt.Sprint(k, pan, pin)),
		errors.New(fmt.Sprintln(k, pan, pin)),
	} {
		if l := leaks(err.Error(), append(keyForms(), testPAN, testPIN)...); l != nil {
			t.Errorf("error %q shows %q", err, l)
		}
	}
	if got := fmt.Errorf("cannot use %v", k).Error(); got != "cannot use [REDACTED 16 bytes]" {
		t.Errorf("got %q", got)
	}
}

// JSON, text, XML and slog encodings redact; decoding key material or a
// PIN is refused; a PAN decodes and validates.
func TestMarshalling(t *testing.T) {
	k := newTestKey()
	pan, _ := ParsePAN(testPAN)
	pin, _ := NewPIN([]byte(testPIN))
	type record struct {
		Key Key
		PAN PAN
		PIN PIN
		Ptr *Key
		M   map[string]Key
	}
	r := record{k, pan, pin, &k, map[string]Key{"a": k}}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Key":"[REDACTED 16 bytes]","PAN":"476173******0119","PIN":"****","Ptr":"[REDACTED 16 bytes]","M":{"a":"[REDACTED 16 bytes]"}}`
	if string(j) != want {
		t.Errorf("JSON = %s\nwant   %s", j, want)
	}
	type doc struct{ K Key }
	x, err := xml.Marshal(doc{k})
	if err != nil || !strings.Contains(string(x), "[REDACTED 16 bytes]") || leaks(string(x), keyForms()...) != nil {
		t.Errorf("XML = %s, %v", x, err)
	}
	for _, m := range []interface{ MarshalText() ([]byte, error) }{k, pan, pin} {
		b, err := m.MarshalText()
		if err != nil || leaks(string(b), append(keyForms(), testPAN, testPIN)...) != nil {
			t.Errorf("MarshalText = %q, %v", b, err)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("op", "key", k, "pan", pan, "pin", pin)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("op", "key", k, "pan", pan, "pin", pin)
	if l := leaks(buf.String(), append(keyForms(), testPAN, testPIN)...); l != nil || !strings.Contains(buf.String(), "[REDACTED 16 bytes]") {
		t.Errorf("slog wrote %s (shows %q)", buf.String(), l)
	}

	// Decoding.
	var back struct {
		Key Key
		PIN PIN
	}
	for _, in := range []string{`{"Key":"[REDACTED 16 bytes]"}`, `{"Key":"a1b2c3d4"}`, `{"PIN":"1234"}`} {
		if err := json.Unmarshal([]byte(in), &back); !errors.Is(err, ErrNotDecodable) {
			t.Errorf("json.Unmarshal(%s) = %v, want ErrNotDecodable", in, err)
		}
	}
	var p struct{ PAN PAN }
	if err := json.Unmarshal([]byte(`{"PAN":"4761739001010119"}`), &p); err != nil || p.PAN.Digits() != testPAN {
		t.Errorf("PAN decode: %v, %q", err, p.PAN.Digits())
	}
	if err := json.Unmarshal(j, &p); !errors.Is(err, ErrPANDigits) {
		t.Errorf("decoding a masked PAN: %v, want ErrPANDigits", err)
	}
}

func TestPANMasking(t *testing.T) {
	for _, c := range []struct{ pan, want string }{
		{"4761739001010119", "476173******0119"},
		{"4761739001010119123", "476173*********9123"},
		{"378282246310005", "***********0005"},
		{"123456789012", "********9012"},
	} {
		p, err := ParsePAN(c.pan)
		if err != nil {
			t.Fatalf("ParsePAN(%s): %v", c.pan, err)
		}
		if got := p.String(); got != c.want {
			t.Errorf("%d-digit PAN masks to %q, want %q", len(c.pan), got, c.want)
		}
		if hidden := strings.Count(p.Masked(), "*"); hidden < 6 {
			t.Errorf("%q hides %d digits", p.Masked(), hidden)
		}
		if p.Digits() != c.pan || p.Len() != len(c.pan) || p.IsZero() {
			t.Errorf("Digits/Len/IsZero of %s", c.pan)
		}
	}
	for _, c := range []struct {
		in   string
		want error
	}{
		{"", ErrPANLength}, {"12345678901", ErrPANLength}, {"12345678901234567890", ErrPANLength},
		{"47617390010101 9", ErrPANDigits}, {"476173900101011X", ErrPANDigits}, {"-476173900101011", ErrPANDigits},
	} {
		if _, err := ParsePAN(c.in); !errors.Is(err, c.want) {
			t.Errorf("ParsePAN(%q) = %v, want %v", c.in, err, c.want)
		} else if strings.Contains(err.Error(), c.in) && c.in != "" {
			t.Errorf("error %q shows the input", err)
		}
	}
	a, _ := ParsePAN(testPAN)
	b, _ := ParsePAN(testPAN)
	c, _ := ParsePAN("4761739001010118")
	if !a.Equal(b) || a.Equal(c) || a.Equal(PAN{}) || !(PAN{}).Equal(PAN{}) {
		t.Error("PAN.Equal")
	}
}

func TestKeyDestroyZeroes(t *testing.T) {
	raw := bytes.Clone(keyBytes)
	k := NewKey(raw)
	if !bytes.Equal(k.Bytes(), keyBytes) || k.Len() != 16 || k.IsZero() || k.Destroyed() {
		t.Fatal("a new key does not hold its material")
	}
	copyOf := k // copies share the material
	if err := copyOf.Destroy(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, make([]byte, 16)) {
		t.Errorf("Destroy left %x in memory", raw)
	}
	if k.Bytes() != nil || k.Len() != 0 || !k.Destroyed() || k.String() != "[DESTROYED KEY]" {
		t.Errorf("after Destroy: %v %d %v %q", k.Bytes(), k.Len(), k.Destroyed(), k.String())
	}
	if err := k.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := k.Lock(); err == nil {
		t.Error("Lock of a destroyed key succeeded")
	}
	var zero Key
	if zero.Destroy() != nil || zero.Bytes() != nil || !zero.IsZero() || zero.Destroyed() || zero.Locked() || zero.Lock() == nil {
		t.Error("zero Key")
	}
}

func TestPINDestroyZeroes(t *testing.T) {
	raw := []byte(testPIN)
	p, err := NewPIN(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Digits()) != testPIN || p.Len() != 8 || p.IsZero() {
		t.Fatal("a new PIN does not hold its digits")
	}
	p.Destroy()
	if !bytes.Equal(raw, make([]byte, len(raw))) || p.Digits() != nil || p.Len() != 0 {
		t.Errorf("Destroy left %q", raw)
	}
	p.Destroy()
	(PIN{}).Destroy()
	for _, c := range []struct {
		in   string
		want error
	}{{"123", ErrPINLength}, {"1234567890123", ErrPINLength}, {"12a4", ErrPINDigits}, {"12 45", ErrPINDigits}} {
		b := []byte(c.in)
		if _, err := NewPIN(b); !errors.Is(err, c.want) {
			t.Errorf("NewPIN(%q) = %v, want %v", c.in, err, c.want)
		}
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("NewPIN(%q) left the refused digits in memory", c.in)
		}
	}
}

// vmLocked is the process's locked memory in kB (Linux), or -1.
func vmLocked(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmLck line %q", line)
			}
			return n
		}
	}
	return -1
}

func TestKeyLock(t *testing.T) {
	raw := bytes.Clone(keyBytes)
	k := NewKey(raw)
	before := vmLocked(t)
	if err := k.Lock(); err != nil {
		// Best effort by design: the limit may forbid it here. The error
		// must say what failed and the key must be intact.
		if !strings.Contains(err.Error(), "mlock") || !bytes.Equal(k.Bytes(), keyBytes) || k.Locked() {
			t.Fatalf("failed Lock: %v, key %v locked %v", err, k.Bytes(), k.Locked())
		}
		t.Skipf("mlock refused here: %v", err)
	}
	if !k.Locked() || !bytes.Equal(k.Bytes(), keyBytes) {
		t.Fatal("a locked key does not hold its material")
	}
	if !bytes.Equal(raw, make([]byte, 16)) {
		t.Errorf("Lock left the unlocked copy %x", raw)
	}
	if cap(k.Bytes()) != 16 {
		t.Errorf("Bytes has capacity %d: appending would write into the locked pages", cap(k.Bytes()))
	}
	if before >= 0 {
		if after := vmLocked(t); after < before+os.Getpagesize()/1024 {
			t.Errorf("VmLck %d kB -> %d kB: no page locked", before, after)
		}
	}
	if err := k.Lock(); err != nil {
		t.Errorf("second Lock: %v", err)
	}
	mat := k.Bytes()
	if err := k.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if !bytes.Equal(mat, make([]byte, 16)) || k.Locked() {
		t.Errorf("Destroy left %x, locked %v", mat, k.Locked())
	}
	if before >= 0 {
		if after := vmLocked(t); after != before {
			t.Errorf("VmLck %d kB after Destroy, %d before Lock", after, before)
		}
	}
}

// Two locked keys never share a page: destroying one leaves the other locked.
func TestLockedKeysOwnTheirPages(t *testing.T) {
	a, b := newTestKey(), newTestKey()
	if err := a.Lock(); err != nil {
		t.Skipf("mlock refused here: %v", err)
	}
	if err := b.Lock(); err != nil {
		_ = a.Destroy()
		t.Skipf("mlock refused here: %v", err)
	}
	ps := uintptr(os.Getpagesize())
	pa, pb := pageOf(a.Bytes(), ps), pageOf(b.Bytes(), ps)
	if pa == pb {
		t.Fatal("two locked keys share a page")
	}
	before := vmLocked(t)
	if err := a.Destroy(); err != nil {
		t.Fatal(err)
	}
	if after := vmLocked(t); before >= 0 && after != before-int(ps/1024) {
		t.Errorf("VmLck %d -> %d kB: destroying one key unlocked more than its page", before, after)
	}
	if err := b.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// Concurrent readers and one destroyer: no race (run with -race).
func TestKeyConcurrentUse(t *testing.T) {
	k := newTestKey()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_ = k.Len()
				_ = k.String()
				_ = k.Destroyed()
			}
		})
	}
	wg.Go(func() { _ = k.Destroy() })
	wg.Wait()
	if !k.Destroyed() {
		t.Error("not destroyed")
	}
}

func pageOf(b []byte, ps uintptr) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b))) / ps //nolint:gosec // G103: the address is only read to find its page, never dereferenced.
}
