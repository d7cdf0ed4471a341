// A real OpenID provider (panva/oidc-provider, OpenID certified) for tests/test_oidc.py.
//
// Started by the tests on 127.0.0.1; everything comes from the environment:
//   OIDC_PORT          port to listen on (the issuer is http://127.0.0.1:<port>)
//   OIDC_KEYS          path of a JSON file {"keys": [private JWKs]}: the first signs;
//                      restarting with a new first key is a key rotation
//   OIDC_REDIRECT_URI  the ModelDock callback the browser client may return to
//
// Clients:
//   modeldock-web     authorization code + PKCE (S256), for the browser sign-in;
//                     devInteractions: any login name, any password; the account
//                     "ada" is in the group "modeldock-admins", every other in "staff"
//   modeldock-script  client_credentials, JWT access tokens for these resources:
//     https://modeldock.test/api        audience https://modeldock.test/api, 5 min
//     https://modeldock.test/short      same audience, expires after 1 second
//     https://other.test/api            audience https://other.test/api
import fs from 'node:fs';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(fs.readFileSync(process.env.OIDC_KEYS, 'utf8'));
const SCOPES = 'modeldock:predict modeldock:admin modeldock:feedback';
const API = 'https://modeldock.test/api';
const RESOURCES = {
  [API]: { audience: API, accessTokenTTL: 300 },
  'https://modeldock.test/short': { audience: API, accessTokenTTL: 1 },
  'https://other.test/api': { audience: 'https://other.test/api', accessTokenTTL: 300 },
};

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'modeldock-web',
      client_secret: 'web-secret-for-tests',
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: 'modeldock-script',
      client_secret: 'script-secret-for-tests',
      redirect_uris: [],
      response_types: [],
      grant_types: ['client_credentials'],
      scope: SCOPES,
    },
  ],
  scopes: ['openid', 'profile', 'groups', ...SCOPES.split(' ')],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          groups: id === 'ada' ? ['modeldock-admins', 'staff'] : ['staff'],
        };
      },
    };
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => false,
      async getResourceServerInfo(_ctx, resource) {
        const server = RESOURCES[resource];
        if (!server) throw new errors.InvalidTarget();
        return { ...server, scope: SCOPES, accessTokenFormat: 'jwt' };
      },
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
