/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * DVK: endpoint IPC for distributed services. The interface of /dev/dvk.
 *
 * This header is the one definition of the ABI: the module, the native addon and the C tests
 * all include it. The semantics are those of docs/semantics.md in the DVK repository; this
 * comment says how they map onto the device.
 *
 * Model
 *   A DC (distributed container) is a namespace of endpoint numbers 0..slots-1. DCs are created
 *   and destroyed by a privileged process (CAP_SYS_ADMIN or CAP_NET_ADMIN). Any process may
 *   open /dev/dvk and bind the open file to one endpoint (DVK_IOC_BIND); every call then acts
 *   as that endpoint. Closing the file (or the process dying) unbinds it. Each bind of a number
 *   gets the next generation (1, 2, ...; 0 never appears), and a destination or filter that
 *   names a generation matches only that incarnation.
 *
 * Calls
 *   DVK_IOC_SEND           queue a message at a destination; waits while its queue is full.
 *   DVK_IOC_RECEIVE        take the next notification or message, optionally from one source.
 *   DVK_IOC_SENDREC        send a request and wait for its reply, in one call.
 *   DVK_IOC_REPLY          answer a received request, exactly once.
 *   DVK_IOC_REPLY_RECEIVE  reply, then receive: one call per request a server handles.
 *   DVK_IOC_NOTIFY         OR bits into the destination's pending mask for this source; never
 *                          waits (to learn when bits for another node are pending there,
 *                          submit DVK_OP_NOTIFY: see below).
 *   poll()                 EPOLLIN while a notification or message is ready to receive, or an
 *                          interrupted sendrec (see below) has its reply.
 *
 * Arguments
 *   Every structure has a fixed layout, the same for 32- and 64-bit processes. Pointers are
 *   __u64. Fields named reserved, and flags this header does not define, must be zero: anything
 *   else fails with EINVAL, so that later versions can give them meaning. Fields the kernel
 *   sets (flags, request_id and bits of an out-going message) must be zero too. In a message
 *   the kernel fills in (a receive's msg, a sendrec's reply) only payload and size are read,
 *   so one structure can be reused call after call. Unknown ioctls fail with ENOTTY.
 *   DVK_IOC_VERSION reports the ABI version and a mask of features.
 *
 * Waiting
 *   deadline_ns is an absolute CLOCK_MONOTONIC time in nanoseconds; 0 means no deadline.
 *   DVK_CALL_NONBLOCK fails with EAGAIN where the call would wait. A call that passes its
 *   deadline fails with ETIMEDOUT, and whatever it had started is undone: a timed-out send was
 *   never queued, a timed-out receive took nothing.
 *   Waits are interruptible. A signal undoes the call in the same way and the ioctl is
 *   restarted (or fails with EINTR, per the handler's SA_RESTART); the absolute deadline keeps
 *   its meaning across the restart. Two calls cannot be undone. A send in flight to another
 *   node (see DVK_PROXY_VERDICTS) waits for its verdict, killably: neither a signal nor its
 *   deadline ends that wait. And a sendrec whose request the server has already received: the
 *   kernel then keeps the call, writes its id to dvk_sendrec.call and sets DVK_CALL_RESUME in
 *   dvk_sendrec.flags before returning; the restarted ioctl (the same arguments) waits for that
 *   call's reply instead of sending again, so a request never runs twice. A process that gets
 *   EINTR may do the same. Once a resumed call returns for good, the kernel clears
 *   DVK_CALL_RESUME and dvk_sendrec.call again. At most DVK_PARKED_MAX such calls are kept per
 *   file; beyond that the oldest is given up (its reply will be dropped).
 *   A process that closes a descriptor of the file ends its own threads' waits on it with
 *   EBADF, each call undone as for a timeout (a send in flight goes on waiting for its
 *   verdict). Other processes sharing the file (after fork) are not affected; the endpoint
 *   unbinds when the last descriptor is closed.
 *
 * Messages
 *   Payloads are 0..max_payload bytes (a module parameter, reported by DVK_IOC_VERSION). A
 *   receive gives its buffer in msg.payload and its capacity in msg.size; msg.size returns the
 *   payload's length. If the buffer is too small, the call fails with EMSGSIZE, msg.size gives
 *   the length needed, and the message stays where it was. If the kernel cannot write to the
 *   buffer (EFAULT), the message also stays. A request must be answered with DVK_IOC_REPLY,
 *   naming the request's source, source generation and request id; a reply to a caller that
 *   gave up is accepted and dropped.
 *
 * Asynchronous calls
 *   An event loop (the Node addon) keeps many calls in flight on one file: DVK_IOC_SUBMIT
 *   starts a send, receive or sendrec and returns at once with the call's token; its outcome
 *   arrives later as a completion, and poll() reports EPOLLIN while completions wait (once a
 *   file has submitted a call, that is all EPOLLIN means for it). DVK_IOC_REAP copies
 *   completions out, oldest first, as records: a struct dvk_completion, then the received
 *   payload, then zeros up to a multiple of 8 bytes. A reap buffer should hold at least one
 *   largest record (sizeof(struct dvk_completion) + max_payload rounded up to 8); REAP
 *   returns the records that fit, and fails with EMSGSIZE (dvk_reap.size giving the size
 *   needed) only when the first does not. Nothing waits in REAP: with no completion it fails
 *   with EAGAIN. A SUBMIT whose token cannot be written back fails with EFAULT, but the call
 *   runs: its completion comes under a token the caller never learnt.
 *   Submitted calls follow the rules of their blocking forms, in submission order (sends
 *   keep their order in a full queue; receives are served in submission order), with no
 *   deadline: the caller ends a call with DVK_IOC_CANCEL, which either undoes it as a timeout
 *   would (0: no completion will come) or finds it complete (EALREADY: its completion is
 *   reaped as usual, and its outcome stands). A send in flight to another node (see
 *   DVK_PROXY_VERDICTS) cannot be undone: CANCEL answers EALREADY, and its completion comes
 *   with its verdict. A submitted send with DVK_CALL_NONBLOCK (the one flag
 *   dvk_submit.flags takes) completes at once with EAGAIN where it would wait for room; to a
 *   remote endpoint of a DVK_PROXY_VERDICTS proxy it waits for its verdict, and the other node
 *   refuses it with EAGAIN instead of waiting for room there (see below). DVK_OP_NOTIFY posts
 *   notification bits (dvk_submit.msg: peer, peer_gen and bits; the rest zero) as
 *   DVK_IOC_NOTIFY does and completes once they are pending at the destination: at once for a
 *   local one; for a remote endpoint of a DVK_PROXY_VERDICTS proxy, with the verdict on the
 *   note that carries them (see below). Bits cannot be taken back: CANCEL of a notify waiting
 *   for its verdict answers EALREADY. A file keeps at most DVK_ASYNC_MAX calls submitted and
 *   not reaped, and its unfinished sends and sendrecs pin at most DVK_ASYNC_BYTES_MAX payload bytes (one call
 *   is always admitted); beyond that SUBMIT fails with EAGAIN. Closing the file undoes every
 *   pending call (a send in flight is abandoned: its verdict is ignored).
 *
 * The proxy role
 *   The node agent carries messages between nodes. It opens /dev/dvk and attaches the file as
 *   the node's one proxy (DVK_IOC_PROXY_ATTACH, privileged). It registers each endpoint that
 *   lives on another node, in its DC and slot, with that incarnation's generation
 *   (DVK_IOC_REMOTE_ADD); local processes then address it like any endpoint. Everything sent
 *   to a remote endpoint waits in its queue, with the usual bounds and backpressure, until the
 *   proxy drains it (DVK_IOC_PROXY_DRAIN, many records per call). A plain send to a remote
 *   endpoint completes once it is in that queue, in the node's custody (unless the proxy asks
 *   for verdicts: see DVK_PROXY_VERDICTS below); a sendrec waits for the reply, or for a
 *   failure, that the proxy injects. The proxy injects what arrives from other nodes
 *   (DVK_IOC_PROXY_INJECT, many records per call): messages, requests and notifications
 *   from registered remote endpoints to local ones, and replies and failures for local
 *   callers. A request from a remote caller that can no longer be answered here (its server
 *   unbound) comes out of the drain as a DVK_PROXY_FAIL record. Unregistering a remote
 *   endpoint (DVK_IOC_REMOTE_DEL), or closing the proxy file, ends every call waiting on it:
 *   with ESRCH, or with EHOSTUNREACH when the node is down (DVK_REMOTE_NODE_DOWN, and always
 *   when the proxy closes).
 *   Batches are sequences of records: a struct dvk_proxy_msg, then its payload, then zeros up
 *   to a multiple of 8 bytes. A drain buffer should hold at least one largest record
 *   (sizeof(struct dvk_proxy_msg) + max_payload); a smaller one fails with EMSGSIZE when the
 *   next record does not fit, and dvk_proxy_batch.size gives the size needed. An inject takes
 *   records in order and stops at the first it cannot take: dvk_proxy_batch.count and .size
 *   say how many records and bytes it took, and .error why it stopped (0: it took them all).
 *   EAGAIN there means the destination already holds DVK_INJECT_HELD_MIN (or, if larger, its
 *   DC's queue_length) injected messages that wait for room: inject the rest later. EADDRNOTAVAIL means the source is not a registered remote
 *   endpoint; ENOENT that the local destination is not bound (or not that generation). The
 *   padding after a payload is ignored on inject and zero on drain; count and error are only
 *   written, so one dvk_proxy_batch can be reused.
 *   Replies and failures for remote callers are never held back by a remote endpoint's queue
 *   bounds: they answer requests the proxy itself injected, so the proxy bounds them.
 *   A proxy attached with DVK_PROXY_CLAIMS keeps endpoint numbers unique across the cluster:
 *   a local DVK_IOC_BIND then takes the slot but waits (interruptibly; no call reaches it yet)
 *   until the proxy injects a DVK_PROXY_CLAIMED verdict for the DVK_PROXY_CLAIM record it
 *   drained: status 0 completes the bind, a negative errno (EADDRINUSE: bound on another
 *   node) fails it. A bind interrupted by a signal gives up its claim (a DVK_PROXY_UNBOUND
 *   record follows if the claim was drained) and restarts. Every local unbind is drained as
 *   DVK_PROXY_UNBOUND, after every record the endpoint sent; endpoints bound before the proxy
 *   attached are drained first, as DVK_PROXY_BOUND. These records carry the endpoint in both
 *   src/src_gen and dst/dst_gen. If the proxy goes away, waiting binds complete. The
 *   capability is checked when a file becomes the proxy; whoever holds that file after acts
 *   as the proxy. Once the proxy closes, remote endpoints are unregistered: calls to them
 *   fail with ENOENT.
 *   A proxy attached with DVK_PROXY_VERDICTS makes a send to a remote endpoint complete only
 *   once the other node has put the message in its destination's queue: backpressure and the
 *   deadline act there, and a send reported as failed was never delivered. Such a send waits
 *   in the remote endpoint's queue like any (bounds, held senders, order); until it is
 *   drained, its deadline, a signal, DVK_IOC_CANCEL or close() withdraw it. It is drained as a
 *   DVK_PROXY_MESSAGE whose request_id is its send id (unique for the sending incarnation:
 *   sends and sendrecs number from one counter) and whose timeout_ns is what was left of its
 *   deadline (0: none; at least 1 once past; drained REQUESTs carry the same for their
 *   sendrec). From then on it is in flight, and only its verdict ends it: the proxy injects
 *   one DVK_PROXY_SENT record per such MESSAGE, from the remote endpoint (src, src_gen) to the
 *   sender (dst, dst_gen), with the send id and status 0 (delivered: the send succeeds) or a
 *   negative errno (the send fails with it); a verdict no send waits for is ignored. In
 *   flight, the deadline no longer ends the send (the other node applies timeout_ns); when it
 *   passes, a DVK_PROXY_CANCEL record (from the sender src to the remote endpoint dst, the
 *   send id, status -ETIMEDOUT) is drained once, so that the proxy may ask the other node to
 *   withdraw it, and the verdict decides. A blocking send in flight waits killably: other
 *   signals and close() do not end that wait, a fatal one abandons the send (its verdict is
 *   then ignored). DVK_IOC_CANCEL of a submitted send in flight fails with EALREADY (its
 *   completion comes with the verdict) and posts that CANCEL record once, with -ECANCELED.
 *   REMOTE_DEL of the endpoint ends its sends in flight with ESRCH (EHOSTUNREACH with
 *   DVK_REMOTE_NODE_DOWN), closing the proxy with EHOSTUNREACH; a sender closing its file
 *   abandons its submitted ones. Such a send always waits: with DVK_CALL_NONBLOCK it fails with
 *   EAGAIN (submit it instead), with a deadline already past with ETIMEDOUT, before anything
 *   is queued.
 *   The other way round, an injected DVK_PROXY_MESSAGE with a non-zero request_id (a send id
 *   the other node drained) wants a verdict (one the inject did not take gets none: the inject
 *   said why it stopped). Once it is in the local destination's queue (at once, or later when
 *   room comes, or when a receive takes it from the held messages), the module posts a
 *   DVK_PROXY_SENT record for the proxy to drain: from the destination
 *   (src, src_gen) to the remote sender (dst, dst_gen), the send id, status 0. If it can never
 *   be delivered (the destination unbinds while it is held), status -ESRCH. Receivers see a
 *   plain message, request_id 0. An injected DVK_PROXY_CANCEL, from the remote sender (src,
 *   src_gen) to the local destination (dst; dst_gen 0: current) with the send id and a
 *   negative errno, withdraws that message if it is still held, and its SENT record carries
 *   that errno; if it is queued or delivered already (its SENT 0 is on its way), or there is
 *   no such message, the CANCEL is taken and does nothing. What a verdict needs is allocated
 *   when the message is injected, so verdicts are never lost while the remote sender is
 *   registered; like replies to remote callers, they are never held back by queue bounds: they
 *   wait in the remote sender's queue and are drained in order with what local endpoints sent
 *   it. timeout_ns, flags and reserved must be zero in every injected record. Without
 *   DVK_PROXY_VERDICTS, SENT, CANCEL and a MESSAGE with a request_id are invalid records
 *   (EINVAL).
 *   A submitted non-blocking send to a remote endpoint fails with EAGAIN if that endpoint's
 *   queue here has no room; otherwise it waits for its verdict like any, and is drained with
 *   DVK_PROXY_NONBLOCK in the MESSAGE's flags: the other node is to refuse it (verdict
 *   -EAGAIN) rather than hold it for room.
 *   Notifications to a remote endpoint get verdicts too. The bits that wait for the proxy from
 *   one source incarnation form one note, which has an id from the same counter as its send
 *   ids; a notify that finds that source's note pending adds its bits to it, and the note is
 *   drained as a DVK_PROXY_NOTIFY with its id in request_id. The proxy injects one
 *   DVK_PROXY_SENT per drained note (from the remote endpoint to the notifier, that id, status
 *   0 once the bits are pending at the destination, or a negative errno) and every submitted
 *   notify whose bits the note carried completes with it. REMOTE_DEL of the endpoint completes
 *   them with ESRCH (EHOSTUNREACH with DVK_REMOTE_NODE_DOWN, or when the proxy closes).
 *   Injected NOTIFY records carry no id: bits are pending here as soon as the inject took them.
 *   Sendrecs are withdrawn too. A local sendrec's request, once drained, is in flight to the
 *   other node; when its caller gives up on it (its deadline passes; DVK_IOC_CANCEL of a
 *   submitted one; a fatal signal; its process closes the file, EBADF; the file is released
 *   with the call submitted or kept for DVK_CALL_RESUME; a kept call is given up beyond
 *   DVK_PARKED_MAX), the call ends as it does for a local server, its answer is no longer
 *   awaited (a REPLY or FAIL for it is ignored), and one DVK_PROXY_CANCEL record is drained:
 *   from the caller (src, src_gen) to the remote endpoint (dst, dst_gen), with the sendrec's
 *   request_id and status -ETIMEDOUT (the deadline), -ESRCH (the caller is gone: killed, file
 *   closed or released) or -ECANCELED (DVK_IOC_CANCEL, or given up otherwise), so that the
 *   proxy may ask the other node to withdraw the request. The record takes the place of what
 *   the drain allocated for the awaited answer, so it is never lost while the remote endpoint
 *   is registered. A call kept for DVK_CALL_RESUME is not given up until one of the above; a
 *   request not drained yet is withdrawn here, with no record; and none is drained for calls
 *   that end because the remote endpoint is unregistered or the proxy closes.
 *   The other way round, an injected DVK_PROXY_CANCEL from the remote caller (src, src_gen)
 *   to the local destination (dst; dst_gen 0: current) whose request_id is that of a REQUEST
 *   injected from that caller withdraws the request if its server has not received it (it is
 *   queued, or held for room): it is removed and never delivered, and nothing is drained for
 *   it (no REPLY or FAIL is expected). Once a receive has taken it, the CANCEL does nothing:
 *   the server owes the reply, which is drained as usual (the caller's node drops it). The
 *   CANCEL's status is not used for a request. One CANCEL names at most one send or request:
 *   the MESSAGE injected from (src, src_gen) with that send id, or the REQUEST injected from it
 *   with that request id (each kind is matched on the id it was injected with). The two never
 *   share an id, as the ids of one incarnation's sends and sendrecs come from one counter on
 *   its node (an agent injecting for another kind of node must keep that rule); a CANCEL that
 *   names neither does nothing.
 *
 * Errors (errno)
 *   ENOENT     no such DC, destination not bound, or not that generation.
 *   EADDRINUSE the endpoint is bound already.     EISCONN  this file is bound already.
 *   ENOTCONN   this file is not bound.            EINVAL   a bad argument.
 *   EMSGSIZE   payload above max_payload, or a receive buffer too small.
 *   ESRCH      the destination unbound while the call waited on it.
 *   ETIMEDOUT  the deadline passed.               EAGAIN   DVK_CALL_NONBLOCK would wait.
 *   EPERM      DC management or the proxy role without the capability, or a proxy ioctl
 *              on a file that is not the proxy.
 *   EHOSTUNREACH the node of a remote destination is down, or the proxy went away.
 *   EADDRNOTAVAIL an injected record's source is not a registered remote endpoint.
 *   EBUSY      destroying a DC with endpoints bound, or a second proxy.
 *   EEXIST     a DC id or name in use.
 *   EFAULT     a bad pointer.                      ENOTTY   an unknown ioctl.
 *   EBADF      the calling process closed the file while the call waited.
 *   EALREADY   DVK_IOC_CANCEL of a call that has completed, or of a send in flight to
 *              another node.
 *   A send to another node whose proxy gives verdicts fails with the errno of its verdict:
 *   ETIMEDOUT, EAGAIN, ESRCH, ENOENT, ECANCELED (withdrawn at its sender's request), ...
 */
#ifndef _UAPI_LINUX_DVK_H
#define _UAPI_LINUX_DVK_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * 2: struct dvk_proxy_msg grew timeout_ns (48 to 56 bytes): an agent built for 1 misreads it.
 * 3: it grew flags (to 64 bytes); DVK_OP_NOTIFY; DVK_CALL_NONBLOCK in dvk_submit.flags.
 */
#define DVK_ABI_VERSION 3

/* DVK_IOC_VERSION features. */
#define DVK_FEATURE_IPC		(1ULL << 0)	/* the calls above */
#define DVK_FEATURE_REPLY_RECEIVE (1ULL << 1)	/* DVK_IOC_REPLY_RECEIVE */
#define DVK_FEATURE_PROXY	(1ULL << 2)	/* the proxy role and its batch ioctls */
#define DVK_FEATURE_ASYNC	(1ULL << 3)	/* SUBMIT, REAP and CANCEL */
#define DVK_FEATURE_CLAIMS	(1ULL << 4)	/* DVK_PROXY_CLAIMS: binds wait for the cluster */
#define DVK_FEATURE_VERDICTS	(1ULL << 5)	/* DVK_PROXY_VERDICTS: remote sends wait for it */

/* A DC name: 1..63 characters of [A-Za-z0-9_.-], NUL-terminated, zero-filled after. */
#define DVK_NAME_MAX		64
/* The largest number of endpoints in one DC. */
#define DVK_SLOTS_MAX		65536
/* A receive filter or destination meaning "any endpoint". Never a valid endpoint number. */
#define DVK_ANY			0xffffffffU
/* Injected messages one destination holds for room, at least (see the proxy role). */
#define DVK_INJECT_HELD_MIN	64
/* Interrupted sendrecs kept per file for resumption. */
#define DVK_PARKED_MAX		16
/* Asynchronous calls a file may have submitted and not reaped. */
#define DVK_ASYNC_MAX		4096
/* Payload bytes a file's submitted sends and sendrecs may pin until they complete. */
#define DVK_ASYNC_BYTES_MAX	(64U << 20)

/* Call flags (dvk_send.flags, dvk_receive.flags, dvk_sendrec.flags). */
#define DVK_CALL_NONBLOCK	(1U << 0)	/* fail with EAGAIN instead of waiting */
#define DVK_CALL_RESUME		(1U << 1)	/* dvk_sendrec: wait for dvk_sendrec.call */

/* Message flags (dvk_msg.flags, set by the kernel on received messages). */
#define DVK_MSG_REQUEST		(1U << 0)	/* a sendrec's request: answer it with a reply */
#define DVK_MSG_NOTIFY		(1U << 1)	/* a notification: bits holds the pending mask */
#define DVK_MSG_REPLY		(1U << 2)	/* a reply, as a sendrec returns it */

/* DVK_BIND_* flags. */
#define DVK_BIND_BY_NAME	(1U << 0)	/* find the DC by dc_name instead of dc */

struct dvk_version {
	__u32 abi;		/* DVK_ABI_VERSION */
	__u32 max_payload;	/* bytes */
	__u64 features;		/* DVK_FEATURE_* */
	__u32 queue_length;	/* the default for a DC's endpoints: messages queued before */
	__u32 queue_bytes;	/* senders wait, and payload bytes (dvk_dc_config overrides) */
	__u64 reserved[4];
};

/* DVK_IOC_DC_CREATE. DVK_IOC_DC_DESTROY takes a DC id (__u32). */
struct dvk_dc_config {
	__u32 id;
	__u32 slots;		/* 1..DVK_SLOTS_MAX */
	__u32 flags;		/* none defined: zero */
	__u32 queue_length;	/* messages an endpoint queues; 0: the module's queue_length */
	__u32 queue_bytes;	/* payload bytes an endpoint queues; 0: the module's queue_bytes */
	__u32 reserved;
	char name[DVK_NAME_MAX];
};

struct dvk_bind {
	__u32 dc;		/* in: the DC id (unless DVK_BIND_BY_NAME); out: the DC id */
	__u32 endpoint;		/* in: 0..slots-1 */
	__u32 flags;		/* DVK_BIND_* */
	__u32 generation;	/* out */
	char dc_name[DVK_NAME_MAX]; /* in with DVK_BIND_BY_NAME, otherwise zero */
	__u64 reserved[2];
};

/*
 * A message as the caller gives it (send, reply, request) or gets it (receive, reply of a
 * sendrec). 40 bytes.
 */
struct dvk_msg {
	__u32 peer;		/* out-going: destination; received: source */
	__u32 peer_gen;		/* out-going: destination generation, 0 = current; received: source */
	__s32 type;		/* the application's */
	__u32 flags;		/* received: DVK_MSG_*; out-going: zero */
	__u64 request_id;	/* received request: its id; reply: the id it answers; else 0 */
	__u64 payload;		/* pointer to the payload bytes */
	__u32 size;		/* out-going: payload length; received: in capacity, out length */
	__u32 bits;		/* received notification: the pending bits; else 0 */
};

struct dvk_send {
	struct dvk_msg msg;
	__u64 deadline_ns;
	__u32 flags;		/* DVK_CALL_NONBLOCK */
	__u32 reserved;
};

struct dvk_receive {
	__u32 from;		/* DVK_ANY, or only this source */
	__u32 from_gen;		/* with from: 0 = any incarnation */
	__u64 deadline_ns;
	__u32 flags;		/* DVK_CALL_NONBLOCK */
	__u32 reserved;
	struct dvk_msg msg;	/* in: payload and size (capacity); out: the message */
};

struct dvk_sendrec {
	struct dvk_msg request;	/* in */
	struct dvk_msg reply;	/* in: payload and size (capacity); out: the reply */
	__u64 deadline_ns;
	__u32 flags;		/* DVK_CALL_RESUME (set by the kernel when it keeps the call) */
	__u32 reserved;
	__u64 call;		/* with DVK_CALL_RESUME: the call to wait for */
};

struct dvk_reply {
	struct dvk_msg msg;	/* peer, peer_gen and request_id of the request; type, payload */
	__u64 reserved;
};

struct dvk_reply_receive {
	struct dvk_reply reply;	/* sent first; if it fails, nothing is received */
	struct dvk_receive receive;
};

struct dvk_notify {
	__u32 peer;
	__u32 peer_gen;		/* 0 = current */
	__u32 bits;		/* non-zero */
	__u32 reserved;
};

/* dvk_submit.op, dvk_completion.op */
#define DVK_OP_SEND		1
#define DVK_OP_RECEIVE		2
#define DVK_OP_SENDREC		3
#define DVK_OP_NOTIFY		4

struct dvk_submit {
	__u64 token;		/* out: names the call in its completion and in DVK_IOC_CANCEL */
	__u32 op;		/* DVK_OP_* */
	__u32 flags;		/* SEND: DVK_CALL_NONBLOCK; otherwise zero */
	__u32 from;		/* RECEIVE: DVK_ANY or one source; otherwise zero */
	__u32 from_gen;		/* RECEIVE: with from, 0 = any incarnation */
	__u64 reserved;
	struct dvk_msg msg;	/* SEND, SENDREC: the message, as for DVK_IOC_SEND; RECEIVE: zero;
				 * NOTIFY: peer, peer_gen and bits (non-zero), the rest zero */
};

/* One record of a DVK_IOC_REAP buffer: the header, then msg.size payload bytes, then padding. */
struct dvk_completion {
	__u64 token;
	__u32 op;		/* DVK_OP_* */
	__s32 result;		/* 0, or a negative errno as the blocking call would fail with */
	struct dvk_msg msg;	/* RECEIVE: the message; SENDREC: the reply; payload is 0 */
};

struct dvk_reap {
	__u64 buffer;		/* pointer to room for records */
	__u32 size;		/* in: buffer bytes; out: bytes written, or with EMSGSIZE needed */
	__u32 count;		/* out: records written */
	__u64 reserved;
};

struct dvk_cancel {
	__u64 token;
	__u64 reserved;
};

/* dvk_proxy_attach.flags */
#define DVK_PROXY_CLAIMS	(1U << 0)	/* local binds wait for the proxy's consent */
#define DVK_PROXY_VERDICTS	(1U << 1)	/* sends to remote endpoints wait for a verdict */

struct dvk_proxy_attach {
	__u32 node;		/* this node's id, as the cluster knows it */
	__u32 flags;		/* DVK_PROXY_* */
	__u64 reserved[2];
};

/* DVK_IOC_REMOTE_DEL flags. */
#define DVK_REMOTE_NODE_DOWN	(1U << 0)	/* calls waiting on it get EHOSTUNREACH */

struct dvk_remote {
	__u32 dc;
	__u32 endpoint;
	__u32 generation;	/* the incarnation, as its node numbered it: >= 1 */
	__u32 node;		/* the node it lives on (ADD); ignored by DEL */
	__u32 flags;		/* DEL: DVK_REMOTE_*; ADD: zero */
	__u32 reserved;
};

/* dvk_proxy_msg.kind */
#define DVK_PROXY_MESSAGE	1	/* a plain message */
#define DVK_PROXY_REQUEST	2	/* a sendrec's request; request_id is the caller's */
#define DVK_PROXY_REPLY		3	/* the reply to request_id; dst is the caller */
#define DVK_PROXY_NOTIFY	4	/* notification bits */
#define DVK_PROXY_FAIL		5	/* request_id of caller dst failed at src with status */
/* With DVK_PROXY_CLAIMS: news of local bindings (drained) and the verdict on a claim (injected). */
#define DVK_PROXY_CLAIM		6	/* local bind of dc/src/src_gen waits for consent */
#define DVK_PROXY_BOUND		7	/* dc/src/src_gen was bound when the proxy attached */
#define DVK_PROXY_UNBOUND	8	/* local dc/src/src_gen unbound, or gave up its claim */
#define DVK_PROXY_CLAIMED	9	/* verdict on the claim of dc/dst/dst_gen: status 0 or -errno */
/* With DVK_PROXY_VERDICTS: the outcome of a send to another node; withdrawing a send or request. */
#define DVK_PROXY_SENT		10	/* send request_id from dst to src: status 0 or -errno */
#define DVK_PROXY_CANCEL	11	/* caller src withdraws send or request request_id to dst */

/* dvk_proxy_msg.flags: set on drained records; zero in injected ones. */
#define DVK_PROXY_NONBLOCK	(1U << 0)	/* MESSAGE: refuse it (EAGAIN) rather than wait */

/*
 * One record of a proxy batch: the header, then size payload bytes, then padding to 8.
 * 64 bytes:
 *	 0 kind		 4 dc		 8 dst		12 dst_gen	16 src		20 src_gen
 *	24 type		28 bits		32 request_id	40 size		44 status	48 timeout_ns
 *	56 flags	60 reserved
 */
struct dvk_proxy_msg {
	__u32 kind;		/* DVK_PROXY_* */
	__u32 dc;
	__u32 dst;		/* destination endpoint and generation: always set when drained; */
	__u32 dst_gen;		/* injected MESSAGE, REQUEST, NOTIFY, CANCEL may give 0 (current) */
	__u32 src;		/* source endpoint and generation */
	__u32 src_gen;
	__s32 type;
	__u32 bits;		/* DVK_PROXY_NOTIFY */
	__u64 request_id;	/* REQUEST, REPLY, FAIL, SENT, CANCEL: never 0; MESSAGE: a send id;
				 * drained NOTIFY: its note id (with DVK_PROXY_VERDICTS) */
	__u32 size;		/* payload bytes that follow (0 for NOTIFY, FAIL, SENT, CANCEL) */
	__s32 status;		/* FAIL, CANCEL: a negative errno (-1..-511); SENT: 0 or one */
	__u64 timeout_ns;	/* drained MESSAGE, REQUEST: what is left of the deadline (0: none) */
	__u32 flags;		/* DVK_PROXY_NONBLOCK (drained) */
	__u32 reserved;
};

struct dvk_proxy_batch {
	__u64 buffer;		/* pointer to the records */
	__u32 size;		/* in: buffer bytes; out: bytes written (drain) or taken (inject) */
	__u32 count;		/* out: records written or taken */
	__u64 deadline_ns;	/* drain: how long to wait for a first record; inject: zero */
	__u32 flags;		/* drain: DVK_CALL_NONBLOCK; inject: zero */
	__s32 error;		/* inject, out: why it stopped (0, or a negative errno) */
	__u64 reserved;
};

#define DVK_IOC_MAGIC 0xD5

#define DVK_IOC_VERSION		_IOR(DVK_IOC_MAGIC, 0x00, struct dvk_version)
#define DVK_IOC_DC_CREATE	_IOW(DVK_IOC_MAGIC, 0x01, struct dvk_dc_config)
#define DVK_IOC_DC_DESTROY	_IOW(DVK_IOC_MAGIC, 0x02, __u32)
#define DVK_IOC_BIND		_IOWR(DVK_IOC_MAGIC, 0x03, struct dvk_bind)
#define DVK_IOC_SEND		_IOW(DVK_IOC_MAGIC, 0x10, struct dvk_send)
#define DVK_IOC_RECEIVE		_IOWR(DVK_IOC_MAGIC, 0x11, struct dvk_receive)
#define DVK_IOC_SENDREC		_IOWR(DVK_IOC_MAGIC, 0x12, struct dvk_sendrec)
#define DVK_IOC_REPLY		_IOW(DVK_IOC_MAGIC, 0x13, struct dvk_reply)
#define DVK_IOC_REPLY_RECEIVE	_IOWR(DVK_IOC_MAGIC, 0x14, struct dvk_reply_receive)
#define DVK_IOC_NOTIFY		_IOW(DVK_IOC_MAGIC, 0x15, struct dvk_notify)
#define DVK_IOC_SUBMIT		_IOWR(DVK_IOC_MAGIC, 0x16, struct dvk_submit)
#define DVK_IOC_REAP		_IOWR(DVK_IOC_MAGIC, 0x17, struct dvk_reap)
#define DVK_IOC_CANCEL		_IOW(DVK_IOC_MAGIC, 0x18, struct dvk_cancel)
#define DVK_IOC_PROXY_ATTACH	_IOW(DVK_IOC_MAGIC, 0x20, struct dvk_proxy_attach)
#define DVK_IOC_REMOTE_ADD	_IOW(DVK_IOC_MAGIC, 0x21, struct dvk_remote)
#define DVK_IOC_REMOTE_DEL	_IOW(DVK_IOC_MAGIC, 0x22, struct dvk_remote)
#define DVK_IOC_PROXY_DRAIN	_IOWR(DVK_IOC_MAGIC, 0x23, struct dvk_proxy_batch)
#define DVK_IOC_PROXY_INJECT	_IOWR(DVK_IOC_MAGIC, 0x24, struct dvk_proxy_batch)

#endif /* _UAPI_LINUX_DVK_H */
