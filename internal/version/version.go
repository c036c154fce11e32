// Package version owns what payhsm says its version is (payhsm version, the
// ops listener's /version, the payhsm_build_info metric): a stamp set at
// build time (go build -ldflags "-X payhsm/internal/version.stamp=v1.2.3",
// which the Makefile sets from git describe), else the main module's version
// from the build information, with the VCS revision Go stamped into the
// build (when it did: -buildvcs) and the Go release.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// stamp, when set at build time, overrides the module version.
var stamp string

// Info is the version broken down (the /version document).
type Info struct {
	// Version is the stamp, or the module version ("(devel)" for a build of
	// a checkout without a stamp).
	Version string `json:"version"`
	// Revision is the VCS revision (12 hex digits) and Modified whether the
	// tree had uncommitted changes, when Go stamped them.
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

// Get is this binary's version.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	return describe(stamp, bi, ok)
}

// String is Get in one line: "v1.2.3 (commit 9eb961d73d51, go1.26.8)".
func String() string { return Get().String() }

// String is the version in one line.
func (i Info) String() string {
	var extra []string
	if i.Revision != "" {
		r := "commit " + i.Revision
		if i.Modified {
			r += " modified"
		}
		extra = append(extra, r)
	}
	if i.GoVersion != "" {
		extra = append(extra, i.GoVersion)
	}
	if len(extra) == 0 {
		return i.Version
	}
	return i.Version + " (" + strings.Join(extra, ", ") + ")"
}

func describe(stamp string, bi *debug.BuildInfo, ok bool) Info {
	i := Info{Version: stamp}
	if !ok || bi == nil {
		if i.Version == "" {
			i.Version = "(unknown)"
		}
		i.GoVersion = runtime.Version()
		return i
	}
	if i.Version == "" {
		i.Version = bi.Main.Version // a tagged version or pseudo-version; "(devel)" for a plain checkout build
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	if len(i.Revision) > 12 {
		i.Revision = i.Revision[:12]
	}
	i.GoVersion = bi.GoVersion
	return i
}
