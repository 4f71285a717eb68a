/**
 * The native addon as built by node-gyp: it is compiled against the module's own uAPI header
 * (never a copy), and its errors carry errno names.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { native } from '../../lib/native.js';

const header = readFileSync(
  fileURLToPath(new URL('../../../kmod/include/uapi/linux/dvk.h', import.meta.url)),
  'utf8',
);

/** The value of a `#define NAME value` line of the uAPI header. */
function defined(name: string): number {
  const m = new RegExp(`^#define ${name}\\s+(\\S+?)U?\\s*(/\\*.*)?$`, 'm').exec(header);
  if (!m?.[1]) throw new Error(`${name} is not defined in dvk.h`);
  return Number(m[1]);
}

test('the addon carries the constants of kmod/include/uapi/linux/dvk.h', (t) => {
  const { abi } = native();
  t.is(abi.version, defined('DVK_ABI_VERSION'));
  t.is(abi.nameMax, defined('DVK_NAME_MAX'));
  t.is(abi.slotsMax, defined('DVK_SLOTS_MAX'));
  t.is(abi.any, defined('DVK_ANY'));
  t.is(abi.parkedMax, defined('DVK_PARKED_MAX'));
});

test('dvkVersion on a file that is not /dev/dvk fails with ENOTTY, on a bad fd with EBADF', (t) => {
  const fd = openSync('/dev/null', 'r');
  try {
    const err = t.throws(() => native().dvkVersion(fd)) as Error & { code?: string };
    t.is(err.code, 'ENOTTY');
    t.regex(err.message, /DVK_IOC_VERSION/);
  } finally {
    closeSync(fd);
  }
  const bad = t.throws(() => native().dvkVersion(1_000_000)) as Error & { code?: string };
  t.is(bad.code, 'EBADF');
});
