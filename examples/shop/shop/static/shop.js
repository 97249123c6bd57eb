// The shop's live page: Laravel Echo on pusher-js, against soketi (or Pusher Channels).
//
// Demo sign-in: the URL's ?customer= names the customer, and the page sends it in an
// X-User header on its own requests and on Echo's /broadcasting/auth requests. Anyone
// can claim to be anyone: a real shop signs customers in and reads its session instead.
'use strict';

const customer = new URLSearchParams(location.search).get('customer');
const headers = customer ? { 'X-User': customer } : {};
const $ = (id) => document.getElementById(id);

// The server renders the options (key, wsHost, wsPort, forceTLS, cluster, authEndpoint).
// echo.iife.js defines a global `Echo` module: its class is Echo.default.
const options = JSON.parse($('echo-options').textContent);
const echo = new Echo.default({ ...options, Pusher, auth: { headers } });

// -- what the page shows -----------------------------------------------------------

function log(channel, event, data) {
  const item = document.createElement('li');
  item.textContent = `${channel} · ${event} · ${JSON.stringify(data)}`;
  $('log').append(item);
}

function showError(error) {
  $('error').textContent = String(error);
}

function addToBoard(id, total, how) {
  if (document.querySelector(`#board li[data-order="${id}"]`)) return;
  const item = document.createElement('li');
  item.dataset.order = id;
  item.textContent = `Order #${id} · ${total} · ${how}`;
  $('board').prepend(item);
}

/** The #mine entry of order `id`: "Order #2 · 14.90 · placed · live". */
function orderItem(id) {
  let item = document.querySelector(`#mine li[data-order="${id}"]`);
  if (!item) {
    item = document.createElement('li');
    item.dataset.order = id;
    item.innerHTML = '<span class="text"></span><span class="state"></span>';
    $('mine').append(item);
  }
  return item;
}

function showOrder(id, { total, status, carrier, heard } = {}) {
  const item = orderItem(id);
  if (total !== undefined) item.dataset.total = total;
  if (status !== undefined) item.dataset.status = status;
  if (carrier) item.dataset.carrier = carrier;
  const d = item.dataset;
  let text = `Order #${id}`;
  if (d.total) text += ` · ${d.total}`;
  if (d.status === 'shipped') text += ` · shipped with ${d.carrier}${heard ? ` (${heard})` : ''}`;
  else if (d.status) text += ` · ${d.status}`;
  item.querySelector('.text').textContent = text;
  let ship = item.querySelector('button');
  if (d.status === 'placed' && !ship) {
    ship = document.createElement('button');
    ship.textContent = 'Ship it (as the shop)';
    ship.addEventListener('click', () => shipOrder(id).catch(showError));
    item.append(ship);
  } else if (d.status !== 'placed' && ship) {
    ship.remove();
  }
}

function showState(id, state, css) {
  const span = orderItem(id).querySelector('.state');
  span.textContent = ` · ${state}`;
  span.className = `state ${css || ''}`;
}

// -- the connection ----------------------------------------------------------------

const connection = echo.connector.pusher.connection;
connection.bind('state_change', ({ current }) => {
  const connected = current === 'connected';
  $('connection').textContent = connected
    ? `connected · socket ${echo.socketId()}`
    : current === 'unavailable'
      ? `unavailable: no answer from ${options.wsHost ? `${options.wsHost}:${options.wsPort}` : 'Pusher'}`
      : current;
  // the buttons wait for a socket id: without one, toOthers would leave nobody out
  for (const button of [$('place'), $('follow')]) button.disabled = !(connected && customer);
});

// -- the public board --------------------------------------------------------------

echo.channel('orders').listen('.OrderPlaced', (event) => {
  log('orders', 'OrderPlaced', event);
  addToBoard(event.order_id, event.total, 'heard live');
  if (customer) loadMyOrders().catch(showError); // placed in another tab of mine? follow it
});

// -- private order channels --------------------------------------------------------

const followed = new Set();

function follow(id) {
  if (followed.has(id)) return;
  followed.add(id);
  showOrder(id);
  showState(id, 'subscribing');
  echo
    .private(`orders.${id}`) // private-orders.{id}: /broadcasting/auth asks the channel rule
    .subscribed(() => showState(id, 'live', 'live'))
    .error((error) => {
      showState(id, `refused: ${error.status}`, 'refused');
      echo.leave(`orders.${id}`);
      followed.delete(id);
    })
    .listen('OrderShipped', (event) => { // a LaravelEvent: App\Events\OrderShipped
      log(`private-orders.${id}`, 'OrderShipped', event);
      showOrder(id, { status: 'shipped', carrier: event.carrier, heard: 'heard live' });
    })
    .listen('.order.cancelled', (event) => {
      log(`private-orders.${id}`, 'order.cancelled', event);
      showOrder(id, { status: 'cancelled' });
    })
    .listen('.note.added', (event) => log(`private-orders.${id}`, 'note.added', event));
}

// -- the page's own requests: fetch sends X-Socket-ID itself ------------------------
// (Echo adds it only through its axios, jQuery, Vue and Turbo interceptors)

async function send(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { ...headers, 'Content-Type': 'application/json', 'X-Socket-ID': echo.socketId() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${url}: HTTP ${response.status}`);
  return response.json();
}

async function placeOrder() {
  const items = [{ sku: 'MUG-1', price: '9.90' }, { sku: 'TEA-2', price: '5.00' }];
  const order = await send('POST', '/orders', { items });
  addToBoard(order.id, order.total, 'placed in this tab');
  showOrder(order.id, { total: order.total, status: 'placed' });
  follow(order.id);
}

async function shipOrder(id) {
  const order = await send('POST', `/orders/${id}/ship?carrier=DHL`);
  showOrder(id, { status: order.status, carrier: order.carrier, heard: 'shipped from this tab' });
}

$('place').addEventListener('click', () => placeOrder().catch(showError));
$('follow-form').addEventListener('submit', (submit) => {
  submit.preventDefault();
  const id = Number($('follow-id').value);
  if (id > 0) follow(id);
});

// -- start -------------------------------------------------------------------------

async function loadMyOrders() {
  const response = await fetch('/my/orders', { headers });
  for (const order of await response.json()) {
    if (followed.has(order.id)) continue;
    showOrder(order.id, order);
    follow(order.id);
  }
}

if (customer) {
  $('who').textContent = `Signed in as ${customer} (demo sign-in: the URL's ?customer= names you).`;
  loadMyOrders().catch(showError);
} else {
  $('who').innerHTML = 'Not signed in. Demo sign-in: open <a href="?customer=ada">?customer=ada</a> '
    + 'here and <a href="?customer=bob">?customer=bob</a> in another tab.';
}
