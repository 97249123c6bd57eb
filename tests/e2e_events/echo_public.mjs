// Laravel Echo 2.5 (broadcaster 'pusher', on pusher-js) subscribed to one public channel,
// listening for event names exactly as a page would write them: Echo.channel(c).listen(name).
//
// config: {key, wsHost, wsPort, channel, listen: [names], namespace?}  (namespace: a string,
//         or null for Echo's `namespace: false`; absent: Echo's default, 'App.Events')
// prints: connected {socket_id}, subscribed {channel}, event {listen, data} (the name given
//         to listen() whose callback fired), raw {event, data} (every event on the wire)
//
// Started by tests/servers/node_clients.py with tests/js as the working directory: the
// clients are resolved from tests/js/node_modules (npm ci there), not from this folder.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { commands, config, out } from '../js/lib.mjs';

const jsDir = process.cwd();
const require = createRequire(join(jsDir, 'package.json'));
const pusherModule = require('pusher-js');
const Pusher = pusherModule.default || pusherModule;
// laravel-echo's require() entry fails on Node 20: import its ES module build
const echoUrl = pathToFileURL(join(jsDir, 'node_modules', 'laravel-echo', 'dist', 'echo.js'));
const { default: Echo } = await import(echoUrl.href);

const options = {
  broadcaster: 'pusher',
  Pusher,
  key: config.key,
  cluster: 'mt1',
  wsHost: config.wsHost || '127.0.0.1',
  wsPort: config.wsPort,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
};
if ('namespace' in config) options.namespace = config.namespace === null ? false : config.namespace;

const echo = new Echo(options);
const pusher = echo.connector.pusher;
pusher.connection.bind('connected', () => out('connected', { socket_id: echo.socketId() }));

const channel = echo.channel(config.channel);
channel.subscribed(() => out('subscribed', { channel: config.channel }));
for (const name of config.listen) {
  channel.listen(name, (data) => out('event', { listen: name, data }));
}
pusher.channel(config.channel).bind_global((event, data) => {
  if (!event.startsWith('pusher')) out('raw', { event, data });
});

commands(async (command) => out('error', { error: `unknown command ${command.cmd}` }), () => echo.disconnect());
