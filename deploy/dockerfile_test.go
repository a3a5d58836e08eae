package deploy

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is deploy/Dockerfile's instructions, continuation lines
// joined, comments dropped.
func dockerfile(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(l)
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

// instruction returns the arguments of the Dockerfile's instructions named
// name, in order.
func instruction(lines []string, name string) []string {
	var out []string
	for _, l := range lines {
		if k, v, _ := strings.Cut(l, " "); strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// versionAtLeast compares dotted versions: "1.27.3" >= "1.26.8".
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

func TestDockerfile(t *testing.T) {
	lines := dockerfile(t)
	froms := instruction(lines, "FROM")
	if len(froms) != 2 {
		t.Fatalf("FROM: got %v, want a build stage and a runtime stage", froms)
	}
	// The builder's Go is the toolchain CI tests and vets with.
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^export GOTOOLCHAIN=go(\S+)$`).FindSubmatch(ci)
	if m == nil {
		t.Fatal(".ci/run: no export GOTOOLCHAIN=goX.Y.Z line")
	}
	toolchain := string(m[1])
	builder, _, _ := strings.Cut(froms[0], " ")
	if want := "golang:" + toolchain; builder != want {
		t.Errorf("build stage FROM %s, want %s (the toolchain .ci/run tests with)", builder, want)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if gm := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod); gm == nil || !versionAtLeast(toolchain, string(gm[1])) {
		t.Errorf("toolchain %s is older than go.mod's go line %q", toolchain, gm)
	}
	if !strings.HasPrefix(froms[1], "gcr.io/distroless/static") || !strings.HasSuffix(froms[1], ":nonroot") {
		t.Errorf("runtime stage FROM %s, want distroless static, nonroot", froms[1])
	}
	if !slices.ContainsFunc(instruction(lines, "RUN"), func(r string) bool {
		return strings.Contains(r, "CGO_ENABLED=0") && strings.Contains(r, "./cmd/authgate")
	}) {
		t.Error("no RUN CGO_ENABLED=0 go build ./cmd/authgate: the binary must be static for distroless/static")
	}
	if got := instruction(lines, "USER"); !slices.Equal(got, []string{"65532:65532"}) {
		t.Errorf("USER %v, want 65532:65532 (numeric, so that runAsNonRoot can be verified)", got)
	}
	if got := instruction(lines, "ENV"); !slices.Contains(got, "AUTHGATE_CONFIG="+defaultConfigPath) {
		t.Errorf("ENV %v, want AUTHGATE_CONFIG=%s (where the manifests mount the config)", got, defaultConfigPath)
	}
	if got := instruction(lines, "ENTRYPOINT"); !slices.Equal(got, []string{`["/authgate"]`}) {
		t.Errorf("ENTRYPOINT %v, want [\"/authgate\"]", got)
	}
	expose := instruction(lines, "EXPOSE")

	// The manifests and the chart run the image as its user, on its port.
	sets := []*set{}
	for name := range scenarios {
		sets = append(sets, loadScenario(t, name))
	}
	r, err := renderChart(t, "authgate", "authgate", nil)
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, r.set)
	for _, s := range sets {
		var p problems
		for _, g := range gateways(s, &p) {
			var uid *int64
			if sc := g.W.Template.Spec.SecurityContext; sc != nil {
				uid = sc.RunAsUser
			}
			if sc := g.C.SecurityContext; sc != nil && sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if uid == nil || *uid != 65532 {
				t.Errorf("%s: runAsUser %v, want the image's 65532", g.Ref, uid)
			}
			for _, cp := range g.C.Ports {
				if cp.Name == "http" && !slices.Contains(expose, strconv.Itoa(int(cp.ContainerPort))) {
					t.Errorf("%s: port %d, but the image EXPOSEs %v", g.Ref, cp.ContainerPort, expose)
				}
			}
		}
	}
}

// TestDockerignore: the build context leaves out what the image does not
// need (the repository's history, node_modules) and keeps the module.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.Trim(l, "/"))
		}
	}
	for _, want := range []string{".git", "**/node_modules"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore lacks %s (got %v)", want, patterns)
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/authgate", "proxy", "session", "upstream"} {
		for _, p := range patterns {
			if strings.HasPrefix(p, "!") {
				continue
			}
			if p == need || strings.HasPrefix(need, p+"/") || p == "*" || p == "**" {
				t.Errorf(".dockerignore pattern %q leaves out %s, which the build needs", p, need)
			}
		}
	}
}
