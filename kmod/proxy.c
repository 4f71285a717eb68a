// SPDX-License-Identifier: GPL-2.0
/*
 * The proxy role: the node agent's file, through which everything to and from endpoints on
 * other nodes passes, many records per call. The uAPI header describes the protocol.
 *
 * A remote endpoint is a struct dvk_endpoint without a file, in its DC's slot like a local
 * one, so local calls address it with no special case: what they send waits in its queue
 * (bounded, with backpressure) and its notes until DVK_IOC_PROXY_DRAIN takes it; requests
 * drained wait in its owed list for the reply or failure DVK_IOC_PROXY_INJECT brings back.
 *
 * Locking: dvk_proxy.lock (a mutex) serialises the proxy's own calls and the list of remote
 * endpoints; it is taken before dvk_dcs_lock and the DC locks. A remote endpoint lives from
 * REMOTE_ADD to REMOTE_DEL (or the proxy's release), always under the proxy lock, so while it
 * is held the remote endpoints on the list, and the DCs they are bound in, stay put.
 *
 * Claims (DVK_PROXY_CLAIMS): binds and unbinds post a dvk_event under dvk_dcs_lock, which
 * also pins dvk_the_proxy, so events reach the proxy in the order they happened and never a
 * proxy that is going. dvk_proxy.events_lock is innermost; it guards the events and the
 * claimers (binds waiting for a verdict). A claimer's claiming flag and verdict are under its
 * DC's lock, like the slot it holds.
 *
 * Verdicts (DVK_PROXY_VERDICTS): a local send to a remote endpoint is a call like a sendrec's
 * (ipc.c): held or queued at the remote endpoint, TAKING while a drain copies it out, then
 * RECEIVED, its header in the remote endpoint's owed list until an injected DVK_PROXY_SENT
 * finishes it. Drains, injects, REMOTE_DEL and detach all hold the proxy lock, so none of them
 * sees a send in TAKING; only its sender does (it cannot undo it then), and a drain that fails
 * to copy it out puts it back (withdrawing it if its sender gave up meanwhile). The records
 * the module posts for the proxy (DVK_PROXY_SENT for a send from another node, DVK_PROXY_CANCEL
 * for a local send in flight) are dvk_kmsgs allocated beforehand, outside any spinlock (at
 * inject, at the send, at DVK_IOC_CANCEL), and queued at the remote endpoint under the DC lock,
 * which covers both ends: the remote endpoint and the local one share their DC.
 *
 * A local sendrec's request drained by such a proxy is in flight too: when its caller gives
 * up (deadline, DVK_IOC_CANCEL, a fatal signal, close, eviction of a parked call), a
 * DVK_PROXY_CANCEL record asks the other node to withdraw it (ipc.c, withdraw_request). That
 * record is the request's owed header, allocated by dvk_owe() at the drain and no longer
 * needed once no answer is awaited; if the caller gives up while the drain copies the request
 * out, dvk_owe() posts it when the drain is done. Injected, a DVK_PROXY_CANCEL withdraws an
 * injected send held for room, or an injected request held or queued (inject_cancel): under
 * the DC lock, like a receive that would take it; once a receive has taken the request, it
 * is the server's.
 *
 * Notifications to a remote endpoint of such a proxy get verdicts as well, per note: the bits
 * one source has waiting for the drain form one note with an id (ipc.c, dvk_notify_start), and
 * the submitted notifies whose bits it carries wait, as calls, in the remote endpoint's
 * notifiers list until a DVK_PROXY_SENT with that id finishes them all (inject_note_verdict).
 * A drained note needs no header kept: the calls themselves hold its id.
 */
#include <linux/capability.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "dvk.h"

/* The node's one proxy, under dvk_dcs_lock. */
static struct dvk_proxy *dvk_the_proxy;

#define RECORD_HEADER sizeof(struct dvk_proxy_msg)

/* The record layout the header documents: the same for 32- and 64-bit agents, no holes. */
static_assert(sizeof(struct dvk_proxy_msg) == 64);
static_assert(offsetof(struct dvk_proxy_msg, request_id) == 32);
static_assert(offsetof(struct dvk_proxy_msg, timeout_ns) == 48);
static_assert(offsetof(struct dvk_proxy_msg, flags) == 56);

/* --- claims and news of local bindings ------------------------------------------------------ */

static void post_event(struct dvk_proxy *px, struct dvk_event *ev)
{
	spin_lock(&px->events_lock);
	list_add_tail(&ev->link, &px->events);
	spin_unlock(&px->events_lock);
	atomic_inc(&px->outbound);
	dvk_wake(px->ep, false);
}

static void free_events(struct dvk_proxy *px)
{
	struct dvk_event *ev, *next;

	list_for_each_entry_safe(ev, next, &px->events, link) {
		list_del(&ev->link);
		atomic_dec(&px->outbound);
		kfree(ev);
	}
}

