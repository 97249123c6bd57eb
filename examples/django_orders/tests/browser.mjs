// Headless Chromium (Debian's, through playwright-core) using the board as people would:
// one browser context (cookie jar) per user, any number of tabs in each.
//
// Run by tests/servers/node_clients.py (cwd: tests/js, whose node_modules has playwright-core).
// config: {chromium}  (the executable's path)
// commands, each with an "id" that its answer repeats:
//   {"cmd": "open", "tab", "user", "url"}                -> opened {http_status, url}
//   {"cmd": "login", "tab", "user", "url", "username", "password"}
//        opens the login page, fills it in and signs in  -> opened {http_status, url}
//   {"cmd": "click", "tab", "selector"}                  -> clicked
//   {"cmd": "fill", "tab", "selector", "value"}          -> filled
//   {"cmd": "wait", "tab", "selector", "text", "timeout"?} -> shown {texts}, once an element
//        matching `selector` shows `text`; else not_shown {texts}: what it showed instead
//   {"cmd": "read", "tab", "selector"}                   -> texts {texts}
//   {"cmd": "reload", "tab"}                             -> opened {http_status, url}
// Page errors print page_error {tab, error}; console messages print console {tab, level, text}.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// playwright-core and the JSON-lines helpers come from tests/js, the working directory
const require = createRequire(path.join(process.cwd(), 'package.json'));
const { chromium } = require('playwright-core');
const { commands, config, out } = await import(pathToFileURL(path.join(process.cwd(), 'lib.mjs')));

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const contexts = {};
const tabs = {};

const texts = (tab, selector) =>
  tabs[tab].$$eval(selector, (found) => found.map((e) => e.textContent.replace(/\s+/g, ' ').trim()));

async function newTab(tab, user) {
  contexts[user] = contexts[user] || (await browser.newContext());
  const page = await contexts[user].newPage();
  tabs[tab] = page;
  page.on('console', (message) => out('console', { tab, level: message.type(), text: message.text() }));
  page.on('pageerror', (error) => out('page_error', { tab, error: String(error) }));
  return page;
}

async function open({ tab, user, url }) {
  const page = await newTab(tab, user);
  const response = await page.goto(url);
  return { http_status: response ? response.status() : null, url: page.url() };
}

async function login({ tab, user, url, username, password }) {
  const page = await newTab(tab, user);
  await page.goto(url);
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.click('button[type="submit"]'),
  ]);
  return { http_status: response ? response.status() : null, url: page.url() };
}

async function wait({ tab, selector, text, timeout }) {
  try {
    await tabs[tab].locator(selector).filter({ hasText: text }).first().waitFor({ timeout: timeout || 20000 });
    return ['shown', { texts: await texts(tab, selector) }];
  } catch (err) {
    return ['not_shown', { texts: await texts(tab, selector), error: String(err).slice(0, 300) }];
  }
}

out('ready', { browser: browser.version() });
commands(async (command) => {
  const { cmd, id, tab } = command;
  if (cmd === 'open') out('opened', { id, tab, ...(await open(command)) });
  else if (cmd === 'login') out('opened', { id, tab, ...(await login(command)) });
  else if (cmd === 'click') { await tabs[tab].click(command.selector); out('clicked', { id, tab }); }
  else if (cmd === 'fill') { await tabs[tab].fill(command.selector, command.value); out('filled', { id, tab }); }
  else if (cmd === 'wait') { const [type, fields] = await wait(command); out(type, { id, tab, ...fields }); }
  else if (cmd === 'read') out('texts', { id, tab, texts: await texts(tab, command.selector) });
  else if (cmd === 'reload') {
    const response = await tabs[tab].reload();
    out('opened', { id, tab, http_status: response ? response.status() : null, url: tabs[tab].url() });
  }
  else out('error', { id, error: `unknown command ${cmd}` });
}, async () => {
  await browser.close();
});
