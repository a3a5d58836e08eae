// server.mjs runs the npm oidc-provider (panva's, OpenID Certified) for
// authgate's interop tests. Usage:
//
//   node server.mjs CONFIG.json    (config from a file), or
//   node server.mjs < pipe         (config as the first line of stdin)
//
// The config is one JSON object (every key optional; Go's
// interop/oidcprovider writes it):
//
//   { "clients": [...],          oidc-provider client metadata, as is
//     "accounts": [{"sub": "alice", "claims": {...}}],
//     "ttl": {"AccessToken": 60, ...},          seconds
//     "features": {...},         deep-merged over the defaults below
//     "claims": {...},           scope -> claims (default below)
//     "scopes": [...],           default: oidc-provider's own
//     "requireIdTokenHint": false,
//     "resourceServers": {...},  RFC 8707 indicators (see below)
//     "grants": [...],           modules in ./grants/ (see below)
//     "omitFormPost": false,     no form_post response mode (see below)
//     "loopbackFetch": false,    outgoing requests may reach loopback (8.)
//     "extra": {...} }           any other Provider configuration
//
// It listens on 127.0.0.1 with a port the kernel picks, builds the issuer
// http://127.0.0.1:PORT from it, and prints one line {"issuer": "..."} to
// stdout when ready. It exits when stdin closes (so a test that dies
// leaves nothing behind: keep stdin open when running it by hand) or on
// SIGTERM/SIGINT. Every request is logged to stderr and counted by
// "METHOD /path": GET /__test/counts returns the counts, POST
// /__test/reset clears them.
//
// Deviations from oidc-provider's stock configuration, each needed to
// test over loopback http without a person at the keyboard (also in
// ../README.md). Nothing is needed for plain http itself: oidc-provider
// sets the Secure cookie attribute only when the request is https
// (ctx.secure), and accepts an http issuer.
//  1. cookies.keys is fixed (stock: none, so cookies are unsigned); the
//     tests are deterministic either way, signed is what a real
//     deployment runs.
//  2. features.devInteractions is off and interactions.url points at the
//     plain login form below (stock: the dev login page, which accepts
//     any login name and needs a person to click through consent). Any
//     password is accepted; consent is granted for whatever was asked.
//  3. features.rpInitiatedLogout.logoutSource renders a plainer "sign
//     out?" page (same form id, xsrf and logout=yes button as stock).
//  4. claims declares the scopes email, profile and groups (stock:
//     only openid), merged by oidc-provider over its own acr, sid,
//     auth_time and iss.
//  5. features.revocation is on (stock: off).
//  6. features.resourceIndicators.getResourceServerInfo answers for the
//     configured resourceServers (stock: throws invalid_target for any
//     indicator, which is still the answer for unknown ones).
//  7. Web clients using the implicit grant may register http and
//     localhost redirect URIs (stock: refused, as OpenID Connect Dynamic
//     Client Registration §2 says), through oidc-provider's documented
//     recipe (recipes/implicit_http_localhost.md): client validation
//     skips the checks coded implicit-force-https and
//     implicit-forbid-localhost. Every other redirect URI check stays.
//  8. With loopbackFetch, the documented fetch hook lets the provider's
//     own requests (back-channel logout notifications) reach 127.0.0.1,
//     ::1 and localhost, where the test's gateways listen: for those
//     hosts only it drops the SSRF-protecting dispatcher oidc-provider
//     passes in (stock: refused as special-use addresses).
// Everything else is stock: refresh-token policy, PKCE policy, client
// authentication methods, TTLs, signing keys (the development keystore),
// the in-memory adapter, HTTP POST methods off.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { Provider, errors } from 'oidc-provider';

const log = (msg) => process.stderr.write(`oidc-provider: ${msg}\n`);

// ---- lifetime and configuration -------------------------------------