/*
 * A new claims proxy first hears of the endpoints bound already. dvk_dcs_lock is held, so no
 * bind runs; an unbind meanwhile reports after this, once the proxy is published.
 */
static int report_bound(struct dvk_proxy *px)
{
	struct dvk_event *ev;
	struct dvk_endpoint *ep;
	struct dvk_dc *dc;
	u32 i, gen;

	list_for_each_entry(dc, &dvk_dcs, node) {
		for (i = 0; i < dc->slots; i++) {
			spin_lock(&dc->lock);
			ep = dc->bound[i];
			gen = ep && !ep->remote_of && !ep->claiming ? ep->gen : 0;
			spin_unlock(&dc->lock);
			if (!gen)
				continue;
			ev = kzalloc(sizeof(*ev), GFP_KERNEL_ACCOUNT);
			if (!ev)
				return -ENOMEM;
			*ev = (struct dvk_event){ .kind = DVK_PROXY_BOUND, .dc = dc->id, .nr = i,
						  .gen = gen };
			list_add_tail(&ev->link, &px->events);
			atomic_inc(&px->outbound);
		}
	}
	return 0;
}

/* Whether binds must wait for the proxy's consent. dvk_dcs_lock held. */
bool dvk_proxy_claims(void)
{
	return dvk_the_proxy && (dvk_the_proxy->flags & DVK_PROXY_CLAIMS);
}

/* A bind holding its slot asks the proxy. dvk_dcs_lock held, and dvk_proxy_claims() true. */
void dvk_proxy_claim(struct dvk_endpoint *ep, struct dvk_event *claim)
{
	struct dvk_proxy *px = dvk_the_proxy;

	*claim = (struct dvk_event){ .kind = DVK_PROXY_CLAIM, .dc = ep->claim_dc->id,
				     .nr = ep->nr, .gen = ep->gen };
	spin_lock(&px->events_lock);
	list_add_tail(&ep->claim_link, &px->claimers);
	spin_unlock(&px->events_lock);
	post_event(px, claim);
}

/* Ends a claim with @result, under its DC's lock; false if it had ended already. */
static bool settle_claim(struct dvk_endpoint *ep, int result)
{
	bool settled = false;

	spin_lock(&ep->claim_dc->lock);
	if (ep->claiming) {
		ep->claim_result = result;
		WRITE_ONCE(ep->claiming, false);
		settled = true;
	}
	spin_unlock(&ep->claim_dc->lock);
	return settled;
}

/*
 * Waits for the verdict on @ep's claim. On failure, or when a signal interrupts the wait, the
 * slot is freed; an interrupted claim is withdrawn: taken off the events if still there, or
 * else followed by an unbind report. Returns 0, the verdict's errno, or -ERESTARTSYS.
 */
int dvk_proxy_claim_wait(struct dvk_endpoint *ep)
{
	struct dvk_dc *dc = ep->claim_dc;
	struct dvk_event *ev, *withdraw = NULL;
	struct dvk_proxy *px;
	bool interrupted;
	int ret;

	wait_event_interruptible(ep->wait, !READ_ONCE(ep->claiming));
	interrupted = settle_claim(ep, -ERESTARTSYS);
	spin_lock(&dc->lock);
	ret = ep->claim_result;
	if (ret) {
		dc->bound[ep->nr] = NULL;
		dc->nr_bound--;
	}
	spin_unlock(&dc->lock);

	mutex_lock(&dvk_dcs_lock);
	px = dvk_the_proxy;
	if (px) {
		spin_lock(&px->events_lock);
		list_del_init(&ep->claim_link);
		if (interrupted) {
			list_for_each_entry(ev, &px->events, link) {
				if (ev->kind == DVK_PROXY_CLAIM && ev->dc == dc->id &&
				    ev->nr == ep->nr && ev->gen == ep->gen) {
					list_del(&ev->link);
					atomic_dec(&px->outbound);
					withdraw = ev;
					break;
				}
			}
		}
		spin_unlock(&px->events_lock);
		if (interrupted && !withdraw) {
			/* The proxy has the claim: tell it the bind gave up. */
			ev = ep->unbound_event ? ep->unbound_event : kzalloc(sizeof(*ev), GFP_KERNEL);
			if (ev) {
				ep->unbound_event = NULL;
				*ev = (struct dvk_event){ .kind = DVK_PROXY_UNBOUND, .dc = dc->id,
							  .nr = ep->nr, .gen = ep->gen };
				post_event(px, ev);
			}
		}
	}
	mutex_unlock(&dvk_dcs_lock);
	kfree(withdraw);
	return ret;
}

/* A local endpoint of DC @dc unbound: a claims proxy hears of it, after all it had sent. */
void dvk_proxy_unbound(struct dvk_endpoint *ep, u32 dc)
{
	struct dvk_event *ev = ep->unbound_event;

	if (!ev)
		return;
	ep->unbound_event = NULL;
	mutex_lock(&dvk_dcs_lock);
	if (dvk_proxy_claims()) {
		*ev = (struct dvk_event){ .kind = DVK_PROXY_UNBOUND, .dc = dc, .nr = ep->nr,
					  .gen = ep->gen };
		post_event(dvk_the_proxy, ev);
		ev = NULL;
	}
	mutex_unlock(&dvk_dcs_lock);
	kfree(ev);
}

