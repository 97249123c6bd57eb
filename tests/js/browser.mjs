// Headless Chromium (Debian's, through playwright-core) loading a page of the application.
//
// config: {url, chromium?}   (chromium: the executable, default /usr/bin/chromium)
// The page calls window.report(what) when something happened (subscribed, refused, event);
// each report prints {"type": what, "status": <#status text>, "events": [<#events items>]},
// read from the DOM at that moment. Commands: {"cmd": "dom"} prints the same as "dom"; close.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { commands, config, out } from './lib.mjs';

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const page = context.pages()[0] || await context.newPage();

async function dom() {
  return {
    status: await page.textContent('#status'),
    events: await page.$$eval('#events li', (items) => items.map((li) => li.textContent)),
  };
}

page.on('console', (message) => out('console', { level: message.type(), text: message.text() }));
page.on('pageerror', (error) => out('page_error', { error: String(error) }));
await page.exposeFunction('report', async (what) => out(what, await dom()));

const response = await page.goto(config.url);
out('loaded', { http_status: response ? response.status() : null, browser: context.browser()?.version() ?? null });

commands(async (command) => {
  if (command.cmd === 'dom') out('dom', await dom());
  else out('error', { error: `unknown command ${command.cmd}` });
}, async () => {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
});
