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

// TestOneSyntax: a -file line sends exactly what the same words send on the
// command line (joined without separators; quotes keep blanks).
func TestOneSyntax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		args []string // the same command as command-line words
		code string
		want string // fields
	}{
		{"NC", []string{"NC"}, "NC", ""},
		{"CW @alias/cvk; 4123456789012345; 8701 101", []string{"CW", "@alias/cvk;", "4123456789012345;", "8701", "101"}, "CW", "@alias/cvk;4123456789012345;8701101"},
		{"CW@alias/cvk;4123456789012345;8701101", []string{"CW@alias/cvk;4123456789012345;8701101"}, "CW", "@alias/cvk;4123456789012345;8701101"},
		{"\tB2  0004 {50494E47} ", []string{"B2", "0004", "{50494E47}"}, "B2", "0004PING"},
		{`B2 0005 'A B C' "x y"`, []string{"B2", "0005", "A B C", "x y"}, "B2", "0005A B Cx y"},
		{`A0 0FFFS '#C0T2C00N00' TRL\x19X`, []string{"A0", "0FFFS", "#C0T2C00N00", `TRL\x19X`}, "A0", "0FFFS#C0T2C00N00TRL\x19X"},
		{`B2 a'b c'd`, []string{"B2", "ab cd"}, "B2", "ab cd"},
	} {
		words, err := SplitLine(tc.line)
		if err != nil {
			t.Errorf("SplitLine(%q): %v", tc.line, err)
			continue
		}
		for _, ws := range [][]string{words, tc.args} {
			code, fields, err := Command(ws)
			if err != nil || code != tc.code || string(fields) != tc.want {
				t.Errorf("Command(%q) = %q %q %v, want %q %q", ws, code, fields, err, tc.code, tc.want)
			}
		}
	}
	for _, bad := range []string{`B2 'open`, `B2 "open`} {
		if _, err := SplitLine(bad); err == nil {
			t.Errorf("SplitLine(%q) accepted an unterminated quote", bad)
		}
	}
	if _, _, err := Command([]string{"N"}); err == nil {
		t.Errorf("a one-character command accepted")
	}
	if w, err := SplitLine("   "); err != nil || len(w) != 0 {
		t.Errorf("blank line: %q %v", w, err)
	}
}