/* --- attach and detach --------------------------------------------------------------------- */

int dvk_proxy_attach(struct dvk_endpoint *ep, const struct dvk_proxy_attach *args)
{
	struct dvk_proxy *px;
	int ret = 0;

	if (args->flags & ~(DVK_PROXY_CLAIMS | DVK_PROXY_VERDICTS) || args->reserved[0] ||
	    args->reserved[1])
		return -EINVAL;
	px = kzalloc(sizeof(*px), GFP_KERNEL_ACCOUNT);
	if (!px)
		return -ENOMEM;
	mutex_init(&px->lock);
	INIT_LIST_HEAD(&px->remotes);
	spin_lock_init(&px->events_lock);
	INIT_LIST_HEAD(&px->events);
	INIT_LIST_HEAD(&px->claimers);
	px->ep = ep;
	px->node = args->node;
	px->flags = args->flags;

	mutex_lock(&ep->bind_lock);
	if (ep->dc || ep->proxy) {
		ret = -EISCONN;
	} else {
		mutex_lock(&dvk_dcs_lock);
		if (dvk_the_proxy) {
			ret = -EBUSY;
		} else if (px->flags & DVK_PROXY_CLAIMS) {
			ret = report_bound(px);
			if (ret)
				free_events(px);
		}
		if (!ret)
			dvk_the_proxy = px;
		mutex_unlock(&dvk_dcs_lock);
	}
	if (!ret)
		smp_store_release(&ep->proxy, px);
	mutex_unlock(&ep->bind_lock);
	if (ret)
		kfree(px);
	return ret;
}

static void remote_remove(struct dvk_endpoint *r, int error)
{
	list_del(&r->remote_link);
	dvk_unbind(r, error);
	kfree(r);
}

/* The proxy's file is released: every remote endpoint goes, its callers get EHOSTUNREACH. */
void dvk_proxy_detach(struct dvk_endpoint *ep)
{
	struct dvk_proxy *px = ep->proxy;
	struct dvk_endpoint *r, *next;

	struct dvk_endpoint *claimer, *next_claimer;
	LIST_HEAD(claimers);

	mutex_lock(&px->lock);
	list_for_each_entry_safe(r, next, &px->remotes, remote_link)
		remote_remove(r, -EHOSTUNREACH);
	mutex_unlock(&px->lock);
	mutex_lock(&dvk_dcs_lock);
	dvk_the_proxy = NULL;
	/*
	 * Without a proxy there is no cluster to ask: waiting binds complete. They cannot
	 * return meanwhile: a claimer takes dvk_dcs_lock before it leaves.
	 */
	spin_lock(&px->events_lock);
	list_splice_init(&px->claimers, &claimers);
	spin_unlock(&px->events_lock);
	list_for_each_entry_safe(claimer, next_claimer, &claimers, claim_link) {
		list_del_init(&claimer->claim_link);
		if (settle_claim(claimer, 0))
			dvk_wake(claimer, false);
	}
	free_events(px);
	mutex_unlock(&dvk_dcs_lock);
	WARN_ON(atomic_read(&px->outbound));
	kfree(px);
}

int dvk_remote_add(struct dvk_proxy *px, const struct dvk_remote *args)
{
	struct dvk_endpoint *r;
	struct dvk_dc *dc;
	int ret = 0;

	if (args->flags || args->reserved || !args->generation || args->endpoint == DVK_ANY)
		return -EINVAL;
	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	if (!r)
		return -ENOMEM;
	dvk_endpoint_init(r);
	r->remote_of = px;
	r->node = args->node;
	r->nr = args->endpoint;
	r->gen = args->generation;

	mutex_lock(&px->lock);
	mutex_lock(&dvk_dcs_lock);
	dc = dvk_dc_find(args->dc);
	if (!dc) {
		ret = -ENOENT;
	} else if (r->nr >= dc->slots) {
		ret = -EINVAL;
	} else {
		spin_lock(&dc->lock);
		if (dc->bound[r->nr]) {
			ret = -EADDRINUSE;
		} else {
			r->dc = dc;
			dc->bound[r->nr] = r;
			dc->nr_bound++;
			/* A later local bind of the number must not reuse a remote generation. */
			dc->generation[r->nr] = max(dc->generation[r->nr], r->gen);
		}
		spin_unlock(&dc->lock);
	}
	mutex_unlock(&dvk_dcs_lock);
	if (!ret) {
		list_add_tail(&r->remote_link, &px->remotes);
		atomic_long_inc(&dvk_stats.remotes);
	}
	mutex_unlock(&px->lock);
	if (ret)
		kfree(r);
	return ret;
}

