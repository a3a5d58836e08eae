package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// revokeTimeout bounds a revocation run: the store and the authorization
// servers' revocation endpoints.
const revokeTimeout = 30 * time.Second

// revokeFlags is `authgate revoke -config FILE -sub S [-sid ID]
// [-upstream NAME]`: it ends, through the shared session store, the
// sessions the operator names on every replica, and revokes their refresh
// tokens, as POST /admin/revoke does.
func revokeFlags(fs *flag.FlagSet) func(context.Context, io.Writer, io.Writer) int {
	path := configFlag(fs)
	sub := fs.String("sub", "", "end every session of this user (the ID token's sub)")
	sid := fs.String("sid", "", "end the sessions of this login session at the server (the ID token's sid)")
	up := fs.String("upstream", "", "only at this upstream (\"default\" for upstream:); default: every configured server")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		return revoke(ctx, *path, *sub, *sid, *up, stdout, stderr)
	}
}

func revoke(ctx context.Context, path, sub, sid, up string, stdout, stderr io.Writer) int {
	if sub == "" && sid == "" {
		fmt.Fprintln(stderr, "authgate revoke: name the sessions to end with -sub USER and/or -sid SID\nRun 'authgate revoke -h' for its flags.")
		return 2
	}
	cfg, ok := loadConfigFor("revoke", path, stderr)
	if !ok {
		return 2
	}
	if cfg.Session.Store != "redis" {
		fmt.Fprintf(stderr, "authgate revoke: session.store is %s: the sessions live in the running gateway's memory, out of this command's reach. Call POST /admin/revoke on its metrics_listen instead (set admin.token).\n", cfg.Session.Store)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := build(cfg, log, io.Discard, nil)
	if err != nil {
		fmt.Fprintf(stderr, "authgate revoke: %v\n", err)
		return 2
	}
	defer g.closer()
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	n, err := g.server.Revoke(ctx, up, sub, sid)
	if err != nil {
		fmt.Fprintf(stderr, "authgate revoke: %v (%d sessions ended before it)\n", err, n)
		return 1
	}
	fmt.Fprintf(stdout, "ended %d sessions on every replica\n", n)
	return 0
}
