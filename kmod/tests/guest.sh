#!/bin/sh
# Runs inside the test VM (kmod/vm/test) with dvk.ko loaded: every C test program, then the
# module's lifecycle. TAP lines on stdout; the exit status is non-zero if anything failed.
cd "$(dirname "$0")" || exit 1
status=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then echo "ok - $desc"; else echo "not ok - $desc"; status=1; fi
}
stats_zero() { ! grep -qv ' 0$' /proc/dvk/stats; }

./uapi || status=1
./proxy || status=1
./async || status=1
./stress "${DVK_STRESS_CALLS:-100000}" 4 || status=1
# The TypeScript suites on the kernel backend: the conformance suite (the same tests the user
# backend passes), the addon's, and the kernel-only ones (worker threads, exit cleanup, leaks).
root=$(cd ../.. && pwd)
if [ -f "$root/dist/test/conformance/send-receive.test.js" ]; then
  (cd "$root" && node node_modules/ava/entrypoints/cli.mjs --config ava.kernel.config.mjs --tap) ||
    status=1
else
  echo "not ok - the TypeScript build is missing (dist/): run npm run build first"
  status=1
fi
check "after all tests, /proc/dvk/stats is all zeros" stats_zero
[ "$status" -eq 0 ] || cat /proc/dvk/stats

# rmmod must be refused while a file is open, and succeed once it is closed.
exec 3<>/dev/dvk
check "rmmod is refused while /dev/dvk is open" sh -c '! busybox rmmod dvk 2>/dev/null'
exec 3>&-
check "rmmod succeeds once every file is closed" busybox rmmod dvk
check "/dev/dvk and /proc/dvk are gone after rmmod" sh -c '[ ! -e /dev/dvk ] && [ ! -e /proc/dvk ]'
exit $status
