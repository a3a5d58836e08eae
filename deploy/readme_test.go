package deploy

import (
	"bufio"
	"bytes"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// snippet is a fenced code block of README.md.
type snippet struct {
	Line int    // of the opening fence
	Lang string // after the fence
	// Check is what the marker line above the fence says
	// (<!-- checked: ... -->), or "".
	Check string
	Text  string
}

var checkedMarker = regexp.MustCompile(`^<!-- checked: (.+) -->$`)

func readmeSnippets(t *testing.T) []snippet {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []snippet
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(fence, "```") {
			continue
		}
		sn := snippet{Line: i + 1, Lang: strings.TrimPrefix(fence, "```")}
		if i > 0 {
			if m := checkedMarker.FindStringSubmatch(strings.TrimSpace(lines[i-1])); m != nil {
				sn.Check = m[1]
			}
		}
		indent := lines[i][:strings.Index(lines[i], "```")]
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		sn.Text = strings.Join(body, "\n") + "\n"
		out = append(out, sn)
	}
	return out
}

// TestReadmeSnippets checks the README's YAML snippets: each says how it is
// checked, and is.
func TestReadmeSnippets(t *testing.T) {
	for _, sn := range readmeSnippets(t) {
		if sn.Lang != "yaml" {
			continue
		}
		switch {
		case sn.Check == "":
			t.Errorf("README.md:%d: a yaml snippet without <!-- checked: ... --> above it", sn.Line)
		case sn.Check == "helm values":
			checkReadmeValues(t, sn)
		case strings.HasPrefix(sn.Check, "subset of "):
			file := strings.TrimPrefix(sn.Check, "subset of ")
			if !subsetOfFile(t, sn.Text, file) {
				t.Errorf("README.md:%d: the snippet is not what %s says:\n%s", sn.Line, file, sn.Text)
			}
		default:
			t.Errorf("README.md:%d: unknown check %q", sn.Line, sn.Check)
		}
	}
}

// checkReadmeValues renders the chart with the README's values, checks the
// objects and runs the config, with the rendered Secret, through authgate
// check.
func checkReadmeValues(t *testing.T, sn snippet) {
	r, err := renderChart(t, "authgate", "authgate", values(t, sn.Text))
	if err != nil {
		t.Errorf("README.md:%d: rendering the chart with these values: %v", sn.Line, err)
		return
	}
	for _, line := range checkSet(r.set).sorted() {
		t.Errorf("README.md:%d: %s", sn.Line, line)
	}
	checkGatewayConfigs(t, r.set)
	var p problems
	for _, g := range gateways(r.set, &p) {
		env, _ := g.secretEnv(r.set)
		if out, err := authgateCheck(t, g.Config, env); err != nil {
			t.Errorf("README.md:%d: with the rendered Secret: authgate check: %v\n%s", sn.Line, err, out)
		}
	}
}

// subsetOfFile reports whether the YAML text is contained in one document
// of file (every key with an equal value; lists equal as a whole).
func subsetOfFile(t *testing.T, text, file string) bool {
	var want map[string]any
	if err := yaml.Unmarshal([]byte(text), &want); err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := yaml.Unmarshal(doc, &got); err == nil && subset(want, got) {
			return true
		}
	}
}

func subset(want, got any) bool {
	wm, ok := want.(map[string]any)
	if !ok {
		return reflect.DeepEqual(want, got)
	}
	gm, ok := got.(map[string]any)
	if !ok {
		return false
	}
	for k, v := range wm {
		if !subset(v, gm[k]) {
			return false
		}
	}
	return true
}

// TestReadmeLinks: every deploy/... path and every relative link in the
// README exists.
func TestReadmeLinks(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, m := range regexp.MustCompile("(?:^|[\\s`(])(deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_/])").FindAllStringSubmatch(text, -1) {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("README.md names %s, which does not exist", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`).FindAllStringSubmatch(text, -1) {
		if strings.Contains(m[1], "://") {
			continue
		}
		if _, err := os.Stat(m[1]); err != nil {
			t.Errorf("README.md links %s, which does not exist", m[1])
		}
	}
}

// TestReadmeSecretCommands: each `kubectl create secret generic` in the
// README sets exactly the keys the manifests read from that Secret.
func TestReadmeSecretCommands(t *testing.T) {
	manifestSecrets := map[string][]string{} // "ns/name" → keys
	for name := range scenarios {
		for _, o := range loadScenario(t, name).all("Secret") {
			sec := o.Typed.(*corev1.Secret)
			keys := slices.Collect(maps.Keys(sec.StringData))
			keys = append(keys, slices.Collect(maps.Keys(sec.Data))...)
			manifestSecrets[o.Meta.Namespace+"/"+o.Meta.Name] = keys
		}
	}
	cmd := regexp.MustCompile(`kubectl -n (\S+) create secret generic (\S+)(.*)`)
	key := regexp.MustCompile(`--from-literal=([A-Za-z_]+)=`)
	found := 0
	for _, sn := range readmeSnippets(t) {
		if sn.Lang != "sh" {
			continue
		}
		for _, c := range strings.Split(strings.ReplaceAll(sn.Text, "\\\n", " "), "\n") {
			m := cmd.FindStringSubmatch(c)
			if m == nil {
				continue
			}
			found++
			var keys []string
			for _, k := range key.FindAllStringSubmatch(m[3], -1) {
				keys = append(keys, k[1])
			}
			sort.Strings(keys)
			want, ok := manifestSecrets[m[1]+"/"+m[2]]
			sort.Strings(want)
			if !ok {
				t.Errorf("README.md:%d: secret %s/%s is not one the manifests read", sn.Line, m[1], m[2])
			} else if !slices.Equal(keys, want) {
				t.Errorf("README.md:%d: secret %s/%s with keys %v, want %v", sn.Line, m[1], m[2], keys, want)
			}
		}
	}
	if found == 0 {
		t.Error("README.md: no kubectl create secret command found (the pattern may be out of date)")
	}
}
