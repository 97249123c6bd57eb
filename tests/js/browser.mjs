// Headless Chromium (Debian's, through playwright-core) loading pages of the application.
//
// config: {chromium?}  (the executable, default /usr/bin/chromium)
// commands: {"cmd": "open", "page": NAME, "url"} opens a tab; {"cmd": "dom", "page": NAME}; close.
// A page calls window.report(what) when something happened (subscribed, refused, event);
// each report prints {"type": what, "page": NAME, "status": <#status text>, "events": [<#events items>]},
// read from that page's DOM at that moment. Opening prints
// {"type": "loaded", "page", "http_status", "browser"}; page errors print "page_error".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { commands, config, out } from './lib.mjs';

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: typeof config.chromium === 'string' ? config.chromium : '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const pages = {};
const blank = context.pages()[0];

async function dom(page) {
  return {
    status: await page.textContent('#status'),
    events: await page.$$eval('#events li', (items) => items.map((li) => li.textContent)),
  };
}

async function open(name, url) {
  const page = (blank && !Object.keys(pages).length) ? blank : await context.newPage();
  pages[name] = page;
  page.on('console', (message) => out('console', { page: name, level: message.type(), text: message.text() }));
  page.on('pageerror', (error) => out('page_error', { page: name, error: String(error) }));
  await page.exposeFunction('report', async (what) => out(what, { page: name, ...(await dom(page)) }));
  const response = await page.goto(url);
  out('loaded', { page: name, http_status: response ? response.status() : null, browser: context.browser()?.version() ?? null });
}

out('ready');
commands(async (command) => {
  if (command.cmd === 'open') await open(command.page, command.url);
  else if (command.cmd === 'dom') out('dom', { page: command.page, ...(await dom(pages[command.page])) });
  else out('error', { error: `unknown command ${command.cmd}` });
}, async () => {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
});