static struct dvk_endpoint *find_remote(struct dvk_proxy *px, u32 dc, u32 nr, u32 gen)
{
	struct dvk_endpoint *r;

	list_for_each_entry(r, &px->remotes, remote_link) {
		if (r->dc->id == dc && r->nr == nr && (!gen || r->gen == gen))
			return r;
	}
	return NULL;
}

int dvk_remote_del(struct dvk_proxy *px, const struct dvk_remote *args)
{
	struct dvk_endpoint *r;

	if (args->flags & ~DVK_REMOTE_NODE_DOWN || args->reserved || args->endpoint == DVK_ANY)
		return -EINVAL;
	mutex_lock(&px->lock);
	r = find_remote(px, args->dc, args->endpoint, args->generation);
	if (r)
		remote_remove(r, args->flags & DVK_REMOTE_NODE_DOWN ? -EHOSTUNREACH : -ESRCH);
	mutex_unlock(&px->lock);
	return r ? 0 : -ENOENT;
}

/* --- drain --------------------------------------------------------------------------------- */

/* The records that only carry a status (the messages they stand for have no payload). */
#define STATUS_RECORDS (DVK_KMSG_FAIL | DVK_KMSG_SENT | DVK_KMSG_CANCEL)

static u32 record_payload(const struct dvk_kmsg *m)
{
	return m->flags & STATUS_RECORDS ? 0 : m->size;
}

static size_t record_size(const struct dvk_kmsg *m)
{
	return RECORD_HEADER + ALIGN(record_payload(m), 8);
}

static u32 record_kind(const struct dvk_kmsg *m)
{
	if (m->flags & DVK_KMSG_FAIL)
		return DVK_PROXY_FAIL;
	if (m->flags & DVK_KMSG_SENT)
		return DVK_PROXY_SENT;
	if (m->flags & DVK_KMSG_CANCEL)
		return DVK_PROXY_CANCEL;
	if (m->flags & DVK_MSG_REQUEST)
		return DVK_PROXY_REQUEST;
	if (m->flags & DVK_MSG_REPLY)
		return DVK_PROXY_REPLY;
	if (m->flags & DVK_MSG_NOTIFY)
		return DVK_PROXY_NOTIFY;
	return DVK_PROXY_MESSAGE;
}

/* What is left of a caller's deadline as it is drained: 0 for none, at least 1 once past. */
static u64 time_left(u64 deadline)
{
	u64 now;

	if (!deadline)
		return 0;
	now = ktime_get_ns();
	return now < deadline ? deadline - now : 1;
}

static int put_record(struct dvk_endpoint *r, const struct dvk_kmsg *m, u8 __user *at)
{
	struct dvk_proxy_msg rec = {
		.kind = record_kind(m),
		.dc = r->dc->id,
		.dst = r->nr,
		.dst_gen = r->gen,
		.src = m->src,
		.src_gen = m->src_gen,
		.type = m->type,
		.bits = m->bits,
		.request_id = m->request_id,
		.size = record_payload(m),
		.status = m->flags & STATUS_RECORDS ? m->status : 0,
	};
	size_t pad = ALIGN(rec.size, 8) - rec.size;

	/* Only a message or a request still waits on its deadline; answers carry none. */
	if (rec.kind == DVK_PROXY_MESSAGE || rec.kind == DVK_PROXY_REQUEST)
		rec.timeout_ns = time_left(m->deadline);
	if (m->flags & DVK_KMSG_NONBLOCK)
		rec.flags = DVK_PROXY_NONBLOCK;

	if (copy_to_user(at, &rec, sizeof(rec)) ||
	    copy_to_user(at + sizeof(rec), m->data, rec.size) ||
	    clear_user(at + sizeof(rec) + rec.size, pad))
		return -EFAULT;
	return 0;
}

/*
 * Takes what waits at remote endpoint @r, oldest first, notifications before messages, while
 * it fits in @room bytes. Returns the bytes taken; with nothing taken because the first
 * record is larger than @room, sets *needed.
 */
static size_t take_outbound(struct dvk_endpoint *r, size_t room, struct list_head *taken,
			    size_t *needed, bool *stopped)
{
	struct dvk_kmsg *m, *next;
	bool from_queue = false;
	size_t used = 0;

	spin_lock(&r->dc->lock);
	list_for_each_entry_safe(m, next, &r->notes, link) {
		if (used + record_size(m) > room)
			goto full;
		list_move_tail(&m->link, taken);
		atomic_dec(&r->remote_of->outbound);
		used += record_size(m);
	}
	list_for_each_entry_safe(m, next, &r->queue, link) {
		if (used + record_size(m) > room)
			goto full;
		dvk_queue_del(r, m);
		list_add_tail(&m->link, taken);
		/* A request or a send waiting for its verdict: past undoing from now on. */
		if (m->call)
			WRITE_ONCE(m->call->state, DVK_TAKING);
		used += record_size(m);
		from_queue = true;
	}
	goto out;
full:
	*stopped = true;
	if (!used)
		*needed = record_size(m);
out:
	if (from_queue)
		dvk_pump(r);
	spin_unlock(&r->dc->lock);
	return used;
}

