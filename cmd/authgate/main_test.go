package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelp: every way of asking for help prints the usage to stdout and
// exits 0; a mistake exits 2 with a hint on stderr. (`authgate -h` once
// printed serve's flags and exited 2, as did every sub-command's -h.)
func TestHelp(t *testing.T) {
	t.Setenv("AUTHGATE_CONFIG", "")
	for _, tc := range []struct {
		args []string
		code int
		// out is in stdout for code 0, in stderr otherwise.
		out []string
	}{
		{[]string{"-h"}, 0, []string{"Usage:", "authgate check [-online] -config FILE", "authgate demo", "authgate version", "authgate help"}},
		{[]string{"--help"}, 0, []string{"Usage:", "authgate [serve] -config FILE"}},
		{[]string{"-help"}, 0, []string{"Usage:"}},
		{[]string{"help"}, 0, []string{"Usage:"}},
		{[]string{"serve", "-h"}, 0, []string{"usage: authgate [serve] -config FILE", "-config string"}},
		{[]string{"-config", "x.yaml", "-h"}, 0, []string{"usage: authgate [serve] -config FILE"}},
		{[]string{"check", "-h"}, 0, []string{"usage: authgate check [-online] -config FILE", "-online"}},
		{[]string{"check", "--help"}, 0, []string{"usage: authgate check"}},
		{[]string{"demo", "-h"}, 0, []string{"usage: authgate demo [-listen ADDR]", "-listen string"}},
		{[]string{"version", "-h"}, 0, []string{"usage: authgate version"}},
		{[]string{"revoke", "-h"}, 0, []string{"usage: authgate revoke -config FILE -sub USER", "-sub string"}},
		{[]string{"revoke", "-config", "x.yaml"}, 2, []string{"name the sessions to end with -sub USER"}},
		{[]string{"help", "check"}, 0, []string{"usage: authgate check [-online] -config FILE", "-online"}},
		{[]string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`, "Run 'authgate help'"}},
		{[]string{"chek"}, 2, []string{`unknown command "chek"; did you mean "check"?`}},
		{[]string{"check", "-nope"}, 2, []string{"authgate check: flag provided but not defined: -nope", "Run 'authgate check -h'"}},
		{[]string{"-nope"}, 2, []string{"authgate serve: flag provided but not defined: -nope"}},
		{[]string{"serve", "-config", "x.yaml", "extra"}, 2, []string{`unexpected argument "extra"`}},
		{[]string{"help", "nope"}, 2, []string{`authgate help: unknown command "nope"`}},
		{[]string{"version", "now"}, 2, []string{`unexpected argument "now"`}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		where, other := stdout.String(), stderr.String()
		if tc.code != 0 {
			where, other = other, where
		}
		if code != tc.code {
			t.Errorf("authgate %v: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, w := range tc.out {
			if !strings.Contains(where, w) {
				t.Errorf("authgate %v: output lacks %q:\n%s", tc.args, w, where)
			}
		}
		if other != "" {
			t.Errorf("authgate %v: unexpected output on the other stream: %q", tc.args, other)
		}
	}
}

// TestVersionLine: -ldflags wins, else the module version the go command
// stamped; the VCS revision and the Go version come along.
func TestVersionLine(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	stamped := &debug.BuildInfo{
		GoVersion: "go1.27.3",
		Main:      debug.Module{Path: "github.com/authgate/authgate", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0839b74e493de669283834b6afc110f81e1eeeef"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	devel := &debug.BuildInfo{GoVersion: "go1.27.3", Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		want          string
	}{
		{"go install of a tag", "", stamped, "v1.4.0 (commit 0839b74e493d, modified; go1.27.3 " + plat + ")"},
		{"ldflags wins", "v2.0.0", stamped, "v2.0.0 (commit 0839b74e493d, modified; go1.27.3 " + plat + ")"},
		{"the Dockerfile's default", "dev", stamped, "v1.4.0 (commit 0839b74e493d, modified; go1.27.3 " + plat + ")"},
		{"no VCS, no version", "", devel, "dev (go1.27.3 " + plat + ")"},
		{"no build info", "", nil, "dev (" + runtime.Version() + " " + plat + ")"},
	} {
		if got := versionLine(tc.ldflags, tc.bi); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestBuiltBinary runs the real binary: help and errors exit as
// documented, and `version` reports what the go command stamped into it
// (read back with debug/buildinfo) or the -ldflags version.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "authgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exe := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), stdout.String(), stderr.String()
		case err != nil:
			t.Fatal(err)
		}
		return 0, stdout.String(), stderr.String()
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "Usage:"},
		{[]string{"--help"}, 0, "Usage:"},
		{[]string{"check", "-h"}, 0, "usage: authgate check"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"check", "-nope"}, 2, "flag provided but not defined"},
		{[]string{"check"}, 2, "no config file"},
	} {
		code, stdout, stderr := exe(tc.args...)
		out := stdout
		if tc.code != 0 {
			out = stderr
		}
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("authgate %v: exit %d, stdout %q, stderr %q; want exit %d with %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, stdout, _ := exe("version"); stdout != "authgate "+versionLine("", bi)+"\n" || !strings.Contains(stdout, bi.GoVersion) {
		t.Errorf("version: got %q, want %q", stdout, "authgate "+versionLine("", bi))
	}
	tagged := filepath.Join(dir, "authgate-tagged")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7", "-o", tagged, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(tagged, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "authgate v9.8.7 (") || !strings.Contains(string(out), bi.GoVersion) {
		t.Errorf("version of a -ldflags build: got %q (%v), want authgate v9.8.7 with the Go version", out, err)
	}
}
