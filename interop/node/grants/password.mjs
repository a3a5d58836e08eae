// password.mjs adds the resource owner password credentials grant
// (RFC 6749 §4.3), which oidc-provider does not ship, through its
// extension API provider.registerGrantType. server.mjs loads it when the
// config's "grants" lists "password".
//
// A client may use it only when its grant_types list "password".
// oidc-provider checks grant_types against the registered grant types when
// it first loads a client, which is at the first request naming it, not in
// the Provider constructor; server.mjs calls register() after constructing
// the Provider and before it serves anything, so static clients that list
// "password" are valid. A client lookup that failed is not cached, but a
// request naming the client before register() would have been refused
// (invalid_client_metadata: grant_types can only contain ...). Such a
// client needs redirect_uris, or "response_types": [] when it has none:
// the default response_types ["code"] makes redirect_uris mandatory.
//
// registerGrantType(name, handler, parameters) is all the extension API
// there is: the handler gets the koa ctx alone (the built-in grants also
// get helpers such as issueTokens and buildTokenResponse, bound inside
// oidc-provider and not exported), so this module builds the tokens from
// the public models (provider.Grant, AccessToken, RefreshToken, IdToken)
// as lib/actions/grants/*.js do; and every parameter not named in
// parameters is stripped from ctx.oidc.params before the handler runs.
//
// The request: grant_type=password, username, password, scope (client
// authentication as registered; unknown parameters are dropped, as
// oidc-provider does for every grant).
//   - username is an account's sub or its claims.preferred_username;
//     password its "password" field, compared in constant time. An account
//     without one never signs in this way. An unknown user and a wrong
//     password get the same answer: 400 invalid_grant, "grant request is
//     invalid" (oidc-provider's one description for invalid_grant; the
//     reason stays in error_detail, which is not sent).
//   - scope: the provider's known scopes among those asked for are granted
//     (others are ignored, as at the authorization endpoint); a client
//     with a "scope" allow-list is refused known scopes beyond it
//     (invalid_scope), as the built-in grants do.
// The answer, like the code flow's:
//   - an access token (opaque; no resource indicators for this grant),
//     good at userinfo when openid was granted;
//   - a refresh token under oidc-provider's stock policy
//     (issueRefreshToken): when the client may use refresh_token and
//     offline_access was granted. The built-in refresh_token grant redeems
//     it (rotation, ID token, userinfo all stock);
//   - an ID token when openid was granted: iss, aud, sub, iat, exp,
//     auth_time (now), at_hash, and the claims of the granted scopes as
//     the provider's claims configuration maps them (email, profile,
//     groups, ...). Unlike stock conformIdTokenClaims, which keeps those
//     claims for userinfo in the code flow, they are in the ID token here;
//     userinfo answers the same.
import { createHash, timingSafeEqual } from 'node:crypto';
import { errors as providerErrors } from 'oidc-provider';

const grantType = 'password';
const parameters = ['username', 'password', 'scope'];

const now = () => Math.floor(Date.now() / 1000);
const digest = (s) => createHash('sha256').update(String(s), 'utf8').digest();

// options accepts both ways server.mjs has called register: the current
// register(provider, { cfg, accounts, findLogin, errors }) (grants/README.md)
// and the earlier register(provider, cfg, accounts, errors).
function options(args) {
  const [first, accounts, errors] = args;
  if (first && first.accounts instanceof Map) return { errors: providerErrors, ...first };
  return { cfg: first, accounts, errors: errors ?? providerErrors };
}

// register adds the password grant to provider.
export function register(provider, ...args) {
  const { accounts, errors } = options(args);
  const badCredentials = () => new errors.InvalidGrant('invalid username or password');

  // checkLogin returns the account named login (sub, else
  // preferred_username) whose password is password. The digests make the
  // comparison's time independent of both lengths, and an unknown user
  // costs the same comparison as a known one.
  function checkLogin(login, password) {
    let account;
    for (const a of accounts.values()) {
      if (a.sub === login) { account = a; break; }
    }
    if (!account) {
      for (const a of accounts.values()) {
        if (a.claims?.preferred_username === login) { account = a; break; }
      }
    }
    const want = typeof account?.password === 'string' ? account.password : '';
    const match = timingSafeEqual(digest(want), digest(password));
    return account && want !== '' && match ? account : undefined;
  }

  // The same account object server.mjs's findAccount returns, which the
  // refresh_token grant and userinfo use later.
  function accountEntity(a) {
    return { accountId: a.sub, async claims() { return { ...a.claims, sub: a.sub }; } };
  }

  async function passwordHandler(ctx) {
    const { client, params } = ctx.oidc;
    if (!params.username || !params.password) {
      throw new errors.InvalidRequest('username and password are required');
    }
    const a = checkLogin(params.username, params.password);
    if (!a) throw badCredentials();

    const scopes = [...ctx.oidc.requestParamOIDCScopes];
    if (client.scope) {
      const allowed = new Set(client.scope.split(' '));
      const refused = scopes.find((s) => !allowed.has(s));
      if (refused) throw new errors.InvalidScope('requested scope is not allowed', refused);
    }
    const scope = scopes.join(' ');
    const authTime = now();

    const account = accountEntity(a);
    ctx.oidc.entity('Account', account);

    // A grant, as consent would have saved it, so that the refresh_token
    // grant and userinfo find what was granted.
    const grant = new provider.Grant({ accountId: a.sub, clientId: client.clientId });
    if (scope) grant.addOIDCScope(scope);
    const grantId = await grant.save();
    ctx.oidc.entity('Grant', grant);

    const at = new provider.AccessToken({
      accountId: a.sub, client, grantId, gty: grantType, scope: scope || undefined,
    });
    ctx.oidc.entity('AccessToken', at);
    const accessToken = await at.save();

    let refreshToken;
    if (client.grantTypeAllowed('refresh_token') && scopes.includes('offline_access')) {
      const rt = new provider.RefreshToken({
        accountId: a.sub, authTime, client, grantId, gty: grantType, rotations: 0, scope,
      });
      ctx.oidc.entity('RefreshToken', rt);
      refreshToken = await rt.save();
    }

    let idToken;
    if (scopes.includes('openid')) {
      const claims = await account.claims('id_token', scope, {}, []);
      const token = new provider.IdToken({ ...claims, sub: a.sub }, { ctx });
      token.scope = scope; // the scopes' claims pass the mask, as claims configures
      token.mask = {};
      token.rejected = [];
      // Set outside the mask, which lets auth_time through only when
      // requested (max_age, the claims parameter): there is no
      // authorization request here, and the user signed in just now.
      token.set('auth_time', authTime);
      token.set('at_hash', accessToken); // issue() hashes it (OIDC Core §3.2.2.9)
      idToken = await token.issue({ use: 'idtoken' });
    }

    ctx.body = Object.fromEntries(Object.entries({
      access_token: accessToken,
      expires_in: at.expiration,
      id_token: idToken,
      refresh_token: refreshToken,
      scope: at.scope,
      token_type: at.tokenType,
    }).filter(([, v]) => v !== undefined));
  }

  provider.registerGrantType(grantType, passwordHandler, parameters);
}
