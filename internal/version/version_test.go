package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name  string
		stamp string
		bi    *debug.BuildInfo
		ok    bool
		want  string
	}{
		{"no build info", "", nil, false, "(unknown) (" + runtime.Version() + ")"},
		{"stamp, no build info", "v1.2.3", nil, false, "v1.2.3 (" + runtime.Version() + ")"},
		{"checkout build", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "(devel) (go1.26.8)"},
		{"vcs", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260101000000-9eb961d73d51"},
			Settings: vcs("9eb961d73d519537f6f24740e999463ce7de2a65", "false")}, true,
			"v0.0.0-20260101000000-9eb961d73d51 (commit 9eb961d73d51, go1.26.8)"},
		{"vcs modified", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("9eb961d73d519537f6f24740e999463ce7de2a65", "true")}, true, "(devel) (commit 9eb961d73d51 modified, go1.26.8)"},
		{"stamp wins", "v1.2.3", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("abc", "false")}, true, "v1.2.3 (commit abc, go1.26.8)"},
		{"git describe stamp", "v0.3.0-12-g9eb961d-dirty", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			"v0.3.0-12-g9eb961d-dirty (go1.26.8)"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, true, "v1.4.0"},
		{"empty module version", "", &debug.BuildInfo{}, true, "(devel)"},
	}
	for _, tc := range tests {
		if got := describe(tc.stamp, tc.bi, tc.ok).String(); got != tc.want {
			t.Errorf("%s: describe = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestGet: the test binary has build information, so the version is never
// "(unknown)" and names the Go release.
func TestGet(t *testing.T) {
	t.Parallel()
	i := Get()
	if i.Version == "" || i.Version == "(unknown)" || i.GoVersion == "" {
		t.Errorf("Get() = %+v", i)
	}
}
