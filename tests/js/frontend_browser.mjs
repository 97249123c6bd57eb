// Headless Chromium (Debian's, through playwright-core) running the pages of docs/frontend.md.
//
// config: {chromium}  (the executable)
// Each tab gets a browser context of its own (its own cookies: one signed-in user per tab).
// Nothing leaves the machine: requests to any host but 127.0.0.1 are aborted ("blocked"), and
// WebSockets to other hosts (Pusher's, Ably's) are intercepted: the test sees the URL the
// client opened ("websocket") and the socket stays open with nobody answering.
//
// commands:
//   {"cmd": "open", "page": NAME, "url"}       open a tab; prints "loaded"
//   {"cmd": "eval", "page": NAME, "js"}        evaluate an expression (awaited); prints "eval"
//   {"cmd": "wait", "page": NAME, "js"}        until the expression is truthy; prints "waited"
//   {"cmd": "close_page", "page": NAME}        close the tab; prints "page_closed"
// A page's template reports each line that show() adds to <ul id="events">:
//   {"type": "line", "page", "text"}; page errors print "page_error", console lines "console".
import { chromium } from 'playwright-core';
import { commands, config, out } from './lib.mjs';

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const tabs = {};
const local = (url) => new URL(url).hostname === '127.0.0.1';

async function open(name, url) {
  const context = await browser.newContext();
  await context.route((u) => !local(u.href), async (route) => {
    out('blocked', { page: name, url: route.request().url() });
    await route.abort();
  });
  await context.routeWebSocket((u) => !local(u.href), (ws) => {
    out('websocket', { page: name, url: ws.url() });
  });
  const page = await context.newPage();
  tabs[name] = { context, page };
  page.on('console', (message) => out('console', { page: name, level: message.type(), text: message.text() }));
  page.on('pageerror', (error) => out('page_error', { page: name, error: String(error) }));
  await page.exposeFunction('reportLine', (text) => out('line', { page: name, text }));
  const response = await page.goto(url);
  out('loaded', { page: name, http_status: response ? response.status() : null, browser: browser.version() });
}

out('ready', { browser: browser.version() });
commands(async (command) => {
  const tab = tabs[command.page];
  if (command.cmd === 'open') await open(command.page, command.url);
  else if (command.cmd === 'eval') {
    const result = await tab.page.evaluate(command.js);
    out('eval', { page: command.page, result: result === undefined ? null : result });
  } else if (command.cmd === 'wait') {
    await tab.page.waitForFunction(command.js, null, { timeout: command.timeout ?? 20000 });
    out('waited', { page: command.page, js: command.js });
  } else if (command.cmd === 'close_page') {
    await tab.context.close();
    delete tabs[command.page];
    out('page_closed', { page: command.page });
  } else out('error', { error: `unknown command ${command.cmd}` });
}, async () => {
  await browser.close();
});
