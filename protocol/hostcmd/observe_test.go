package hostcmd

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/fault"
	"payhsm/ops/opstest"
)

// observed is one ObserveCommand call.
type observed struct {
	command    string
	kind, code string
}

type recorder struct {
	mu  sync.Mutex
	got []observed
}

func (r *recorder) ObserveCommand(command [2]byte, kind, code string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took <= 0 {
		kind = "non-positive duration"
	}
	r.got = append(r.got, observed{string(command[:]), kind, code})
}

func (r *recorder) all() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observed(nil), r.got...)
}

// TestObserveAndLog: every command, on both connection drivers, is told to
// the observer once with its code and kind, and logged once: a success at
// debug, a failure at info with the request id, command code, error code,
// kind, remote address and reason, and never the request's content (here a
// PAN).
func TestObserveAndLog(t *testing.T) { forDrivers(t, testObserveAndLog) }

func testObserveAndLog(t *testing.T, drv string) {
	core, logs := observer.New(zapcore.DebugLevel)
	srv := NewServer(opstest.New(t), Config{HeaderLength: 4, Driver: drv}, zap.New(core))
	rec := &recorder{}
	srv.SetObserver(rec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := contextTimeout(5 * time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c := (&testServer{srv: srv, addr: ln.Addr().String()}).dial(t, nil)
	const pan = "4111111111111111"
	tests := []struct {
		msg       string
		want      observed
		level     zapcore.Level
		reason    string // a substring of the logged reason
		errPrefix string // the response's start
	}{
		{"0000NC", observed{"NC", "", ""}, zapcore.DebugLevel, "", "0000ND00"},
		{"0001QQ", observed{"QQ", "Validation", "68"}, zapcore.InfoLevel, "not supported", "0001QR68"},
		{"0002CCU" + pan, observed{"CC", "Validation", "26"}, zapcore.InfoLevel, "", "0002CD26"},
		{"0003B2XYZ", observed{"B2", "Validation", "15"}, zapcore.InfoLevel, "", "0003B315"},
	}
	for _, tc := range tests {
		if got := c.call(tc.msg); !strings.HasPrefix(got, tc.errPrefix) {
			t.Fatalf("%s: answer %q, want %s…", tc.msg, got, tc.errPrefix)
		}
	}
	got := rec.all()
	if len(got) != len(tests) {
		t.Fatalf("observed %v, want %d calls", got, len(tests))
	}
	entries := logs.All()
	if len(entries) != len(tests) {
		t.Fatalf("%d log lines, want one per command: %v", len(entries), entries)
	}
	for i, tc := range tests {
		if got[i] != tc.want {
			t.Errorf("%s: observed %+v, want %+v", tc.msg, got[i], tc.want)
		}
		e := entries[i]
		f := e.ContextMap()
		if e.Level != tc.level {
			t.Errorf("%s: logged at %s, want %s", tc.msg, e.Level, tc.level)
		}
		if f["operation"] != tc.want.command || f["remote"] != c.c.LocalAddr().String() {
			t.Errorf("%s: fields %v", tc.msg, f)
		}
		if id, _ := f["requestId"].(string); !strings.HasPrefix(id, "host-") || !strings.HasSuffix(id, "-"+string(rune('1'+i))) {
			t.Errorf("%s: requestId %q", tc.msg, id)
		}
		if tc.want.code != "" {
			if e.Message != "host command failed" || f["code"] != tc.want.code || f["kind"] != tc.want.kind {
				t.Errorf("%s: %q %v", tc.msg, e.Message, f)
			}
			if r, _ := f["reason"].(string); !strings.Contains(r, tc.reason) {
				t.Errorf("%s: reason %q, want it to contain %q", tc.msg, r, tc.reason)
			}
		}
		for k, v := range f {
			if s, ok := v.(string); ok && strings.Contains(s, pan) {
				t.Errorf("%s: field %s holds the PAN: %q", tc.msg, k, s)
			}
		}
	}
}

// TestFinishLevels: the level of a command's log line by how it ended, and
// the kind the observer is told.
func TestFinishLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		res   result
		level zapcore.Level
		kind  string
	}{
		{"success", result{command: [2]byte{'N', 'C'}, code: codeOK}, zapcore.DebugLevel, ""},
		{"verification failed", result{command: [2]byte{'C', 'Y'}, code: "01", err: fault.Mismatch(fault.ReasonInvalidValidationData, "CVV")},
			zapcore.DebugLevel, "VerificationFailed"},
		{"decode error", result{command: [2]byte{'C', 'C'}, code: "15", err: errCode("15", "x")}, zapcore.InfoLevel, "Validation"},
		{"not found", result{command: [2]byte{'C', 'C'}, code: "12", err: fault.NotFoundf("k", "key k not found")}, zapcore.InfoLevel, "NotFound"},
		{"token lost", result{command: [2]byte{'C', 'C'}, code: "41", err: fault.Wrap(fault.Unavailable, "token", nil)}, zapcore.WarnLevel, "Unavailable"},
		{"internal", result{command: [2]byte{'C', 'C'}, code: "41", err: errors.New("boom")}, zapcore.ErrorLevel, "Internal"},
		{"frame", result{code: "15", err: ErrFrame}, zapcore.InfoLevel, "Validation"},
	}
	for _, tc := range tests {
		core, logs := observer.New(zapcore.DebugLevel)
		rec := &recorder{}
		s := &Server{log: zap.New(core), obs: rec}
		x := s.newCall()
		x.identify("192.0.2.1:4000", "switch-1")
		s.finish(x, tc.res, time.Now().Add(-time.Millisecond))
		entries := logs.All()
		if len(entries) != 1 || entries[0].Level != tc.level {
			t.Errorf("%s: logged %v, want one line at %s", tc.name, entries, tc.level)
			continue
		}
		if f := entries[0].ContextMap(); f["client"] != "switch-1" || f["remote"] != "192.0.2.1:4000" {
			t.Errorf("%s: fields %v", tc.name, f)
		}
		if got := rec.all(); len(got) != 1 || got[0].kind != tc.kind {
			t.Errorf("%s: observed %v, want kind %q", tc.name, got, tc.kind)
		}
	}
}
