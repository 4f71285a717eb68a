/**
 * A DVK process driven by the test that forked it: it binds one endpoint and runs calls on
 * command, so tests exercise real separate processes (and can kill -9 them mid-call).
 * Messages use advanced serialization, so Buffers and bigints cross intact.
 */
import { type Endpoint, isDvkError, type Message, openNode } from '../../lib/index.js';
import type { PeerCommand, PeerReply } from './peer.js';

let ep: Endpoint | undefined;
const controllers = new Map<number, AbortController>();

function send(reply: PeerReply): void {
  process.send?.(reply);
}

function errorOf(err: unknown) {
  if (isDvkError(err)) return { code: err.code, message: err.message, endpoint: err.endpoint };
  return { code: 'UNEXPECTED', message: String((err as Error)?.stack ?? err) };
}

/**
 * Serves requests until closed: echo, count, or take requests and never answer. Plain messages
 * are taken and reported too (never answered); notifications are ignored.
 */
async function serve(self: Endpoint, mode: 'echo' | 'hold' | 'count'): Promise<void> {
  let count = 0;
  const held: Message[] = [];
  for await (const m of self) {
    if (m.kind === 'message') {
      send({ event: 'message', source: m.source, type: m.type, payload: m.payload });
      continue;
    }
    if (m.kind !== 'request') continue;
    send({ event: 'request', source: m.source, type: m.type, payload: m.payload });
    if (mode === 'hold') held.push(m);
    else if (mode === 'count') await self.reply(m, { type: ++count, payload: m.payload });
    else await self.reply(m, { type: m.type, payload: m.payload });
  }
}

process.on('message', async (cmd: PeerCommand) => {
  try {
    switch (cmd.cmd) {
      case 'bind': {
        const node = openNode(
          cmd.socketPath === undefined ? { backend: 'kernel' } : { socketPath: cmd.socketPath },
        );
        ep = await node.bind({ dc: cmd.dc, endpoint: cmd.endpoint });
        return send({ id: cmd.id, ok: true, value: ep.address });
      }
      case 'serve':
        if (!ep) throw new Error('not bound');
        serve(ep, cmd.mode).catch((err) => send({ event: 'serve-error', error: errorOf(err) }));
        return send({ id: cmd.id, ok: true, value: null });
      case 'call': {
        if (!ep) throw new Error('not bound');
        const controller = new AbortController();
        controllers.set(cmd.id, controller);
        const options = { ...(cmd.options ?? {}), signal: controller.signal };
        // Arguments are passed through unchecked on purpose: bad ones must fail inside DVK.
        const [a, b] = cmd.args as [never, never];
        let value: unknown;
        if (cmd.method === 'receive') value = await ep.receive(options);
        else if (cmd.method === 'notify') value = await ep.notify(a, b);
        else if (cmd.method === 'reply') value = await ep.reply(a, b);
        else value = await ep[cmd.method](a, b, options);
        controllers.delete(cmd.id);
        return send({ id: cmd.id, ok: true, value: value ?? null });
      }
      case 'abort':
        controllers.get(cmd.target)?.abort();
        return send({ id: cmd.id, ok: true, value: null });
      case 'close':
        await ep?.close();
        return send({ id: cmd.id, ok: true, value: null });
    }
  } catch (err) {
    if ('id' in cmd) send({ id: cmd.id, ok: false, error: errorOf(err) });
  }
});

send({ event: 'ready' });
