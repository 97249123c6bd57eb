// Laravel Echo (broadcaster 'pusher') on pusher-js, driven by JSON commands.
//
// config: {key, wsHost, wsPort, authEndpoint, userAuthEndpoint?, headers?}
// commands: {"cmd": "private", "channel", "event"}  (event: a name or a list of names, as Echo takes them) | {"cmd": "encryptedPrivate", "channel", "event"}
//           | {"cmd": "join", "channel"} | {"cmd": "leave", "channel"}
//           | {"cmd": "post", "url", "headers"?}   (an app request through Echo's axios interceptor)
//           | {"cmd": "disconnect"} | {"cmd": "close"}
// prints:   connected {socket_id}, subscribed {channel}, subscription_error {channel, status},
//           event {channel, event, data}, here {channel, users}, joining / leaving {channel, user},
//           response {status, body, sent_socket_id}
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { commands, config, out } from './lib.mjs';

// Echo adds X-Socket-Id to the app's own requests through interceptors it registers
// on a global axios (or jQuery, Vue, Turbo) when it starts. Node has none of them,
// so this is the least of axios Echo needs: a function with interceptors.request.use.
// Echo's own interceptor decides the header; `post` below only applies it and sends.
const requestInterceptors = [];
globalThis.axios = function axios() {};
globalThis.axios.interceptors = { request: { use: (fn) => requestInterceptors.push(fn) } };

async function post(url, headers = {}) {
  let request = { url, method: 'post', headers: { ...headers } };
  for (const intercept of requestInterceptors) request = intercept(request);
  const response = await fetch(request.url, { method: 'POST', headers: request.headers });
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch {}
  const sent = Object.entries(request.headers).find(([k]) => k.toLowerCase() === 'x-socket-id');
  out('response', { url, status: response.status, body, sent_socket_id: sent ? sent[1] : null });
}

const echo = new Echo({
  broadcaster: 'pusher',
  Pusher,
  key: config.key,
  cluster: config.cluster || 'mt1',
  wsHost: config.wsHost || '127.0.0.1',
  wsPort: config.wsPort,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  authEndpoint: config.authEndpoint,
  auth: { headers: config.headers || {} },
  userAuthentication: { endpoint: config.userAuthEndpoint || config.authEndpoint, headers: config.headers || {} },
});
const pusher = echo.connector.pusher;
pusher.connection.bind('connected', () => out('connected', { socket_id: echo.socketId() }));

function watch(channel, full, event) {
  channel
    .subscribed(() => out('subscribed', { channel: full }))
    .error((err) => out('subscription_error', { channel: full, status: err.status, error_type: err.type }));
  for (const name of [].concat(event || [])) {
    channel.listen(name, (data) => out('event', { channel: full, event: name, data }));
  }
  return channel;
}

commands(async (command) => {
  const name = command.channel;
  switch (command.cmd) {
    case 'private': watch(echo.private(name), `private-${name}`, command.event); break;
    case 'encryptedPrivate':
      watch(echo.encryptedPrivate(name), `private-encrypted-${name}`, command.event); break;
    case 'join': {
      const full = `presence-${name}`;
      watch(echo.join(name), full, command.event)
        .here((users) => out('here', {
          channel: full,
          users: [...users].sort((a, b) => String(a.id).localeCompare(String(b.id))),
        }))
        .joining((user) => out('joining', { channel: full, user }))
        .leaving((user) => out('leaving', { channel: full, user }));
      break;
    }
    case 'leave': echo.leave(name); out('left', { channel: name }); break;
    case 'post': await post(command.url, command.headers); break;
    case 'disconnect': echo.disconnect(); break;
    default: out('error', { error: `unknown command ${command.cmd}` });
  }
}, () => echo.disconnect());
