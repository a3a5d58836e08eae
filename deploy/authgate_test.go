package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// TestMain removes the authgate binary that the tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// authgateBinary builds ./cmd/authgate of the repository (the parent
// module) once per test run.
func authgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "authgate-deploy-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "authgate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/authgate")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/authgate: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// authgateCheck runs `authgate check` on config with exactly env (and
// PATH) in the environment. Its output names keys, never values.
func authgateCheck(t *testing.T, config string, env map[string]string) (string, error) {
	t.Helper()
	bin := authgateBinary(t)
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "-config", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// checkGatewayConfigs runs every gateway config of s through authgate
// check, with dummy values of the right shape for its ${VAR}s.
func checkGatewayConfigs(t *testing.T, s *set) {
	t.Helper()
	var p problems
	gws := gateways(s, &p)
	if len(gws) == 0 {
		t.Errorf("%s: no authgate container found", s.Name)
	}
	for _, g := range gws {
		out, err := authgateCheck(t, g.Config, g.dummyEnv())
		if err != nil {
			t.Errorf("%s: authgate check of its config.yaml: %v\n%s", g.Ref, err, out)
		} else if !strings.Contains(out, ": OK (") {
			t.Errorf("%s: authgate check said %q, want OK", g.Ref, out)
		}
	}
}
