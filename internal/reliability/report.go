// Package reliability collects what the reliability tests (issue 22) sent
// to the gateway and what came back, and writes it to RELIABILITY.md at
// the root of the module, so that every figure there comes from a run.
//
// Each test package holds one Report, adds a Table per test, and hands
// m.Run's result to Report.Write in its TestMain. Write does nothing
// unless AUTHGATE_RELIABILITY_REPORT is set; then, if every test passed,
// it replaces the package's section of RELIABILITY.md (several packages
// write theirs concurrently, under a file lock) and leaves the others.
package reliability

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvVar turns the report on.
const EnvVar = "AUTHGATE_RELIABILITY_REPORT"

// Command is the one command that regenerates RELIABILITY.md.
const Command = "AUTHGATE_RELIABILITY_REPORT=1 go test -count=1 -run '^TestReliability' ./proxy ./interop"

// Report is one test package's section of RELIABILITY.md. Its methods are
// safe for concurrent use.
type Report struct {
	name, title string
	mu          sync.Mutex
	tables      []*Table
}

// New returns the report of the section name (a stable key, e.g. "proxy")
// headed title.
func New(name, title string) *Report { return &Report{name: name, title: title} }

// Table is one test's findings: what it does, then one row per case.
type Table struct {
	test, about string
	header      []string
	mu          sync.Mutex
	rows        [][]string
	notes       []string
}

// Table starts t's table: about says what the test does, header names
// the columns of its rows.
func (r *Report) Table(t testing.TB, about string, header ...string) *Table {
	tb := &Table{test: t.Name(), about: about, header: header}
	r.mu.Lock()
	r.tables = append(r.tables, tb)
	r.mu.Unlock()
	return tb
}

// Row adds a row; each cell is formatted with %v (durations rounded to
// milliseconds).
func (tb *Table) Row(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		if d, ok := c.(time.Duration); ok {
			c = d.Round(time.Millisecond)
		}
		row[i] = strings.ReplaceAll(fmt.Sprint(c), "|", `\|`)
	}
	tb.mu.Lock()
	tb.rows = append(tb.rows, row)
	tb.mu.Unlock()
}

// Note adds a line under the table.
func (tb *Table) Note(format string, args ...any) {
	tb.mu.Lock()
	tb.notes = append(tb.notes, fmt.Sprintf(format, args...))
	tb.mu.Unlock()
}

// Write is for TestMain: it returns code (m.Run's result) unchanged, and
// when EnvVar is set and code is 0, first writes r's section of
// RELIABILITY.md.
func (r *Report) Write(code int) int {
	if os.Getenv(EnvVar) == "" {
		return code
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "reliability: tests failed; RELIABILITY.md section %q left as it was\n", r.name)
		return code
	}
	if err := r.write(); err != nil {
		fmt.Fprintln(os.Stderr, "reliability: writing RELIABILITY.md:", err)
		return 1
	}
	return code
}

// header opens RELIABILITY.md.
const header = `# Reliability

What the reliability suite (issue 22) sent to authgate and what came
back: faults of the authorization server, the session store and the
backends, for every grant; key rotation; refresh races; a soak. Every
figure below comes from a run of the tests, on loopback, with real Redis
processes and real HTTP servers; none is written by hand. Regenerate it
with

` + "```sh\n" + Command + "\n```\n" + `
(Redis and the patched toolchain as in README's Development section).
Each test also runs in CI (` + "`go test -race ./...`" + `), which checks
the same bounds without writing this file. Timings are wall-clock on the
machine that ran it, under -race if the command says so.
`

func (r *Report) write() error {
	path, err := reportPath()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	// Packages run as concurrent processes: one read-modify-write at a time.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sections := parseSections(old)
	sections[r.name] = r.render()
	var b bytes.Buffer
	b.WriteString(header)
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\n<!-- begin %s: written by its tests -->\n%s<!-- end %s -->\n", n, sections[n], n)
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(b.Bytes(), 0)
	return err
}

// parseSections reads the sections of an existing file by name.
func parseSections(b []byte) map[string]string {
	out := map[string]string{}
	s := string(b)
	for {
		i := strings.Index(s, "<!-- begin ")
		if i < 0 {
			return out
		}
		s = s[i+len("<!-- begin "):]
		name, rest, ok := strings.Cut(s, ":")
		if !ok {
			return out
		}
		_, body, ok := strings.Cut(rest, "-->\n")
		if !ok {
			return out
		}
		end := "<!-- end " + name + " -->"
		j := strings.Index(body, end)
		if j < 0 {
			return out
		}
		out[name] = body[:j]
		s = body[j+len(end):]
	}
}

// render is r's section: its title, then each table in test order.
func (r *Report) render() string {
	r.mu.Lock()
	tables := slices.Clone(r.tables)
	r.mu.Unlock()
	slices.SortStableFunc(tables, func(a, b *Table) int { return strings.Compare(a.test, b.test) })
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n", r.title)
	for _, tb := range tables {
		tb.mu.Lock()
		fmt.Fprintf(&b, "\n### %s\n\n%s\n\n", tb.test, tb.about)
		if len(tb.header) > 0 {
			b.WriteString("| " + strings.Join(tb.header, " | ") + " |\n")
			b.WriteString(strings.Repeat("|---", len(tb.header)) + "|\n")
			for _, row := range tb.rows {
				b.WriteString("| " + strings.Join(row, " | ") + " |\n")
			}
		}
		if len(tb.notes) > 0 {
			b.WriteString("\n")
			for _, n := range tb.notes {
				b.WriteString("- " + n + "\n")
			}
		}
		tb.mu.Unlock()
	}
	return b.String()
}

// reportPath is RELIABILITY.md beside the module's go.mod.
func reportPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "RELIABILITY.md"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
