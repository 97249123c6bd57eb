// The board's live side: Laravel Echo on pusher-js, talking to soketi (or Pusher).
//
// - private-orders.N: each of the user's orders (OrderShipped);
// - private-encrypted-orders.N: the same orders' tracking codes, decrypted here;
// - presence-board: who is looking at the board;
// - "Mark shipped" posts with fetch and sends X-Socket-ID, so the server's
//   to_others() leaves this tab out: it shows the answer instead.
//
// window.report(what), when a test defines it, is told after each change.
(() => {
  // {% broadcasting_client_config %}: the options of pusher-js and of Echo, from the server's
  const config = JSON.parse(document.getElementById('broadcasting-config').textContent);
  const shipUrl = JSON.parse(document.getElementById('ship-url').textContent);
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const shown = (name) => document.querySelector(`[data-show="${name}"]`);
  const report = (what) => { if (window.report) window.report(what); };

  function item(list, text, className) {
    const li = document.createElement('li');
    li.textContent = text;
    if (className) li.className = className;
    list.appendChild(li);
    return li;
  }

  // laravel-echo's browser build (echo.iife.js) defines `Echo`; the class is its default.
  // broadcaster, key, cluster, wsHost, wsPort, forceTLS, enabledTransports, authEndpoint
  const echo = new Echo.default(config.echo);

  const connection = echo.connector.pusher.connection;
  connection.bind('state_change', ({ current }) => {
    shown('connection').textContent =
      current === 'connected' ? `connected (socket ${echo.socketId()})` : current;
    report('connection');
  });

  function channelState(name, state, className) {
    const list = shown('channels');
    let li = list.querySelector(`[data-channel="${name}"]`);
    if (!li) {
      li = item(list, '');
      li.dataset.channel = name;
    }
    li.textContent = `${name}: ${state}`;
    li.className = className || '';
    report('channel');
  }

  function markShipped(orderId, carrier) {
    const status = document.querySelector(`[data-order="${orderId}"] .status`);
    if (status) {
      status.textContent = `shipped (${carrier})`;
      status.className = 'status shipped';
    }
    const button = document.querySelector(`[data-ship="${orderId}"]`);
    if (button) button.remove();
  }

  function follow(orderId) {
    const name = `orders.${orderId}`;
    const live = shown('live');
    echo.private(name) // private-orders.N
      .subscribed(() => channelState(`private-${name}`, 'subscribed'))
      .error((err) => channelState(`private-${name}`, `refused (${err.status})`, 'refused'))
      .listen('OrderShipped', (e) => { // a LaravelEvent: App\Events\OrderShipped
        markShipped(e.order_id, e.carrier);
        item(live, `#${e.order_id} ${e.item} shipped with ${e.carrier} (private-${name})`);
        report('live');
      });
    echo.encryptedPrivate(name) // private-encrypted-orders.N: needs pusher-with-encryption
      .subscribed(() => channelState(`private-encrypted-${name}`, 'subscribed'))
      .error((err) => channelState(`private-encrypted-${name}`, `refused (${err.status})`, 'refused'))
      .listen('.TrackingCode', (e) => { // a BroadcastEvent: its class name, hence the dot
        item(live, `#${e.order_id} tracking code ${e.tracking_code} (decrypted, private-encrypted-${name})`);
        report('live');
      });
  }

  document.querySelectorAll('[data-order]').forEach((li) => follow(li.dataset.order));

  const members = new Map();
  function showMembers() {
    const list = shown('members');
    list.replaceChildren();
    [...members.values()].sort().forEach((name) => item(list, name));
    report('members');
  }
  echo.join('board') // presence-board
    .here((users) => {
      users.forEach((user) => members.set(user.id, user.name));
      channelState('presence-board', 'subscribed');
      showMembers();
    })
    .joining((user) => { members.set(user.id, user.name); showMembers(); })
    .leaving((user) => { members.delete(user.id); showMembers(); })
    .error((err) => channelState('presence-board', `refused (${err.status})`, 'refused'));

  document.addEventListener('click', async (event) => {
    const button = event.target.closest('[data-ship]');
    if (!button) return;
    button.disabled = true;
    const headers = { 'X-CSRFToken': csrfToken };
    // Echo adds X-Socket-ID to axios, jQuery, Vue and Turbo requests only: with fetch,
    // send it yourself, or the server's to_others() leaves nobody out.
    if (echo.socketId()) headers['X-Socket-ID'] = echo.socketId();
    const response = await fetch(shipUrl.replace('{id}', button.dataset.ship), {
      method: 'POST',
      headers,
      credentials: 'same-origin',
    });
    const order = await response.json();
    markShipped(order.id, order.carrier);
    report('shipped');
  });

  document.getElementById('follow').addEventListener('submit', (event) => {
    event.preventDefault();
    const wanted = event.target.elements.order.value.trim();
    if (/^\d+$/.test(wanted)) follow(wanted);
  });
})();
