package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// revokeTimeout bounds a revocation run: the store and the authorization
// servers' revocation endpoints.
const revokeTimeout = 30 * time.Second

// revokeCommand is `authgate revoke -config FILE -sub S [-sid ID]
// [-upstream NAME]`: it ends, through the shared session store, the
// sessions the operator names on every replica, and revokes their refresh
// tokens, as POST /admin/revoke does.
func revokeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("authgate revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("AUTHGATE_CONFIG"), "path of the gateway's YAML config file (default $AUTHGATE_CONFIG)")
	sub := fs.String("sub", "", "end every session of this user (the ID token's sub)")
	sid := fs.String("sid", "", "end the sessions of this login session at the server (the ID token's sid)")
	up := fs.String("upstream", "", "only at this upstream (\"default\" for upstream:); default: every configured server")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: authgate revoke -config FILE -sub USER [-sid SID] [-upstream NAME]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *path == "" || *sub == "" && *sid == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "authgate: invalid config %s:\n%s\n", *path, indent(err.Error()))
		return 2
	}
	if cfg.Session.Store != "redis" {
		fmt.Fprintf(stderr, "authgate revoke: session.store is %s: the sessions live in the running gateway's memory, out of this command's reach. Call POST /admin/revoke on its metrics_listen instead (set admin.token).\n", cfg.Session.Store)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := build(cfg, log, io.Discard)
	if err != nil {
		fmt.Fprintf(stderr, "authgate revoke: %v\n", err)
		return 2
	}
	defer g.closer()
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	n, err := g.server.Revoke(ctx, *up, *sub, *sid)
	if err != nil {
		fmt.Fprintf(stderr, "authgate revoke: %v (%d sessions ended before it)\n", err, n)
		return 1
	}
	fmt.Fprintf(stdout, "ended %d sessions on every replica\n", n)
	return 0
}
