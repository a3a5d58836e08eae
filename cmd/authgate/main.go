// Command authgate is an OAuth 2.0 reverse-proxy auth gateway.
//
// Usage:
//
//	authgate [serve] -config FILE             run the gateway (also AUTHGATE_CONFIG)
//	authgate check [-online] -config FILE     validate a config file and exit
//	authgate demo [-listen ADDR]              everything on this machine, for a first look
//	authgate revoke -config FILE -sub USER    end a user's sessions fleet-wide
//	authgate version                          print the version
//	authgate help [COMMAND]                   print the usage, or a command's
//
// Exit status: 0 on success (and for -h), 2 for a usage or configuration
// error, 1 for a failure while running or a failed online check.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the shutdown runs; a second one ends the
		// process at once (the default action, restored by stop).
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is a sub-command: its flags, and what it does with them.
type command struct {
	name, synopsis, summary string
	// flags declares the command's flags on fs and returns its action,
	// which runs after a successful parse and returns the exit status.
	flags func(fs *flag.FlagSet) func(ctx context.Context, stdout, stderr io.Writer) int
}

// commands are the sub-commands, in the order the usage lists them.
var commands = []command{
	{"serve", "authgate [serve] -config FILE", "run the gateway (or set AUTHGATE_CONFIG)", serveFlags},
	{"check", "authgate check [-online] -config FILE", "validate a config file; -online also contacts the authorization server and the session store", checkFlags},
	{"demo", "authgate demo [-listen ADDR]", "run a complete local demo (no Redis needed)", demoFlags},
	{"revoke", "authgate revoke -config FILE -sub USER [-sid SID] [-upstream NAME]", "end a user's sessions on every replica", revokeFlags},
	{"version", "authgate version", "print the version, VCS revision and Go version", versionFlags},
	{"help", "authgate help [COMMAND]", "print this usage, or a command's flags", nil},
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelpFlag(args[0]) {
		fmt.Fprint(stdout, usage())
		return 0
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		return help(args, stdout, stderr)
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "authgate: unknown command %q%s\nRun 'authgate help' for the commands.\n", name, suggestCommand(name))
		return 2
	}
	fs := flag.NewFlagSet("authgate "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and -h are printed below, each to its stream
	action := cmd.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(stdout, cmd, fs)
			return 0
		}
		fmt.Fprintf(stderr, "authgate %s: %v\nRun 'authgate %s -h' for its flags.\n", name, err, name)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "authgate %s: unexpected argument %q\nRun 'authgate %s -h' for its flags.\n", name, fs.Arg(0), name)
		return 2
	}
	return action(ctx, stdout, stderr)
}

func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name && commands[i].flags != nil {
			return &commands[i]
		}
	}
	return nil
}

// help serves `authgate help [COMMAND]`.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage())
		return 0
	}
	cmd := lookup(args[0])
	if cmd == nil || len(args) > 1 {
		fmt.Fprintf(stderr, "authgate help: unknown command %q%s\nRun 'authgate help' for the commands.\n", strings.Join(args, " "), suggestCommand(args[0]))
		return 2
	}
	fs := flag.NewFlagSet("authgate "+cmd.name, flag.ContinueOnError)
	cmd.flags(fs)
	printCommandUsage(stdout, cmd, fs)
	return 0
}

// usage is the whole command line, for `authgate -h` and `authgate help`.
func usage() string {
	var b strings.Builder
	b.WriteString("authgate is an OAuth 2.0 reverse-proxy auth gateway.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-40s %s\n", c.synopsis, c.summary)
	}
	b.WriteString("\nRun 'authgate COMMAND -h' for a command's flags. Exit status: 0 on success,\n" +
		"2 for a usage or configuration error, 1 for a failure while running or a\nfailed online check.\n")
	return b.String()
}

func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s.\n", cmd.synopsis, upperFirst(cmd.summary))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// suggestCommand names the command closest to a mistyped one.
func suggestCommand(name string) string {
	best, bestD := "", 3
	for _, c := range commands {
		if d := distance(name, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// configFlag declares -config, defaulting to $AUTHGATE_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv("AUTHGATE_CONFIG"), "path of the YAML config file (default $AUTHGATE_CONFIG)")
}

// loadConfigFor loads the config file of a command, printing the problem
// itself: ok=false means exit 2.
func loadConfigFor(name, path string, stderr io.Writer) (*fileConfig, bool) {
	if path == "" {
		fmt.Fprintf(stderr, "authgate %s: no config file: pass -config FILE or set AUTHGATE_CONFIG (see config.example.yaml, or try `authgate demo`)\n", name)
		return nil, false
	}
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "authgate: invalid config %s:\n%s\n", path, indent(err.Error()))
		return nil, false
	}
	return cfg, true
}

func serveFlags(fs *flag.FlagSet) func(context.Context, io.Writer, io.Writer) int {
	path := configFlag(fs)
	return func(ctx context.Context, _, stderr io.Writer) int {
		cfg, ok := loadConfigFor("serve", *path, stderr)
		if !ok {
			return 2
		}
		logOut := newBufferedLog(stderr)
		level := new(slog.LevelVar)
		level.Set(levelOf(cfg.Log.Level))
		log := newLoggerAt(logOut, cfg.Log, level)
		routeRedisLog(log)
		err := serve(ctx, cfg, log, logOut, serveOptions{path: *path, level: level})
		logOut.Close()
		if err != nil {
			var ce *configError
			fmt.Fprintf(stderr, "authgate: %v\n", err)
			if errors.As(err, &ce) {
				return 2
			}
			return 1
		}
		return 0
	}
}

func demoFlags(fs *flag.FlagSet) func(context.Context, io.Writer, io.Writer) int {
	listen := fs.String("listen", "127.0.0.1:4180", "address of the gateway (127.0.0.1:0 picks a free port)")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		if err := demo(ctx, *listen, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "authgate demo: %v\n", err)
			return 1
		}
		return 0
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// newLogger builds the process logger.
func newLogger(w io.Writer, c logConfig) *slog.Logger {
	return newLoggerAt(w, c, levelOf(c.Level))
}

// newLoggerAt is newLogger at level (a *slog.LevelVar a reload changes).
func newLoggerAt(w io.Writer, c logConfig, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(proxy.NewLogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(proxy.NewLogHandler(slog.NewTextHandler(w, opts)))
}

// redisLog sends go-redis's internal messages (pool dial failures) to the
// process log instead of the standard logger. go-redis keeps its logger in a
// package variable, so main, which owns the process, sets it once.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "redis")
}

func routeRedisLog(log *slog.Logger) { redis.SetLogger(redisLog{log}) }
