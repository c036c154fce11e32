package ops_test

import (
	"encoding/hex"
	"fmt"
	"strings"

	"payhsm/fault"
)

// The operations layer takes and returns bytes; the tests keep their known
// answers in the hexadecimal the specifications print them in.

// hb decodes a hexadecimal test vector ("" is nil).
func hb(s string) []byte {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		panic("test vector " + s + ": " + err.Error())
	}
	return b
}

// hx is the upper-case hexadecimal of b, as the vectors print it.
func hx(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// at is the subject and side a Validation fault should be about; the zero
// value checks nothing.
type at struct {
	subj fault.Subject
	side fault.Side
}

// isAbout reports whether err is a Validation fault about a (any, when a
// is zero).
func isAbout(err error, a at) bool {
	f := fault.As(err)
	return f != nil && f.Kind == fault.Validation && (a == at{} || f.Subject == a.subj && f.Side == a.side)
}

// aboutOf formats what err is about, for test failures.
func aboutOf(err error) string {
	f := fault.As(err)
	if f == nil {
		return "no error"
	}
	return fmt.Sprintf("%v (kind %v, subject %d, side %d)", err, f.Kind, f.Subject, f.Side)
}
