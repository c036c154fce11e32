// Package secret owns the in-memory forms of the values payhsm must never
// print: clear key material (Key), primary account numbers (PAN) and PINs
// (PIN). Each is an opaque handle whose every text form — fmt's verbs
// (%v %+v %#v %s %q %x %X %d …), String, GoString, JSON, text and slog
// marshalling — is redacted or masked, so that a key, PAN or PIN that
// reaches a log line, an error or a response by mistake shows nothing that
// matters. The value itself is only reached on purpose: Key.Bytes,
// PAN.Digits, PIN.Digits.
//
// Key and PIN material is zeroed by Destroy, explicitly: nothing here zeroes
// memory behind its owner's back, because a cached key may be in use by a
// request while another drops it, and a key zeroed in use would encrypt under
// zeros. A Key may be mlocked (Lock) so that it is never swapped out;
// Destroy then zeroes and unlocks it.
//
// The handles hold only a pointer, so even a handle in an unexported struct
// field, which fmt prints by reflection without calling its methods, prints
// as an address. Reflection-based dumpers that follow pointers (debuggers,
// pretty-printers) can still reach the bytes: never hand them a secret.
package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"unsafe"
)

// ErrNotDecodable is returned by the Unmarshal methods of Key and PIN: secret
// material is never read from JSON or text.
var ErrNotDecodable = errors.New("secret: key material and PINs cannot be decoded from text")

// Key is clear key material: symmetric key bytes, or a private key's
// encoding. The zero Key holds no material. Copies of a Key share the
// material: Destroy through one destroys it for all.
type Key struct{ s *keyState }

// keyState holds the material behind one more pointer: fmt, printing a
// pointer it cannot call methods on (a handle in an unexported field, with a
// verb it does not expect), shows the fields of the struct it points to, but
// only the address of a pointer field.
type keyState struct {
	mu        sync.Mutex
	m         *keyMaterial
	destroyed bool
}

type keyMaterial struct {
	b      []byte // the material; nil once destroyed
	region []byte // the mlocked pages holding b; nil when not locked
}

// NewKey takes ownership of b, which the caller must no longer use directly
// (Destroy zeroes it; Lock moves it and zeroes b).
func NewKey(b []byte) Key { return Key{&keyState{m: &keyMaterial{b: b}}} }

// Bytes is the material, for use; nil for the zero Key and once destroyed.
// The caller must not modify or keep it beyond the Key's life.
func (k Key) Bytes() []byte {
	if k.s == nil {
		return nil
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return k.s.m.b
}

// Len is the length of the material in bytes (0 for the zero Key and once destroyed).
func (k Key) Len() int { return len(k.Bytes()) }

// IsZero reports whether k is the zero Key (holds no material at all).
func (k Key) IsZero() bool { return k.s == nil }

// Destroyed reports whether Destroy has been called.
func (k Key) Destroyed() bool {
	if k.s == nil {
		return false
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return k.s.destroyed
}

// Locked reports whether the material is mlocked.
func (k Key) Locked() bool {
	if k.s == nil {
		return false
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	return k.s.m.region != nil
}

// Destroy zeroes the material and, when it was locked, unlocks its pages.
// The material is zeroed even when unlocking fails; the error reports the
// failure. Destroying twice, or the zero Key, does nothing.
func (k Key) Destroy() error {
	if k.s == nil {
		return nil
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	if k.s.destroyed {
		return nil
	}
	k.s.destroyed = true
	clear(k.s.m.b)
	k.s.m.b = nil
	if r := k.s.m.region; r != nil {
		k.s.m.region = nil
		clear(r)
		if err := munlock(r); err != nil {
			return fmt.Errorf("secret: munlock: %w", err)
		}
	}
	return nil
}

// Lock mlocks the material so that it is never written to swap: it is moved
// to pages of its own (so that unlocking it can never unlock another
// secret's page), which are locked, and the memory it was in is zeroed. Call
// Lock before handing out Bytes: slices taken earlier see the zeroed copy.
// It is best effort: when the system refuses (RLIMIT_MEMLOCK, no
// CAP_IPC_LOCK, an unsupported platform) the error says so and the material
// stays where it was, unlocked and usable. Locking a locked Key does nothing.
// A locked Key costs at least a page of memory and of the process's lock
// limit: lock long-lived keys (main keys), not every working key.
func (k Key) Lock() error {
	if k.s == nil {
		return errors.New("secret: the zero Key has no material to lock")
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	switch {
	case k.s.destroyed:
		return errors.New("secret: the key is destroyed")
	case k.s.m.region != nil:
		return nil
	}
	region := pageAligned(len(k.s.m.b))
	if err := mlock(region); err != nil {
		return fmt.Errorf("secret: mlock: %w", err)
	}
	n := copy(region, k.s.m.b)
	clear(k.s.m.b)
	k.s.m.b, k.s.m.region = region[:n:n], region
	return nil
}

// pageAligned allocates whole pages of its own, at least one, for n bytes: a
// page-aligned slice inside a larger heap allocation, which no other object
// shares. (The Go heap does not move objects, so the pages stay put.)
func pageAligned(n int) []byte {
	ps := os.Getpagesize()
	size := max((n+ps-1)/ps, 1) * ps
	buf := make([]byte, size+ps)
	off := (ps - int(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%uintptr(ps))) % ps //nolint:gosec // G103: the address is only read to find the first page boundary inside buf.
	return buf[off : off+size : off+size]
}

// String is "[REDACTED n bytes]" ("[NO KEY]" for the zero Key, "[DESTROYED
// KEY]" once destroyed): never the material.
func (k Key) String() string {
	if k.s == nil {
		return "[NO KEY]"
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	if k.s.destroyed {
		return "[DESTROYED KEY]"
	}
	return "[REDACTED " + strconv.Itoa(len(k.s.m.b)) + " bytes]"
}

// GoString is the %#v form: secret.Key([REDACTED n bytes]).
func (k Key) GoString() string { return "secret.Key(" + k.String() + ")" }

// Format prints String for every verb (%q quotes it; %#v is GoString).
func (k Key) Format(f fmt.State, verb rune) { format(f, verb, k.String(), k.GoString()) }

// MarshalJSON is the JSON string of String.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// MarshalText is String.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalJSON refuses: key material is never decoded from JSON.
func (k *Key) UnmarshalJSON([]byte) error { return ErrNotDecodable }

// UnmarshalText refuses: key material is never decoded from text.
func (k *Key) UnmarshalText([]byte) error { return ErrNotDecodable }

// LogValue is String, for log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// format writes s for every verb: quoted for %q, g for %#v.
func format(f fmt.State, verb rune, s, g string) {
	switch {
	case verb == 'q':
		s = strconv.Quote(s)
	case verb == 'v' && f.Flag('#'):
		s = g
	}
	_, _ = f.Write([]byte(s)) // fmt.State's Write reports errors through the print call
}