/*
 * Puts taken records back at the head of @r's queue and notes, in their order. A send whose
 * sender gave up while it was being drained was never delivered: it is withdrawn now.
 */
static void untake_outbound(struct dvk_endpoint *r, struct list_head *taken)
{
	struct dvk_kmsg *m, *prev;
	struct dvk_call *call;
	LIST_HEAD(garbage);

	spin_lock(&r->dc->lock);
	list_for_each_entry_safe_reverse(m, prev, taken, link) {
		list_del_init(&m->link);
		call = m->call;
		if (m->flags & DVK_MSG_NOTIFY) {
			if (!dvk_post_note(r, m, true))
				list_add(&m->link, &garbage);
			continue;
		}
		/*
		 * A request whose caller gave up meanwhile is dropped, as a local receive does; so
		 * is a send its sender abandoned.
		 */
		if ((m->flags & (DVK_MSG_REQUEST | DVK_KMSG_VERDICT)) && !call) {
			list_add(&m->link, &garbage);
			continue;
		}
		if ((m->flags & DVK_KMSG_VERDICT) && call->cancel_status) {
			m->call = NULL;
			call->msg = NULL;
			dvk_finish(call, call->cancel_status, false);
			list_add(&m->link, &garbage);
			continue;
		}
		if (call) {
			WRITE_ONCE(call->state, DVK_QUEUED);
			/* Its sender may wait for it to leave flight (see dvk_send). */
			dvk_wake(call->ep, false);
		}
		dvk_queue_add(r, m, true);
	}
	spin_unlock(&r->dc->lock);
	dvk_kmsg_free_list(&garbage);
}

/* Copies one remote endpoint's records out at @at; returns the bytes written or -EFAULT. */
static ssize_t drain_remote(struct dvk_endpoint *r, u8 __user *at, size_t room, u32 *count,
			    size_t *needed, bool *stopped)
{
	struct dvk_kmsg *m, *next;
	LIST_HEAD(taken);
	size_t used, off = 0;

	used = take_outbound(r, room, &taken, needed, stopped);
	list_for_each_entry(m, &taken, link) {
		if (put_record(r, m, at + off)) {
			untake_outbound(r, &taken);
			return -EFAULT;
		}
		off += record_size(m);
	}
	list_for_each_entry_safe(m, next, &taken, link) {
		list_del_init(&m->link);
		(*count)++;
		/*
		 * A drained request is in flight: its reply or failure comes back by inject; so
		 * does the verdict on a send that waits for one.
		 */
		if (m->flags & (DVK_MSG_REQUEST | DVK_KMSG_VERDICT))
			dvk_owe(r, m);
		else
			dvk_kmsg_free(m);
	}
	return used;
}

/*
 * Copies out the news of local bindings that fit in @room, oldest first; returns the bytes
 * written or -EFAULT (then nothing is taken).
 */
static ssize_t drain_events(struct dvk_proxy *px, u8 __user *at, size_t room, u32 *count)
{
	struct dvk_event *ev, *next;
	LIST_HEAD(taken);
	size_t off = 0;

	spin_lock(&px->events_lock);
	list_for_each_entry_safe(ev, next, &px->events, link) {
		if (off + RECORD_HEADER > room)
			break;
		list_move_tail(&ev->link, &taken);
		off += RECORD_HEADER;
	}
	spin_unlock(&px->events_lock);
	off = 0;
	list_for_each_entry(ev, &taken, link) {
		struct dvk_proxy_msg rec = {
			.kind = ev->kind, .dc = ev->dc, .dst = ev->nr, .dst_gen = ev->gen,
			.src = ev->nr, .src_gen = ev->gen,
		};

		if (copy_to_user(at + off, &rec, sizeof(rec))) {
			spin_lock(&px->events_lock);
			list_splice(&taken, &px->events);
			spin_unlock(&px->events_lock);
			return -EFAULT;
		}
		off += RECORD_HEADER;
	}
	list_for_each_entry_safe(ev, next, &taken, link) {
		list_del(&ev->link);
		atomic_dec(&px->outbound);
		(*count)++;
		kfree(ev);
	}
	return off;
}

