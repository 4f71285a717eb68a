import test from 'ava';
import { ConfigError, parseConfig } from '../../lib/agent/config.js';

test('an empty configuration gets working defaults', (t) => {
  const config = parseConfig({});
  t.is(config.socket.mode, 0o600);
  t.is(config.limits.maxPayload, 65536);
  t.deepEqual(
    config.dcs.map((d) => [d.id, d.name]),
    [[0, 'default']],
  );
});

test('octal socket modes are read as octal', (t) => {
  t.is(parseConfig({ socket: { mode: '0660' } }).socket.mode, 0o660);
  t.is(parseConfig({ socket: { mode: '640' } }).socket.mode, 0o640);
});

test('every problem is reported with its path', (t) => {
  const err = t.throws(
    () =>
      parseConfig({
        socket: { mode: '0007' },
        limits: { maxPayload: 10 },
        dcs: [
          { id: 1, name: 'a' },
          { id: 1, name: 'a' },
        ],
        typo: true,
      }),
    { instanceOf: ConfigError },
  );
  const message = err?.message ?? '';
  for (const part of ['socket.mode', 'limits.maxPayload', 'dcs[1].id', 'dcs[1].name', 'typo']) {
    t.true(message.includes(part), `${part} in ${message}`);
  }
});

test('a payload limit below the 64 KiB the contract guarantees is refused', (t) => {
  t.throws(() => parseConfig({ limits: { maxPayload: 65535 } }), { instanceOf: ConfigError });
});
