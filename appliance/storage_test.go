package appliance

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"
)

// TestSecureDataDir: looser modes left by an older release or a umask of
// 022 are tightened (through a symbolic link to the directory too), private
// ones are left alone, and a missing directory is made private.
func TestSecureDataDir(t *testing.T) {
	t.Parallel()
	real := filepath.Join(t.TempDir(), "real")
	for _, d := range []string{real, filepath.Join(real, "keystore")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]fs.FileMode{"keystore/000002.log": 0o644, "keystore/LOCK": 0o640, "credentials": 0o600, "audit.log": 0o666}
	for name, mode := range files {
		p := filepath.Join(real, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(real, "keystore"), 0o755); err != nil { //nolint:gosec // deliberately loose: SecureDataDir must tighten it
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fixed, err := SecureDataDir(link, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixed {
		fixed[i], _ = filepath.Rel(real, fixed[i])
	}
	slices.Sort(fixed)
	if want := []string{"audit.log", "keystore", "keystore/000002.log", "keystore/LOCK"}; !slices.Equal(fixed, want) {
		t.Errorf("tightened %v, want %v", fixed, want)
	}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %04o", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "new", "data")
	if _, err := SecureDataDir(fresh, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new data directory: %v %v", fi.Mode(), err)
	}
}