int dvk_proxy_drain(struct dvk_proxy *px, struct dvk_proxy_batch *args)
{
	u8 __user *buf = u64_to_user_ptr(args->buffer);
	struct dvk_endpoint *r;
	size_t used, needed = 0;
	bool stopped;
	ssize_t n = 0;
	u32 count;
	int ret;

	if (args->flags & ~DVK_CALL_NONBLOCK || args->reserved || args->deadline_ns > KTIME_MAX)
		return -EINVAL;
	do {
		if (!atomic_read(&px->outbound)) {
			if (args->flags & DVK_CALL_NONBLOCK)
				return -EAGAIN;
			ret = dvk_wait_event(px->ep, &px->outbound, args->deadline_ns);
			if (ret)
				return ret;
		}
		used = 0;
		count = 0;
		stopped = false;
		mutex_lock(&px->lock);
		list_for_each_entry(r, &px->remotes, remote_link) {
			n = drain_remote(r, buf + used, args->size - used, &count, &needed,
					 &stopped);
			if (n < 0 || needed)
				break;
			used += n;
		}
		/*
		 * News of bindings only once every remote endpoint's queue is empty: an unbind
		 * is then drained after whatever the endpoint sent before it.
		 */
		if (n >= 0 && !needed && !stopped) {
			n = drain_events(px, buf + used, args->size - used, &count);
			if (n > 0)
				used += n;
			else if (!n && !count && !list_empty(&px->events))
				needed = RECORD_HEADER;
		}
		/*
		 * Start with the next remote endpoint next time, so none is starved; but not
		 * after taking nothing, so that the size EMSGSIZE reports is the one needed.
		 */
		if (count)
			list_rotate_left(&px->remotes);
		mutex_unlock(&px->lock);
		if (n < 0 && !count)
			return n;
		if (needed && !count) {
			args->size = needed;	/* written back with EMSGSIZE */
			return -EMSGSIZE;
		}
		/* Another drain may have taken everything meanwhile: then wait again. */
	} while (!count);
	args->size = used;
	args->count = count;
	return 0;
}

/* --- inject -------------------------------------------------------------------------------- */

/* An errno a caller may see (-1..-511): never a kernel-internal code such as -ERESTARTSYS. */
static bool errno_valid(s32 status)
{
	return status < 0 && status > -ERESTARTSYS;
}

/* Whether an injected record of a kind that carries messages or verdicts is well-formed. */
static bool record_valid(const struct dvk_proxy *px, const struct dvk_proxy_msg *rec)
{
	bool verdicts = px->flags & DVK_PROXY_VERDICTS;

	if (!rec->src_gen || rec->dst == DVK_ANY || rec->src == DVK_ANY || rec->timeout_ns ||
	    rec->flags || rec->reserved)
		return false;
	switch (rec->kind) {
	case DVK_PROXY_MESSAGE:
		/* A send id: the other node's sender waits for the verdict. */
		return !rec->bits && (!rec->request_id || verdicts) && !rec->status;
	case DVK_PROXY_REQUEST:
		return rec->request_id && !rec->bits && !rec->status;
	case DVK_PROXY_REPLY:
		return rec->dst_gen && !rec->bits && !rec->status;
	case DVK_PROXY_NOTIFY:
		return rec->bits && !rec->size && !rec->type && !rec->request_id && !rec->status;
	case DVK_PROXY_FAIL:
		return rec->dst_gen && !rec->size && !rec->type && !rec->bits &&
		       errno_valid(rec->status);
	case DVK_PROXY_SENT:
		return verdicts && rec->dst_gen && rec->request_id && !rec->size && !rec->type &&
		       !rec->bits && (!rec->status || errno_valid(rec->status));
	case DVK_PROXY_CANCEL:
		return verdicts && rec->request_id && !rec->size && !rec->type && !rec->bits &&
		       errno_valid(rec->status);
	}
	return false;
}

/* Injected messages waiting at @ep for room (local senders' held messages have a call). */
static unsigned int injected_held(struct dvk_endpoint *ep)
{
	struct dvk_kmsg *m;
	unsigned int n = 0;

	list_for_each_entry(m, &ep->held, link) {
		if (!m->call)
			n++;
	}
	return n;
}

/* A message, request or notification from remote endpoint @src to a local one. */
static int inject_to_local(struct dvk_dc *dc, const struct dvk_proxy_msg *rec,
			   struct dvk_kmsg *m)
{
	struct dvk_endpoint *dst = dvk_lookup(dc, rec->dst, rec->dst_gen);

	if (!dst || dst->remote_of)
		return -ENOENT;
	if (rec->kind == DVK_PROXY_NOTIFY) {
		if (!dvk_post_note(dst, m, false))
			return 1;	/* merged: the caller frees it */
		return 0;
	}
	if (dvk_admit(dst, m, false)) {
		dvk_wake(dst, false);
		return 0;
	}
	/*
	 * The agent holds the rest itself: enough here to keep a small queue's senders in
	 * order with local ones, bounded per destination.
	 */
	if (injected_held(dst) >= max(dc->queue_length, DVK_INJECT_HELD_MIN))
		return -EAGAIN;
	list_add_tail(&m->link, &dst->held);
	return 0;
}

/*
 * The verdict on a note drained from @src: every submitted notify whose bits it carried
 * completes with it. Returns whether any did.
 */
