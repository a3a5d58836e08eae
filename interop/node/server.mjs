// server.mjs runs the npm oidc-provider (panva's, OpenID Certified) for
// authgate's interop tests, configured by a JSON document on stdin:
//
//   { "clients": [...], "accounts": [...], "ttl": {...}, "features": {...},
//     "claims": {...}, "scopes": [...], "requireIdTokenHint": false,
//     "resourceServers": {...}, "grants": [...], "extra": {...} }
//
// It listens on 127.0.0.1 with a port the kernel picks, builds the issuer
// from it, and prints one line {"issuer": "..."} when ready. It exits
// when stdin closes, so a test that dies leaves nothing behind.
//
// Deviations from oidc-provider's stock settings, each needed to test
// over loopback http without a person at the keyboard (see ../README.md):
// fixed cookie keys; custom interactions (a plain login form, consent
// granted for what was asked) instead of devInteractions; a plainer
// logout confirmation page; the standard email/profile claims and a
// groups scope declared (stock declares only openid).
import http from 'node:http';
import { Provider, errors } from 'oidc-provider';

const input = await new Promise((resolve, reject) => {
  let data = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    data += chunk;
    const nl = data.indexOf('\n');
    if (nl >= 0) resolve(data.slice(0, nl));
  });
  process.stdin.on('end', () => resolve(data));
  process.stdin.on('error', reject);
});
const cfg = JSON.parse(input);
// The test owns our lifetime: stdin closing means it is gone.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));

const accounts = new Map((cfg.accounts ?? []).map((a) => [a.sub, a]));

function findLogin(login) {
  for (const a of accounts.values()) {
    if (a.sub === login || a.claims?.preferred_username === login) return a;
  }
  return undefined;
}

function isObject(v) {
  return v && typeof v === 'object' && !Array.isArray(v);
}

// merge deep-merges plain objects; anything else in b replaces a.
function merge(a, b) {
  if (!isObject(a) || !isObject(b)) return b === undefined ? a : b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = merge(a[k], v);
  return out;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// TTLs in seconds, as numbers, from the test.
const ttl = {};
for (const [k, v] of Object.entries(cfg.ttl ?? {})) ttl[k] = v;

// Resource servers for RFC 8707 resource indicators, by indicator:
// { scope, accessTokenFormat: "jwt" | "opaque", audience? }.
const resourceServers = cfg.resourceServers ?? {};

const features = merge({
  devInteractions: { enabled: false },
  resourceIndicators: {
    enabled: true,
    async getResourceServerInfo(ctx, indicator) {
      const rs = resourceServers[indicator];
      if (!rs) throw new errors.InvalidTarget();
      const info = { scope: rs.scope ?? '', accessTokenFormat: rs.accessTokenFormat ?? 'jwt', audience: rs.audience ?? indicator };
      if (info.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: 'RS256' } };
      return info;
    },
  },
  revocation: { enabled: true },
  rpInitiatedLogout: {
    enabled: true,
    async logoutSource(ctx, form) {
      const p = ctx.oidc.params;
      if (cfg.requireIdTokenHint && p.post_logout_redirect_uri && !p.id_token_hint) {
        // As some servers do: a 500 page, the user still signed in.
        ctx.status = 500;
        ctx.type = 'html';
        ctx.body = '<!DOCTYPE html><title>Error</title><h1>id_token_hint is required</h1>';
        return;
      }
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>Sign out</title><h1>Sign out?</h1>${form}`
        + '<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>';
    },
  },
}, cfg.features ?? {});

const claims = cfg.claims ?? {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'preferred_username', 'given_name', 'family_name'],
  groups: ['groups'],
};

const configuration = merge({
  clients: cfg.clients ?? [],
  claims,
  scopes: cfg.scopes ?? ['openid', 'offline_access'],
  features,
  ttl,
  cookies: { keys: ['authgate-interop-cookie-key-0123456789'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const a = accounts.get(sub);
    if (!a) return undefined;
    return { accountId: sub, async claims() { return { sub, ...a.claims }; } };
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Error</title><h1>oidc-provider error</h1><pre id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</pre>`;
  },
}, cfg.extra ?? {});

// Extension point for grants oidc-provider does not have built in: each
// name in cfg.grants maps to a module under ./grants/ exporting
// register(provider, cfg, accounts) (the password grant of the ROPC tests
// goes there, through provider.registerGrantType).
const grantModules = [];
for (const name of cfg.grants ?? []) {
  if (!/^[a-z_]+$/.test(name)) throw new Error(`bad grant module name ${name}`);
  grantModules.push(await import(`./grants/${name}.mjs`));
}

const counts = {};
let provider;

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 65536) throw new Error('body too large');
  }
  return new URLSearchParams(body);
}

function page(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html><html><body>${html}</body></html>`);
}

// grantConsent finishes a consent prompt by granting what was asked.
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  } else {
    grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return { consent: { grantId: await grant.save() } };
}

async function interaction(req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (!m) return false;
  const [, uid, action] = m;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, '<h1>interaction mismatch</h1>');
    return true;
  }
  if (req.method === 'GET' && details.prompt.name === 'consent') {
    await provider.interactionFinished(req, res, await grantConsent(details), { mergeWithLastSubmission: true });
    return true;
  }
  if (req.method === 'GET' && !action) {
    page(res, 200, `<h1>Sign in</h1>
<form method="post" action="/interaction/${esc(uid)}/login">
<input name="login" autofocus><input name="password" type="password">
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`);
    return true;
  }
  if (req.method !== 'POST' || !action) {
    page(res, 405, '<h1>method not allowed</h1>');
    return true;
  }
  const form = await readForm(req);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
    return true;
  }
  const account = findLogin(form.get('login') ?? '');
  if (!account) {
    page(res, 200, `<p id="error">unknown user</p><form method="post" action="/interaction/${esc(uid)}/login"><input name="login"><button type="submit">Sign in</button></form>`);
    return true;
  }
  await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  return true;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const key = `${req.method} ${url.pathname}`;
  counts[key] = (counts[key] ?? 0) + 1;
  process.stderr.write(`oidc-provider: ${key}\n`);
  try {
    if (url.pathname === '/__test/counts') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(counts));
      return;
    }
    if (url.pathname === '/__test/reset' && req.method === 'POST') {
      for (const k of Object.keys(counts)) delete counts[k];
      res.writeHead(204);
      res.end();
      return;
    }
    if (url.pathname.startsWith('/interaction/') && await interaction(req, res, url)) return;
    provider.callback()(req, res);
  } catch (err) {
    process.stderr.write(`oidc-provider: error: ${err.stack ?? err}\n`);
    if (!res.headersSent) page(res, 500, `<pre id="error">${esc(err.message)}</pre>`);
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = new Provider(issuer, configuration);
  // Behind no proxy: the issuer is plain http on loopback.
  provider.on('server_error', (ctx, err) => process.stderr.write(`oidc-provider: server_error: ${err.stack}\n`));
  for (const g of grantModules) g.register(provider, cfg, accounts, errors);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
