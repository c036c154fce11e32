package main

import (
	"runtime/debug"
	"strings"
)

// version, when set at build time (go build -ldflags "-X main.version=v1.2.3"),
// overrides the version read from the build information.
var version string

// Version is this binary's version: the -ldflags stamp if any, else the main
// module's version from the build information, with the VCS revision Go
// stamped at build time (and "modified" for a build from an uncommitted tree).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	return describe(version, bi, ok)
}

func describe(stamp string, bi *debug.BuildInfo, ok bool) string {
	v := stamp
	if !ok || bi == nil {
		if v == "" {
			v = "(unknown)"
		}
		return v
	}
	if v == "" {
		v = bi.Main.Version // a tagged version or pseudo-version; "(devel)" for a plain checkout build
	}
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	var extra []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		r := "commit " + rev
		if modified == "true" {
			r += " modified"
		}
		extra = append(extra, r)
	}
	if bi.GoVersion != "" {
		extra = append(extra, bi.GoVersion)
	}
	if len(extra) > 0 {
		v += " (" + strings.Join(extra, ", ") + ")"
	}
	return v
}
