package hostcmd

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"payhsm/ops/keyspec"
)

// TestTranscripts replays every testdata/*.txt transcript against a server on
// a real operations layer. A transcript is a sequence of lines:
//
//	# comment (each vector names its source here)
//	key NAME USAGE ALGORITHM MODE HEX   import a known key as alias/NAME
//	> REQUEST                           send one message (4-byte header)
//	< RESPONSE                          expect exactly this response
//	~ REGEXP                            expect a response matching REGEXP
//
// In requests and responses, {HEX} stands for the bytes HEX (binary fields).
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	ts := startServer(t, nil, Config{})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runTranscript(t, ts, f) })
	}
}

var hexSegment = regexp.MustCompile(`\{([0-9A-Fa-f]*)\}`)

func unbrace(t *testing.T, s string) string {
	return hexSegment.ReplaceAllStringFunc(s, func(m string) string {
		b, err := hex.DecodeString(m[1 : len(m)-1])
		if err != nil {
			t.Fatalf("bad hex segment %s", m)
		}
		return string(b)
	})
}

func runTranscript(t *testing.T, ts *testServer, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := ts.dial(t, nil)
	sc := bufio.NewScanner(f)
	var last string
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if len(l) < 2 {
			t.Fatalf("%s:%d: bad line", path, line)
		}
		op, arg := l[0], l[2:]
		switch op {
		case 'k':
			fs := strings.Fields(l)
			if len(fs) != 6 {
				t.Fatalf("%s:%d: key NAME USAGE ALGORITHM MODE HEX", path, line)
			}
			name := filepath.Base(path) + "-" + fs[1]
			name = strings.NewReplacer(".", "-").Replace(name)
			if _, err := ts.svc.GetAlias("alias/" + name); err != nil {
				importKey(t, ts.svc, name, fs[2], keyspec.Algorithm(fs[3]), fs[4][0], fs[5])
			}
			last = ""
		case '>':
			arg = strings.ReplaceAll(arg, "@alias/", "@alias/"+strings.NewReplacer(".", "-").Replace(filepath.Base(path))+"-")
			last = c.call(unbrace(t, arg))
		case '<':
			if want := unbrace(t, arg); last != want {
				t.Errorf("%s:%d: got %q, want %q", path, line, last, want)
			}
		case '~':
			if !regexp.MustCompile("^(?:" + arg + ")$").MatchString(last) {
				t.Errorf("%s:%d: got %q, want match of %s", path, line, last, arg)
			}
		default:
			t.Fatalf("%s:%d: unknown line kind %q", path, line, op)
		}
	}
}