static bool inject_note_verdict(struct dvk_endpoint *src, const struct dvk_proxy_msg *rec)
{
	struct dvk_call *call, *next;
	bool any = false;

	list_for_each_entry_safe(call, next, &src->notifiers, link) {
		if (call->id != rec->request_id || call->ep->nr != rec->dst ||
		    call->ep->gen != rec->dst_gen)
			continue;
		list_del_init(&call->link);
		dvk_finish(call, rec->status, false);
		any = true;
	}
	return any;
}

/*
 * A reply or failure from remote endpoint @src for a local caller's sendrec, or the verdict on
 * a local sender's send to it (which counts as sent if it is 0), or on a note.
 */
static void inject_answer(struct dvk_endpoint *src, const struct dvk_proxy_msg *rec,
			  struct dvk_kmsg **m, struct list_head *garbage)
{
	bool verdict = rec->kind == DVK_PROXY_SENT;
	struct dvk_kmsg *owed;
	struct dvk_call *call;

	list_for_each_entry(owed, &src->owed, link) {
		if (owed->src != rec->dst || owed->src_gen != rec->dst_gen ||
		    owed->request_id != rec->request_id ||
		    verdict != !!(owed->flags & DVK_KMSG_VERDICT))
			continue;
		list_move(&owed->link, garbage);
		call = owed->call;
		if (verdict) {
			/* (A send its sender abandoned has left the owed list already.) */
			if (call) {
				owed->call = NULL;
				call->msg = NULL;
				if (!rec->status)
					call->ep->sent++;
				dvk_finish(call, rec->status, false);
			}
		} else if (rec->kind == DVK_PROXY_FAIL) {
			dvk_complete_call(owed, NULL, rec->status, false);
		} else if (dvk_complete_call(owed, *m, 0, false)) {
			*m = NULL;
		}
		return;
	}
	if (verdict && inject_note_verdict(src, rec))
		return;
	/* No call waits (a duplicate, or the caller unbound or gave up): nothing to answer. */
}

/* Whether @m is the send @rec names: injected from its source with that send id. */
static bool names_send(const struct dvk_kmsg *m, const struct dvk_proxy_msg *rec)
{
	return m->verdict && m->src == rec->src && m->src_gen == rec->src_gen &&
	       m->verdict->request_id == rec->request_id;
}

/*
 * Whether @m is the request @rec names: injected from its source with that request id. A local
 * caller's request always has its call while it waits in a queue, an injected one never.
 */
static bool names_request(const struct dvk_kmsg *m, const struct dvk_proxy_msg *rec)
{
	return (m->flags & DVK_MSG_REQUEST) && !m->call && m->src == rec->src &&
	       m->src_gen == rec->src_gen && m->request_id == rec->request_id;
}

/*
 * A remote caller withdraws its send or sendrec from the local destination. A send that still
 * waits for room there goes, and its verdict carries @rec's status; once queued, its SENT 0 is
 * on its way, and there is nothing to do. A request the server has not received (held for
 * room, or queued) goes, with no answer: its caller's node awaits none; once received, it
 * stays owed, and the answer goes back as usual (that node drops it). Nor is there anything to
 * do if the destination is gone. Send ids and request ids of one remote incarnation come from
 * one counter on its node, so the id names one of them; each kind is matched as such (a send
 * by the id its verdict carries, a request by its request id).
 */
static void inject_cancel(struct dvk_dc *dc, const struct dvk_proxy_msg *rec,
			  struct list_head *garbage)
{
	struct dvk_endpoint *dst = dvk_lookup(dc, rec->dst, rec->dst_gen);
	struct dvk_kmsg *m;

	if (!dst || dst->remote_of)
		return;
	list_for_each_entry(m, &dst->held, link) {
		if (names_send(m, rec)) {
			dvk_post_verdict(dst, m, rec->status);
			dvk_unhold(dst, m);
			list_add(&m->link, garbage);
			return;
		}
		if (names_request(m, rec)) {
			dvk_unhold(dst, m);
			list_add(&m->link, garbage);
			return;
		}
	}
	list_for_each_entry(m, &dst->queue, link) {
		if (names_request(m, rec)) {
			dvk_queue_del(dst, m);
			dvk_pump(dst);
			list_add(&m->link, garbage);
			return;
		}
	}
}

