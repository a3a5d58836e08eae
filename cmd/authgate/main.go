// Command authgate is an OAuth 2.0 reverse-proxy auth gateway.
//
// Usage:
//
//	authgate [serve] -config FILE   run the gateway (also AUTHGATE_CONFIG)
//	authgate check -config FILE     validate a config file and exit
//	authgate demo                   everything on this machine, for a first look
//	authgate revoke -config FILE -sub USER   end a user's sessions fleet-wide
//	authgate version                print the version
//
// Exit status: 0 on success, 2 for a usage or configuration error, 1 for a
// failure while running.
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
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/proxy"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "check":
		fs := flag.NewFlagSet("authgate "+cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", os.Getenv("AUTHGATE_CONFIG"), "path of the YAML config file (default $AUTHGATE_CONFIG)")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if *path == "" {
			fmt.Fprintf(stderr, "authgate %s: no config file: pass -config FILE or set AUTHGATE_CONFIG (see config.example.yaml, or try `authgate demo`)\n", cmd)
			return 2
		}
		cfg, err := loadConfig(*path)
		if err != nil {
			fmt.Fprintf(stderr, "authgate: invalid config %s:\n%s\n", *path, indent(err.Error()))
			return 2
		}
		if cmd == "check" {
			noun := "routes"
			if len(cfg.Routes) == 1 {
				noun = "route"
			}
			fmt.Fprintf(stdout, "%s: OK (%d %s)\n", *path, len(cfg.Routes), noun)
			return 0
		}
		logOut := newBufferedLog(stderr)
		log := newLogger(logOut, cfg.Log)
		routeRedisLog(log)
		err = serve(ctx, cfg, log, logOut)
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
	case "demo":
		fs := flag.NewFlagSet("authgate demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		listen := fs.String("listen", "127.0.0.1:4180", "address of the gateway")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if err := demo(ctx, *listen, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "authgate demo: %v\n", err)
			return 1
		}
		return 0
	case "revoke":
		return revokeCommand(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "authgate %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "authgate: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

const usage = `usage:
  authgate [serve] -config FILE   run the gateway (or set AUTHGATE_CONFIG)
  authgate check -config FILE     validate a config file and exit
  authgate demo [-listen ADDR]    run a complete local demo (no Redis needed)
  authgate revoke -config FILE -sub USER [-sid SID] [-upstream NAME]
                                  end a user's sessions on every replica
  authgate version                print the version
`

func indent(s string) string {
	out := "  "
	for _, r := range s {
		out += string(r)
		if r == '\n' {
			out += "  "
		}
	}
	return out
}

// newLogger builds the process logger.
func newLogger(w io.Writer, c logConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
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
