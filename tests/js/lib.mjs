// Shared by the client scripts: the JSON config, JSON-lines output, commands on stdin.
// Driven by tests/servers/node_clients.py.
import readline from 'node:readline';

/** The script's config: the JSON object given as the first argument. */
export const config = JSON.parse(process.argv[2] || '{}');

/** Print one JSON line for the test to read. */
export function out(type, fields = {}) {
  process.stdout.write(JSON.stringify({ type, ...fields }) + '\n');
}

/** Call handler(command) for each JSON line on stdin; {"cmd": "close"} or EOF calls onClose. */
export function commands(handler, onClose) {
  const rl = readline.createInterface({ input: process.stdin });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      if (onClose) await onClose();
    } finally {
      out('closed');
      process.exit(0);
    }
  };
  rl.on('line', async (text) => {
    if (!text.trim()) return;
    let command;
    try {
      command = JSON.parse(text);
    } catch (err) {
      out('error', { error: `not JSON: ${text}` });
      return;
    }
    if (command.cmd === 'close') return close();
    try {
      await handler(command);
    } catch (err) {
      out('error', { cmd: command.cmd, error: String(err && err.stack || err) });
    }
  });
  rl.on('close', close);
}

process.on('unhandledRejection', (err) => out('error', { error: String(err && err.stack || err) }));
