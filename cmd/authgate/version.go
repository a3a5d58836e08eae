package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…". Empty
// or "dev" (the Dockerfile's default) means unset: the module version the
// go command stamped into the binary is used instead.
var version string

func versionFlags(*flag.FlagSet) func(context.Context, io.Writer, io.Writer) int {
	return func(_ context.Context, stdout, _ io.Writer) int {
		bi, _ := debug.ReadBuildInfo()
		fmt.Fprintln(stdout, "authgate "+versionLine(version, bi))
		return 0
	}
}

// buildVersion is the version alone, for the start-up log line.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	v, _ := versionParts(version, bi)
	return v
}

// versionLine describes the build: the version (-ldflags, else the
// module's as the go command stamped it), the VCS revision and whether
// the tree had changes, and the Go version, e.g.
// "v1.4.0 (commit 0839b74c1a2e, modified; go1.27.3 linux/amd64)".
// bi may be nil (a binary built without module support).
func versionLine(ldflags string, bi *debug.BuildInfo) string {
	v, details := versionParts(ldflags, bi)
	return v + " (" + strings.Join(details, "; ") + ")"
}

func versionParts(ldflags string, bi *debug.BuildInfo) (string, []string) {
	v := ldflags
	if v == "dev" {
		v = ""
	}
	goVersion := runtime.Version()
	var commit string
	if bi != nil {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
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
		if rev != "" {
			commit = "commit " + rev[:min(len(rev), 12)]
			if modified == "true" {
				commit += ", modified"
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	var details []string
	if commit != "" {
		details = append(details, commit)
	}
	details = append(details, goVersion+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return v, details
}
