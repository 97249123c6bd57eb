// pusher-js (the official npm client, Node build) driven by JSON commands.
//
// config: {key, wsHost, wsPort, authEndpoint, userAuthEndpoint?, headers?, cluster?}
// commands: {"cmd": "subscribe", "channel"} | {"cmd": "unsubscribe", "channel"}
//           | {"cmd": "signin"} | {"cmd": "members", "channel"} | {"cmd": "disconnect"} | {"cmd": "close"}
// prints:   connected {socket_id}, subscribed {channel, members?, me?}, subscription_error
//           {channel, status, error}, event {channel, event, data}, member_added / member_removed
//           {channel, id, info}, signed_in {user_data}, signin_error {status, error},
//           user_subscribed {channel}, user_event {event, data}, members {channel, members}
import Pusher from 'pusher-js';
import { commands, config, out } from './lib.mjs';

const headers = config.headers || {};
const options = {
  cluster: config.cluster || 'mt1',
  wsHost: config.wsHost || '127.0.0.1',
  wsPort: config.wsPort,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  channelAuthorization: { endpoint: config.authEndpoint, transport: 'ajax', headers },
};
if (config.userAuthEndpoint) {
  options.userAuthentication = { endpoint: config.userAuthEndpoint, transport: 'ajax', headers };
}
const pusher = new Pusher(config.key, options);

const membersOf = (members) => {
  const all = [];
  members.each((m) => all.push({ id: m.id, info: m.info }));
  all.sort((a, b) => String(a.id).localeCompare(String(b.id)));
  return all;
};

pusher.connection.bind('connected', () => out('connected', { socket_id: pusher.connection.socket_id }));
pusher.connection.bind('error', (err) => out('connection_error', { error: JSON.stringify(err) }));
pusher.connection.bind('message', (message) => {
  if (message.event === 'pusher:signin_success') {
    out('signed_in', { user_data: JSON.parse(message.data.user_data) });
  } else if (message.event === 'pusher_internal:subscription_succeeded'
             && String(message.channel).startsWith('#server-to-user-')) {
    out('user_subscribed', { channel: message.channel });
  }
});
pusher.user.bind('pusher:signin_error', (err) => out('signin_error', { status: err.status, error: err.error, error_type: err.type }));
pusher.user.bind_global((event, data) => {
  if (!event.startsWith('pusher:')) out('user_event', { event, data });
});

function subscribe(name) {
  const channel = pusher.subscribe(name);
  channel.bind('pusher:subscription_succeeded', (members) => {
    if (name.startsWith('presence-')) {
      out('subscribed', { channel: name, members: membersOf(channel.members), me: channel.members.me });
    } else {
      out('subscribed', { channel: name });
    }
  });
  channel.bind('pusher:subscription_error', (err) => out('subscription_error', {
    channel: name, status: err.status, error: err.error, error_type: err.type,
  }));
  channel.bind('pusher:member_added', (m) => out('member_added', { channel: name, id: m.id, info: m.info }));
  channel.bind('pusher:member_removed', (m) => out('member_removed', { channel: name, id: m.id, info: m.info }));
  channel.bind_global((event, data) => {
    if (!event.startsWith('pusher:') && !event.startsWith('pusher_internal:')) {
      out('event', { channel: name, event, data });
    }
  });
}

commands(async (command) => {
  switch (command.cmd) {
    case 'subscribe': subscribe(command.channel); break;
    case 'unsubscribe': pusher.unsubscribe(command.channel); out('unsubscribed', { channel: command.channel }); break;
    case 'signin': pusher.signin(); break;
    case 'members': out('members', { channel: command.channel, members: membersOf(pusher.channel(command.channel).members) }); break;
    case 'disconnect': pusher.disconnect(); break;
    default: out('error', { error: `unknown command ${command.cmd}` });
  }
}, () => pusher.disconnect());
