package hostclient

import (
	"testing"
)

func TestParseFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"@alias/k;4123456789012345;8701101", "@alias/k;4123456789012345;8701101"},
		{"{3763}AB", "\x37\x63AB"},
		{`TRL\x19X`, "TRL\x19X"},
		{"{}", ""},
	} {
		got, err := ParseFields(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("ParseFields(%q) = %q, %v", tc.in, got, err)
		}
	}
	if _, err := ParseFields("{ABC}"); err == nil {
		t.Errorf("odd hex accepted")
	}
	r, err := Parse([]byte("0001ND00ABC"), 4)
	if err != nil || r.Header != "0001" || r.Code != "ND" || r.Error != "00" || string(r.Fields) != "ABC" {
		t.Errorf("Parse %+v %v", r, err)
	}
	if _, err := Parse([]byte("0001ND0"), 4); err == nil {
		t.Errorf("short response accepted")
	}
	if got := printable([]byte("AB\x00\x01C")); got != "AB{0001}C" {
		t.Errorf("printable %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("0001ND00ABC"), "{00}x")
	f.Fuzz(func(t *testing.T, msg []byte, fields string) {
		if r, err := Parse(msg, 4); err == nil && len(r.Header)+len(r.Code)+len(r.Error)+len(r.Fields) != len(msg) {
			t.Fatalf("Parse lost bytes")
		}
		_, _ = ParseFields(fields) // any input: only that it returns
		printable(msg)
	})
}