/* The verdict on a local bind's claim. */
static int inject_claimed(struct dvk_proxy *px, const struct dvk_proxy_msg *rec)
{
	struct dvk_endpoint *ep = NULL;
	struct dvk_dc *dc;
	bool settled = false;

	if (!(px->flags & DVK_PROXY_CLAIMS) || !rec->dst_gen || rec->dst == DVK_ANY ||
	    rec->src || rec->src_gen || rec->type || rec->bits || rec->request_id ||
	    rec->size || rec->timeout_ns || rec->flags || rec->reserved ||
	    (rec->status && !errno_valid(rec->status)))
		return -EINVAL;
	mutex_lock(&dvk_dcs_lock);
	dc = dvk_dc_find(rec->dc);
	if (dc && rec->dst < dc->slots) {
		spin_lock(&dc->lock);
		ep = dc->bound[rec->dst];
		if (ep && !ep->remote_of && ep->claiming && ep->gen == rec->dst_gen) {
			ep->claim_result = rec->status;
			WRITE_ONCE(ep->claiming, false);
			settled = true;
		}
		spin_unlock(&dc->lock);
	}
	if (settled) {
		spin_lock(&px->events_lock);
		list_del_init(&ep->claim_link);
		spin_unlock(&px->events_lock);
		dvk_wake(ep, false);
	}
	mutex_unlock(&dvk_dcs_lock);
	/* No such claim waits (it gave up): ENOENT, like any record for a gone endpoint. */
	return settled ? 0 : -ENOENT;
}

static int inject_one(struct dvk_proxy *px, const struct dvk_proxy_msg *rec,
		      const u8 __user *payload)
{
	struct dvk_endpoint *src;
	struct dvk_kmsg *m;
	struct dvk_dc *dc;
	LIST_HEAD(garbage);
	int ret = 0;

	if (rec->kind == DVK_PROXY_CLAIMED)
		return inject_claimed(px, rec);
	if (!record_valid(px, rec))
		return -EINVAL;
	if (rec->size > dvk_max_payload)
		return -EMSGSIZE;
	/* The source must be one of this proxy's remote endpoints, which also pins its DC. */
	src = find_remote(px, rec->dc, rec->src, rec->src_gen);
	if (!src)
		return -EADDRNOTAVAIL;
	dc = src->dc;

	if (rec->kind == DVK_PROXY_SENT || rec->kind == DVK_PROXY_CANCEL) {
		spin_lock(&dc->lock);
		if (rec->kind == DVK_PROXY_SENT)
			inject_answer(src, rec, NULL, &garbage);
		else
			inject_cancel(dc, rec, &garbage);
		spin_unlock(&dc->lock);
		dvk_kmsg_free_list(&garbage);
		return 0;
	}
	m = dvk_kmsg_alloc(rec->size);
	if (!m)
		return -ENOMEM;
	if (copy_from_user(m->data, payload, rec->size)) {
		dvk_kmsg_free(m);
		return -EFAULT;
	}
	m->src = rec->src;
	m->src_gen = rec->src_gen;
	m->type = rec->type;
	m->request_id = rec->request_id;
	m->bits = rec->bits;
	if (rec->kind == DVK_PROXY_MESSAGE && rec->request_id) {
		/* Its verdict, allocated now: posting it cannot fail later, under the lock. */
		m->verdict = dvk_kmsg_alloc(0);
		if (!m->verdict) {
			dvk_kmsg_free(m);
			return -ENOMEM;
		}
		m->verdict->flags = DVK_KMSG_SENT;
		m->verdict->request_id = rec->request_id;
		/* Receivers see a plain message. */
		m->request_id = 0;
	}
	switch (rec->kind) {
	case DVK_PROXY_REQUEST:
		m->flags = DVK_MSG_REQUEST;
		break;
	case DVK_PROXY_REPLY:
		m->flags = DVK_MSG_REPLY;
		break;
	case DVK_PROXY_NOTIFY:
		m->flags = DVK_MSG_NOTIFY;
		atomic_long_inc(&dvk_stats.notes);
		break;
	}

	spin_lock(&dc->lock);
	if (rec->kind == DVK_PROXY_REPLY || rec->kind == DVK_PROXY_FAIL) {
		inject_answer(src, rec, &m, &garbage);
	} else {
		ret = inject_to_local(dc, rec, m);
		if (!ret)
			m = NULL;
		else if (ret > 0)
			ret = 0;
	}
	spin_unlock(&dc->lock);
	dvk_kmsg_free_list(&garbage);
	dvk_kmsg_free(m);
	return ret;
}

int dvk_proxy_inject(struct dvk_proxy *px, struct dvk_proxy_batch *args)
{
	const u8 __user *buf = u64_to_user_ptr(args->buffer);
	struct dvk_proxy_msg rec;
	size_t off = 0, size;
	u32 count = 0;
	int error = 0;

	if (args->flags || args->reserved || args->deadline_ns)
		return -EINVAL;
	mutex_lock(&px->lock);
	while (off < args->size) {
		if (args->size - off < RECORD_HEADER) {
			error = -EINVAL;	/* a truncated record */
			break;
		}
		if (copy_from_user(&rec, buf + off, sizeof(rec))) {
			error = -EFAULT;
			break;
		}
		size = RECORD_HEADER + ALIGN((size_t)rec.size, 8);
		if (size > args->size - off) {
			error = -EINVAL;
			break;
		}
		error = inject_one(px, &rec, buf + off + RECORD_HEADER);
		if (error)
			break;
		off += size;
		count++;
	}
	mutex_unlock(&px->lock);
	args->size = off;
	args->count = count;
	args->error = error;
	return 0;
}
