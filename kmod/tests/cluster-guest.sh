#!/bin/sh
# Runs inside each guest of kmod/vm/cluster, as node g1 (guest A) or g2 (guest B) of the cluster
# file $DVK_SHARED/cluster.yaml; $DVK_SHARED is a directory both guests and the host share.
#
#   sh kmod/tests/cluster-guest.sh g1|g2      (DVK_CLUSTER_BACKEND=user|kernel, default user)
#
# Both start their node's agent (log: $DVK_SHARED/agent-gN.log) and wait until its link to the
# other node is up. Guest B then runs the peer host (test/helpers/peer-host.ts) that guest A's
# tests fork their peers through, writes $DVK_SHARED/ready-g2, and waits for guest A's done
# marker. Guest A waits for ready-g2, runs the conformance suite across the two guests
# (DVK_TEST_BACKEND=guests, ava.guests.config.mjs) and the link-cut test (test/guests) as TAP,
# and writes $DVK_SHARED/done with its status. The host writes gone-gN when a guest's VM ends,
# so neither guest waits for a dead one. The exit status is non-zero if anything failed.
self=$1
shared=${DVK_SHARED:?DVK_SHARED: the directory shared with the other guest}
backend=${DVK_CLUSTER_BACKEND:-user}
case $self in
  g1) other=g2 ;;
  g2) other=g1 ;;
  *) echo "usage: cluster-guest.sh g1|g2" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.." || exit 1
# Both nodes' agent socket, from the cluster file: the same path in each guest.
sock=/run/dvk/agent.sock
peers=10.10.0.2:7200
began=$(date +%s)
log() { echo "cluster-guest $self: [$(($(date +%s) - began))s] $*"; }
# Waits up to $1 seconds for the file $2, giving up early if the file $3 appears.
await_file() {
  n=$(($1 * 10))
  while [ ! -e "$2" ]; do
    [ -n "${3:-}" ] && [ -e "$3" ] && return 1
    n=$((n - 1)); [ $n -gt 0 ] || return 1
    sleep 0.1
  done
}

if [ "$self" = g2 ]; then
  # Guest B's pids far above guest A's: tests compare a peer's pid with their own.
  echo 4194304 > /proc/sys/kernel/pid_max && echo 1000000 > /proc/sys/kernel/ns_last_pid
fi

log "starting the agent ($backend backend)"
node dist/lib/cli/dvk.js agent --config "$shared/cluster.yaml" --node "$self" \
  --backend "$backend" --log-level info > "$shared/agent-$self.log" 2>&1 &
agent=$!
stop_agent() {
  kill -TERM "$agent" 2>/dev/null && wait "$agent"
}

# Until the agent's status shows its link to the other node up (60 s).
node --input-type=module -e '
  import { openNode } from "./dist/lib/index.js";
  const [sock, other] = process.argv.slice(1);
  const node = openNode({ socketPath: sock });
  const end = Date.now() + 60_000;
  let seen = "no answer";
  while (Date.now() < end) {
    try {
      const status = await node.status();
      const link = status.cluster?.links.find((l) => l.name === other);
      if (link?.state === "up") process.exit(0);
      seen = `link ${link?.state ?? "missing"}`;
    } catch (err) {
      seen = err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`the link to ${other} is not up after 60 s (${seen})`);
  process.exit(1);
' "$sock" "$other" || {
  log "no link to $other; the agent's log:"; cat "$shared/agent-$self.log"; stop_agent; exit 1; }
log "the link to $other is up"

if [ "$self" = g2 ]; then
  node dist/test/helpers/peer-host.js --listen "$peers" --ready "$shared/ready-g2" \
    > "$shared/peer-host.log" 2>&1 &
  host=$!
  status=0
  if await_file 30 "$shared/ready-g2"; then
    log "the peer host listens on $peers; waiting for guest A"
    await_file 1800 "$shared/done" "$shared/gone-g1" || log "guest A ended without its done marker"
    if ! kill -0 "$host" 2>/dev/null; then log "the peer host died"; status=1; fi
  else
    log "the peer host did not start"; status=1
  fi
  kill -TERM "$host" 2>/dev/null; wait "$host"
  kill -0 "$agent" 2>/dev/null || { log "the agent died"; status=1; }
  stop_agent
  exit $status
fi

status=0
if ! await_file 120 "$shared/ready-g2" "$shared/gone-g2"; then
  log "guest B's peer host never came up"; status=1
else
  export DVK_GUESTS_PEERS=$peers DVK_GUESTS_AGENT=$sock
  # The user backend binds through the agent; unset, the tests bind through dvk.ko.
  [ "$backend" = user ] && export DVK_GUESTS_SOCKET=$sock
  ava="node node_modules/ava/entrypoints/cli.mjs --config ava.guests.config.mjs --tap --serial"
  log "the conformance suite, peers in guest B"
  $ava 'dist/test/conformance/**' || status=1
  log "the link-cut test"
  $ava 'dist/test/guests/**' || status=1
  log "tests done (status $status)"
fi
echo "$status" > "$shared/done"
kill -0 "$agent" 2>/dev/null || { log "the agent died"; status=1; }
stop_agent
exit $status