// The test owns our lifetime: stdin closing means it is gone.
function exitWithStdin(onFirstLine) {
  let buf = '';
  let done = !onFirstLine;
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    if (done) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      done = true;
      onFirstLine(buf.slice(0, nl));
    }
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const cfg = JSON.parse(await new Promise((resolve) => {
  if (process.argv[2]) {
    exitWithStdin(null);
    resolve(readFileSync(process.argv[2], 'utf8'));
  } else {
    exitWithStdin(resolve);
  }
}));

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// deepMerge merges plain objects key by key; anything else in `over`
// (arrays included) replaces what is in `base`, and undefined or null
// leaves it.
function deepMerge(base, over) {
  if (over === undefined || over === null) return base;
  if (!isObject(base) || !isObject(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// ---- accounts -------------------------------------------------------

const accounts = new Map((cfg.accounts ?? []).map((a) => [a.sub, a]));

// findLogin maps what was typed in the login field to an account: its
// sub or its preferred_username.
function findLogin(login) {
  for (const a of accounts.values()) {
    if (a.sub === login || a.claims?.preferred_username === login) return a;
  }
  return undefined;
}

// ---- Provider configuration -----------------------------------------

// RFC 8707 resource servers by indicator:
// { scope, accessTokenFormat: "jwt" | "opaque", audience? }.
const resourceServers = cfg.resourceServers ?? {};

function logoutSource(ctx, form) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign out</title></head><body>
<h1>Sign out of ${esc(ctx.host)}?</h1>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>
</body></html>`;
}

const defaultFeatures = {
  devInteractions: { enabled: false }, // replaced by the login form below
  revocation: { enabled: true },
  rpInitiatedLogout: { enabled: true, logoutSource },
  resourceIndicators: {
    async getResourceServerInfo(ctx, indicator) {
      const rs = resourceServers[indicator];
      if (!rs) throw new errors.InvalidTarget();
      const info = {
        scope: rs.scope ?? '',
        accessTokenFormat: rs.accessTokenFormat ?? 'jwt',
        audience: rs.audience ?? indicator,
      };
      if (info.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: 'RS256' } };
      return info;
    },
  },
};

const defaultClaims = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'preferred_username', 'given_name', 'family_name'],
  groups: ['groups'],
};

let configuration = {
  clients: cfg.clients ?? [],
  claims: cfg.claims ?? defaultClaims,
  features: deepMerge(defaultFeatures, cfg.features),
  cookies: { keys: ['authgate-interop-cookie-key-0123456789abcdef'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const a = accounts.get(sub);
    if (!a) return undefined;
    return { accountId: sub, async claims() { return { ...a.claims, sub }; } };
  },
};
if (cfg.scopes) configuration.scopes = cfg.scopes;
if (cfg.loopbackFetch) {
  const loopback = new Set(['127.0.0.1', '[::1]', 'localhost']);
  configuration.fetch = (url, options) => {
    if (loopback.has(new URL(url).hostname)) delete options.dispatcher;
    return globalThis.fetch(url, options);
  };
}
if (cfg.ttl && Object.keys(cfg.ttl).length) configuration.ttl = cfg.ttl;
configuration = deepMerge(configuration, cfg.extra);

// ---- extension point: grant types oidc-provider lacks ----------------
//
// Each name in cfg.grants loads ./grants/NAME.mjs, which exports
//   register(provider, { cfg, accounts, findLogin, errors })
// and calls provider.registerGrantType(...) there (a password grant for
// ROPC tests, say). The client must list the grant in grant_types.
const grantModules = [];
for (const name of cfg.grants ?? []) {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`bad grant module name ${JSON.stringify(name)}`);
  grantModules.push(await import(`./grants/${name}.mjs`));
}

// ---- requireIdTokenHint ---------------------------------------------

async function readBody(req) {
  const chunks = [];
  let n = 0;
  for await (const chunk of req) {
    n += chunk.length;
    if (n > 65536) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

// refuseLogoutWithoutHint is a koa middleware that answers an end-session
// request (GET or POST) carrying post_logout_redirect_uri but no
// id_token_hint with a 500 page, as some servers do; the login session
// stays.
function refuseLogoutWithoutHint(endSessionPath) {
  return async (ctx, next) => {
    if (ctx.path === endSessionPath && (ctx.method === 'GET' || ctx.method === 'POST')) {
      let params = new URLSearchParams(ctx.querystring);
      if (ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
        const raw = await readBody(ctx.req);
        // oidc-provider reads an already drained request's req.body (it
        // logs a warning once about it).
        ctx.req.body = raw;
        params = new URLSearchParams(raw.toString('utf8'));
      }
      if (params.has('post_logout_redirect_uri') && !params.get('id_token_hint')) {
        log(`requireIdTokenHint: refusing ${ctx.method} ${ctx.path} without id_token_hint`);
        ctx.status = 500;
        ctx.type = 'html';
        ctx.body = '<!DOCTYPE html><html><head><title>Internal Server Error</title></head><body>'
          + '<h1>Internal Server Error</h1><p>id_token_hint is required with post_logout_redirect_uri</p></body></html>';
        return;
      }
    }
    await next();
  };
}

// ---- omitFormPost ----------------------------------------------------

// An unregistered response mode: oidc-provider answers it with
// unsupported_response_mode, sent the response type's default way.
const disabledFormPost = 'form_post-disabled';

// omitFormPost is a koa middleware that makes the provider behave as if
// it had no form_post response mode (OAuth 2.0 Form Post Response Mode):
// discovery does not list it, and an authorization request (GET or POST)
// asking for it is answered unsupported_response_mode by fragment or
// query, as for any mode the provider lacks. oidc-provider registers
// form_post unconditionally and lists it in discovery verbatim, and has
// no option to remove it.
function omitFormPost(authorizationPath) {
  return async (ctx, next) => {
    if (ctx.path === authorizationPath && ctx.method === 'GET') {
      const params = new URLSearchParams(ctx.querystring);
      if (params.get('response_mode') === 'form_post') {
        params.set('response_mode', disabledFormPost);
        ctx.querystring = params.toString();
      }
    } else if (ctx.path === authorizationPath && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
      const params = new URLSearchParams((await readBody(ctx.req)).toString('utf8'));
      if (params.get('response_mode') === 'form_post') params.set('response_mode', disabledFormPost);
      // oidc-provider reads an already drained request's req.body.
      ctx.req.body = Buffer.from(params.toString());
    }
    await next();
    // Both discovery documents (openid-configuration and RFC 8414's
    // oauth-authorization-server, which urlFor('discovery') names).
    if (ctx.path.startsWith('/.well-known/') && Array.isArray(ctx.body?.response_modes_supported)) {
      ctx.body.response_modes_supported = ctx.body.response_modes_supported.filter((m) => m !== 'form_post');
    }
  };
}

// ---- interactions: login form, automatic consent ----------------------

let provider;

function page(res, status, title, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>\n${html}\n</body></html>\n`);
}

function loginPage(res, uid, error) {
  const u = esc(uid);
  page(res, 200, 'Sign in', `<h1>Sign in</h1>
${error ? `<p id="error">${esc(error)}</p>\n` : ''}<form id="login" method="post" action="/interaction/${u}/login">
<input name="login" autofocus> <input name="password" type="password">
<button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${u}/abort"><button type="submit">Cancel</button></form>`);
}

// consentResult grants everything the consent prompt says is missing, on
// the interaction's existing grant or a new one.
async function consentResult(details) {
  const { prompt: { details: missing }, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  for (const detail of missing.rar ?? []) grant.addRar(detail);
  return { consent: { grantId: await grant.save() } };
}

// interaction serves GET /interaction/:uid, POST /interaction/:uid/login
// and POST /interaction/:uid/abort.
async function interaction(req, res, path) {
  const m = path.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (!m) return page(res, 404, 'Not found', '<h1>Not found</h1>');
  const [, uid, action] = m;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, 'Error', '<h1>interaction mismatch</h1>');
  const prompt = details.prompt.name;

  if (req.method === 'GET' && !action) {
    if (prompt === 'consent') {
      return provider.interactionFinished(req, res, await consentResult(details), { mergeWithLastSubmission: true });
    }
    if (prompt === 'login') return loginPage(res, uid);
    return page(res, 501, 'Error', `<h1>prompt ${esc(prompt)} is not implemented</h1>`);
  }
  if (req.method !== 'POST' || !action) return page(res, 405, 'Error', '<h1>method not allowed</h1>');

  const form = new URLSearchParams((await readBody(req)).toString('utf8'));
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  const login = form.get('login') ?? '';
  const account = findLogin(login);
  if (!account) return loginPage(res, uid, `unknown user ${login}`);
  return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
}

// ---- the server -------------------------------------------------------

const counts = {};
let handle; // provider.callback()

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const key = `${req.method} ${url.pathname}`;
  const test = url.pathname.startsWith('/__test/');
  if (!test) counts[key] = (counts[key] ?? 0) + 1;
  res.on('finish', () => log(`${req.method} ${req.url} ${res.statusCode}`));
  try {
    if (url.pathname === '/__test/counts' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(counts));
    }
    if (url.pathname === '/__test/reset' && req.method === 'POST') {
      for (const k of Object.keys(counts)) delete counts[k];
      res.writeHead(204);
      return res.end();
    }
    if (!provider) return page(res, 503, 'Starting', '<h1>starting</h1>');
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res, url.pathname);
    return handle(req, res);
  } catch (err) {
    log(`error: ${err.stack ?? err}`);
    if (!res.headersSent) page(res, 500, 'Error', `<h1>Error</h1><pre id="error">${esc(err.message)}</pre>`);
    else res.end();
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const p = new Provider(issuer, configuration);
  if (cfg.requireIdTokenHint) p.use(refuseLogoutWithoutHint(new URL(p.urlFor('end_session')).pathname));
  if (cfg.omitFormPost) {
    p.use(omitFormPost(new URL(p.urlFor('authorization')).pathname));
  }
  // Deviation 7. Static clients are validated on first use, after this.
  const { invalidate } = p.Client.Schema.prototype;
  p.Client.Schema.prototype.invalidate = function invalidateExceptImplicitHTTP(message, code) {
    if (code === 'implicit-force-https' || code === 'implicit-forbid-localhost') return;
    invalidate.call(this, message, code);
  };
  p.on('server_error', (ctx, err) => log(`server_error: ${err.stack ?? err}`));
  for (const event of ['authorization.error', 'grant.error', 'end_session.error', 'end_session_confirm.error',
    'userinfo.error', 'introspection.error', 'revocation.error', 'discovery.error', 'jwks.error', 'backchannel.error']) {
    p.on(event, (ctx, err) => log(`${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}`));
  }
  for (const g of grantModules) g.register(p, { cfg, accounts, findLogin, errors });
  provider = p;
  handle = p.callback();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
