package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveOnce answers one connection on a fresh socket with answer (nil: close without answering).
func serveOnce(t *testing.T, answer func(*Request) *Response) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Error(err)
		}
	})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// The client's result is what the test checks; this goroutine
		// may outlive the test, so it reports nothing.
		defer func() { _ = c.Close() }()
		req, err := DecodeRequest(c)
		if err != nil {
			return
		}
		if resp := answer(req); resp != nil {
			_ = json.NewEncoder(c).Encode(resp)
		}
	}()
	return path
}

func TestCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		want    *Response
		wantErr string
		noDmn   bool
	}{
		{"answer", func(t *testing.T) string {
			return serveOnce(t, func(r *Request) *Response {
				if r.Op != OpRotate || r.Profile != "default" || len(r.Approvals) != 2 || string(r.Approvals[1].Passphrase) != "bob-passphrase" {
					return &Response{Error: "request arrived altered"}
				}
				return &Response{Rotate: &Rotation{Profile: "default", Version: 2, KCV: "ABCDEF", Rewrapped: 3, Verified: 3}}
			})
		}, &Response{Rotate: &Rotation{Profile: "default", Version: 2, KCV: "ABCDEF", Rewrapped: 3, Verified: 3}}, "", false},
		{"daemon refuses", func(t *testing.T) string {
			return serveOnce(t, func(*Request) *Response { return &Response{Error: "dual control needs two different custodians"} })
		}, nil, "dual control needs two different custodians", false},
		{"no answer", func(t *testing.T) string {
			return serveOnce(t, func(*Request) *Response { return nil })
		}, nil, "without an answer", false},
		{"no socket", func(t *testing.T) string { return filepath.Join(t.TempDir(), "admin.sock") }, nil, "no daemon", true},
		{"no socket, path too long for one", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), strings.Repeat("d", 120), "admin.sock")
		}, nil, "no daemon", true},
		{"stale socket", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "admin.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}, nil, "no daemon", true},
		{"a file, not a socket", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "admin.sock")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, nil, "no daemon", true},
		{"unreachable path", func(t *testing.T) string {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(file, "admin.sock") // ENOTDIR: an error, not "no daemon"
		}, nil, "admin socket", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := &Request{Op: OpRotate, Profile: "default", Approvals: []Approval{
				{Name: "alice", Passphrase: []byte("alice-passphrase")}, {Name: "bob", Passphrase: []byte("bob-passphrase")}}}
			got, err := Call(tc.path(t), req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Call = %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				if errors.Is(err, ErrNoDaemon) != tc.noDmn {
					t.Errorf("errors.Is(%v, ErrNoDaemon) = %v, want %v", err, !tc.noDmn, tc.noDmn)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got.Rotate != *tc.want.Rotate {
				t.Errorf("Call = %+v, want %+v", got.Rotate, tc.want.Rotate)
			}
		})
	}
}

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"request", `{"op":"krd-request"}`, true},
		{"not JSON", `op=rotate`, false},
		{"empty", ``, false},
		{"too large", `{"op":"rotate","profile":"` + strings.Repeat("a", MaxRequest) + `"}`, false},
	}
	for _, tc := range tests {
		req, err := DecodeRequest(bytes.NewReader([]byte(tc.in)))
		if (err == nil) != tc.ok {
			t.Errorf("%s: DecodeRequest = %+v, %v", tc.name, req, err)
		}
	}
}

// TestWireNames pins the JSON member names: a ceremony tool and a daemon of
// neighbouring builds must understand each other.
func TestWireNames(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Response{Rotate: &Rotation{Profile: "p", Version: 2, KCV: "K", Rewrapped: 1, Verified: 1}, KCV: "K"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"rotate":{"Profile":"p","Version":2,"KCV":"K","Rewrapped":1,"Verified":1},"kcv":"K"}`
	if string(b) != want {
		t.Errorf("response %s, want %s", b, want)
	}
	b, _ = json.Marshal(Request{Op: OpImportMainKey, Profile: "p", Approvals: []Approval{{Name: "a", Passphrase: []byte{1}}}, KCV: "K"})
	want = `{"op":"import-main-key","profile":"p","approvals":[{"name":"a","passphrase":"AQ=="}],"kcv":"K"}`
	if string(b) != want {
		t.Errorf("request %s, want %s", b, want)
	}
}
