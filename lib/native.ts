/**
 * The one place that loads the native addon. `DVK_NATIVE_PATH` points at a specific build
 * (a directory holding build/ or prebuilds/, or the .node file itself).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** SO_PEERCRED of a connected Unix socket: who the kernel says is on the other end. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** DVK_IOC_VERSION on an open /dev/dvk; throws with `code` (ENOTTY for another file). */
  dvkVersion(fd: number): {
    abi: number;
    maxPayload: number;
    features: bigint;
    queueLength: number;
    queueBytes: number;
  };
  /** The uAPI header's constants this build was compiled with. */
  readonly abi: {
    readonly version: number;
    readonly nameMax: number;
    readonly slotsMax: number;
    readonly any: number;
    readonly parkedMax: number;
  };
}

const require = createRequire(import.meta.url);
// dist/lib/native.js -> the package root, where binding.gyp and build/ live.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  const override = process.env.DVK_NATIVE_PATH;
  try {
    if (override?.endsWith('.node')) {
      cached = require(override) as NativeAddon;
    } else {
      const load = require('node-gyp-build') as (dir: string) => NativeAddon;
      cached = load(override ?? packageRoot);
    }
  } catch (err) {
    throw new Error(
      `cannot load the DVK native addon (${(err as Error).message}). ` +
        'Build it with `npm rebuild` (needs python3, make and g++), ' +
        'or set DVK_NATIVE_PATH to a directory or .node file that holds a build.',
      { cause: err },
    );
  }
  return cached;
}
