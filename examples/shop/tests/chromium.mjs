// Headless Chromium (Debian's, through playwright-core) using the shop's page as a person would.
//
// Run by tests/servers/node_clients.py (cwd: tests/js, whose node_modules has playwright-core).
// config: {chromium}  (the executable's path)
// commands, each with an "id" that its answer repeats:
//   {"cmd": "open", "tab", "url"}                 -> opened {http_status}
//   {"cmd": "click", "tab", "selector"}           -> clicked
//   {"cmd": "fill", "tab", "selector", "value"}   -> filled
//   {"cmd": "wait", "tab", "selector", "text"}    -> shown {texts}: once an element matching
//        `selector` shows `text` (on failure: not_shown {texts}, what it showed instead)
//   {"cmd": "read", "tab", "selector"}            -> texts {texts}: every matching element's text
// Page errors print page_error {tab, error}; console messages print console {tab, level, text}.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// playwright-core and the JSON-lines helpers come from tests/js, the working directory
const require = createRequire(path.join(process.cwd(), 'package.json'));
const { chromium } = require('playwright-core');
const { commands, config, out } = await import(pathToFileURL(path.join(process.cwd(), 'lib.mjs')));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'shop-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const tabs = {};

async function texts(tab, selector) {
  return tabs[tab].$$eval(selector, (found) => found.map((element) => element.textContent));
}

async function open(tab, url) {
  const page = (Object.keys(tabs).length === 0 && context.pages()[0]) || (await context.newPage());
  tabs[tab] = page;
  page.on('console', (message) => out('console', { tab, level: message.type(), text: message.text() }));
  page.on('pageerror', (error) => out('page_error', { tab, error: String(error) }));
  const response = await page.goto(url);
  return { http_status: response ? response.status() : null };
}

async function wait(id, tab, selector, text, timeout) {
  try {
    await tabs[tab].locator(selector).filter({ hasText: text }).first().waitFor({ timeout });
  } catch (error) {
    return out('not_shown', { id, tab, error: String(error), texts: await texts(tab, selector) });
  }
  out('shown', { id, tab, texts: await texts(tab, selector) });
}

out('ready');
async function run(command) {
  const { id, tab, selector } = command;
  switch (command.cmd) {
    case 'open': return out('opened', { id, tab, ...(await open(tab, command.url)) });
    case 'click': await tabs[tab].click(selector, { timeout: 10000 }); return out('clicked', { id, tab });
    case 'fill': await tabs[tab].fill(selector, command.value); return out('filled', { id, tab });
    case 'wait': return wait(id, tab, selector, command.text, command.timeout || 15000);
    case 'read': return out('texts', { id, tab, texts: await texts(tab, selector) });
    default: return out('error', { id, error: `unknown command ${command.cmd}` });
  }
}

commands(async (command) => {
  try {
    await run(command);
  } catch (error) {
    out('error', { id: command.id, cmd: command.cmd, error: String((error && error.stack) || error) });
  }
}, async () => {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
});
