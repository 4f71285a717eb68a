// SPDX-License-Identifier: GPL-2.0
/*
 * Endpoint IPC: queues, backpressure, send, receive, sendrec, reply and notify.
 *
 * Locking overview
 * ----------------
 * dvk_dcs_lock (mutex, dc.c)
 *	The list of DCs. Held to create, destroy, find a DC by id or name for bind, and to walk
 *	the DCs for /proc. Never taken inside a DC lock.
 *
 * dvk_endpoint.bind_lock (mutex)
 *	Serialises DVK_IOC_BIND on one file. Taken before dvk_dcs_lock.
 *
 * dvk_dc.lock (spinlock), "the DC lock"
 *	Protects every piece of IPC state in the DC: the bound[] and generation[] slot arrays,
 *	nr_bound, and in each of the DC's endpoints the lists (queue, held, notes, receivers,
 *	owed, calls), their counts and counters, and the state, result and msg of every call
 *	that waits on one of them. A call touches two endpoints of one DC (the caller's and the
 *	destination's); one lock per DC makes each call a single atomic step with no lock order
 *	to get wrong. Hold times are short and bounded by list walks: payloads are copied from
 *	and to user space, and memory is allocated and freed, only outside the lock.
 *	Taken inside dvk_dcs_lock (bind, destroy, /proc), never the other way round. Wait-queue
 *	locks nest inside it (wake-ups are issued with it held).
 *
 * A dvk_call waits on its caller's ep->wait and looks at call->state without the lock only
 * to decide whether to stop sleeping; it re-reads everything under the DC lock. Whoever sets
 * a call to DVK_DONE removes every reference other endpoints hold to it, in the same critical
 * section, so a finished call (often on its caller's stack) is private to its caller again.
 * Waits are interruptible, except a blocking send in flight to another node (it waits for
 * its verdict killably): wake-ups are TASK_NORMAL for that reason.
 *
 * The same DC lock covers the proxy's records: replies, failures and verdicts that wait in a
 * remote endpoint's queue, the owed list of requests and sends in flight to it, and the
 * verdict an injected message carries (dvk_kmsg.verdict) until it is posted. The memory for
 * each record is allocated before the lock is taken (proxy.c says where), so posting one under
 * the lock never fails.
 *
 * Endpoints of a DC cannot go away under a call: a file is released only when no ioctl runs
 * on it, and dvk_unbind() detaches everything that points at the endpoint under the DC lock.
 * A DC cannot go away while anything is bound in it (DVK_IOC_DC_DESTROY fails with EBUSY).
 */
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "dvk.h"

/* --- messages ------------------------------------------------------------------------------ */

struct dvk_kmsg *dvk_kmsg_alloc(u32 size)
{
	struct dvk_kmsg *m = kvmalloc(struct_size(m, data, size), GFP_KERNEL_ACCOUNT);

	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->size = size;
	INIT_LIST_HEAD(&m->link);
	atomic_long_inc(&dvk_stats.messages);
	atomic_long_add(size, &dvk_stats.bytes);
	return m;
}

void dvk_kmsg_free(struct dvk_kmsg *m)
{
	if (!m)
		return;
	/* A verdict never posted: its remote sender was unregistered meanwhile. */
	dvk_kmsg_free(m->verdict);
	if (m->flags & DVK_MSG_NOTIFY)
		atomic_long_dec(&dvk_stats.notes);
	atomic_long_dec(&dvk_stats.messages);
	atomic_long_sub(m->size, &dvk_stats.bytes);
	kvfree(m);
}

/* Frees messages collected under the DC lock, once it is dropped. */
void dvk_kmsg_free_list(struct list_head *garbage)
{
	struct dvk_kmsg *m, *next;

	list_for_each_entry_safe(m, next, garbage, link) {
		list_del(&m->link);
		dvk_kmsg_free(m);
	}
}

/* A message from @ep carrying the user's payload; ERR_PTR on failure. */
struct dvk_kmsg *dvk_kmsg_from_user(struct dvk_endpoint *ep, const struct dvk_msg *msg,
				       u32 flags)
{
	struct dvk_kmsg *m;

	if (msg->size > dvk_max_payload)
		return ERR_PTR(-EMSGSIZE);
	m = dvk_kmsg_alloc(msg->size);
	if (!m)
		return ERR_PTR(-ENOMEM);
	if (copy_from_user(m->data, u64_to_user_ptr(msg->payload), msg->size)) {
		dvk_kmsg_free(m);
		return ERR_PTR(-EFAULT);
	}
	m->src = ep->nr;
	m->src_gen = ep->gen;
	m->type = msg->type;
	m->flags = flags;
	return m;
}

/* --- waking and waiting -------------------------------------------------------------------- */

/*
 * Wakes an endpoint's blocked calls and pollers. @sync says the caller is about to sleep
 * itself (sendrec, reply-and-receive): the scheduler may then run the woken task on this CPU,
 * a hand-off instead of a cross-CPU wake-up. TASK_NORMAL: a send in flight waits killably.
 */
void dvk_wake(struct dvk_endpoint *ep, bool sync)
{
	if (sync)
		__wake_up_sync_key(&ep->wait, TASK_NORMAL, poll_to_key(EPOLLIN | EPOLLRDNORM));
	else
		wake_up_poll(&ep->wait, EPOLLIN | EPOLLRDNORM);
}

/* Ends a call with @result; a submitted one joins its file's completions. */
void dvk_finish(struct dvk_call *call, int result, bool sync)
{
	call->result = result;
	WRITE_ONCE(call->state, DVK_DONE);
	if (call->async) {
		dvk_async_uncharge(call);
		list_move_tail(&call->link, &call->ep->completions);
	}
	dvk_wake(call->ep, sync);
}

static bool deadline_passed(u64 deadline)
{
	return deadline && ktime_get_ns() >= deadline;
}

/* A thread sleeping in a call on a file; dvk_flush() ends it. */
struct dvk_sleeper {
	struct list_head link;		/* in ep->sleepers, under ep->sleepers_lock */
	struct files_struct *files;	/* the sleeping thread's descriptor table */
	bool closed;			/* its process closed the file: stop with EBADF */
};

/*
 * Sleeps on @ep until @ready(@arg) holds, the absolute CLOCK_MONOTONIC @deadline (0: none)
 * passes, a signal arrives, or the sleeping process closes the file. Returns 0, -ETIMEDOUT,
 * -ERESTARTSYS or -EBADF. @ready runs without the DC lock: callers decide under the lock
 * afterwards, since things may change meanwhile.
 */
static int wait_until(struct dvk_endpoint *ep, bool (*ready)(const void *), const void *arg,
		      u64 deadline)
{
	struct dvk_sleeper me = { .files = current->files };
	ktime_t expires = ns_to_ktime(deadline);
	DEFINE_WAIT(wait);
	int ret = 0;

	spin_lock(&ep->sleepers_lock);
	list_add(&me.link, &ep->sleepers);
	spin_unlock(&ep->sleepers_lock);
	for (;;) {
		prepare_to_wait(&ep->wait, &wait, TASK_INTERRUPTIBLE);
		if (ready(arg))
			break;
		if (READ_ONCE(me.closed)) {
			ret = -EBADF;
			break;
		}
		if (signal_pending(current)) {
			ret = -ERESTARTSYS;
			break;
		}
		if (deadline_passed(deadline)) {
			ret = -ETIMEDOUT;
			break;
		}
		if (deadline)
			schedule_hrtimeout(&expires, HRTIMER_MODE_ABS);
		else
			schedule();
	}
	finish_wait(&ep->wait, &wait);
	spin_lock(&ep->sleepers_lock);
	list_del(&me.link);
	spin_unlock(&ep->sleepers_lock);
	return ret;
}

/*
 * close() of a descriptor of @ep's file by a process (@files is its descriptor table): its
 * threads sleeping in calls on the file stop with EBADF, each call undone as for a timeout.
 * Other processes sharing the file (after fork) keep theirs.
 */
void dvk_flush(struct dvk_endpoint *ep, struct files_struct *files)
{
	struct dvk_sleeper *s;
	bool any = false;

	spin_lock(&ep->sleepers_lock);
	list_for_each_entry(s, &ep->sleepers, link) {
		if (s->files == files) {
			WRITE_ONCE(s->closed, true);
			any = true;
		}
	}
	spin_unlock(&ep->sleepers_lock);
	if (any)
		wake_up_interruptible_all(&ep->wait);
}

static bool call_done(const void *call)
{
	return READ_ONCE(((const struct dvk_call *)call)->state) == DVK_DONE;
}

static int wait_call(struct dvk_endpoint *ep, struct dvk_call *call, u64 deadline)
{
	return wait_until(ep, call_done, call, deadline);
}

/* A send waiting for its verdict, drained or being drained: past undoing. */
bool dvk_send_in_flight(const struct dvk_call *call)
{
	enum dvk_call_state state = READ_ONCE(call->state);

	return call->kind == DVK_SEND && (state == DVK_TAKING || state == DVK_RECEIVED);
}

static bool not_in_flight(const void *call)
{
	return !dvk_send_in_flight(call);
}

/*
 * Sleeps on @ep, killably, until the send @call is no longer in flight (it finished, or a
 * failed drain put it back in the queue) or @deadline (0: none) passes. Other signals and
 * close() do not end this wait: the send cannot be undone. Returns 0, -ETIMEDOUT or -EINTR
 * (a fatal signal).
 */
static int wait_in_flight(struct dvk_endpoint *ep, struct dvk_call *call, u64 deadline)
{
	ktime_t expires = ns_to_ktime(deadline);
	DEFINE_WAIT(wait);
	int ret = 0;

	for (;;) {
		prepare_to_wait(&ep->wait, &wait, TASK_KILLABLE);
		if (not_in_flight(call))
			break;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (deadline_passed(deadline)) {
			ret = -ETIMEDOUT;
			break;
		}
		if (deadline)
			schedule_hrtimeout(&expires, HRTIMER_MODE_ABS);
		else
			schedule();
	}
	finish_wait(&ep->wait, &wait);
	return ret;
}

static bool positive(const void *count)
{
	return atomic_read(count) > 0;
}

/* Sleeps on @ep until @count is positive; see wait_until. */
int dvk_wait_event(struct dvk_endpoint *ep, atomic_t *count, u64 deadline)
{
	return wait_until(ep, positive, count, deadline);
}

/* --- queues -------------------------------------------------------------------------------- */

static bool matches(u32 from, u32 from_gen, const struct dvk_kmsg *m)
{
	if (from == DVK_ANY)
		return true;
	return from == m->src && (!from_gen || from_gen == m->src_gen);
}

static bool same_sender(const struct dvk_kmsg *a, const struct dvk_kmsg *b)
{
	return a->src == b->src && a->src_gen == b->src_gen;
}

/* The endpoint bound at @nr in @dc, if its generation is @gen (0: any). */
struct dvk_endpoint *dvk_lookup(struct dvk_dc *dc, u32 nr, u32 gen)
{
	struct dvk_endpoint *ep;

	if (nr >= dc->slots)
		return NULL;
	ep = dc->bound[nr];
	if (!ep || ep->claiming || (gen && ep->gen != gen))
		return NULL;
	return ep;
}

static bool has_room(struct dvk_endpoint *ep, const struct dvk_kmsg *m)
{
	if (!ep->queued)
		return true;
	struct dvk_dc *dc = ep->dc;

	return ep->queued < dc->queue_length && ep->queued_bytes <= dc->queue_bytes &&
	       m->size <= dc->queue_bytes - ep->queued_bytes;
}

/* A record now waits at a remote endpoint: the proxy has something to drain. */
static void outbound_add(struct dvk_endpoint *ep)
{
	if (ep->remote_of) {
		atomic_inc(&ep->remote_of->outbound);
		dvk_wake(ep->remote_of->ep, false);
	}
}

void dvk_queue_add(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool at_head)
{
	if (at_head)
		list_add(&m->link, &ep->queue);
	else
		list_add_tail(&m->link, &ep->queue);
	ep->queued++;
	ep->queued_bytes += m->size;
	outbound_add(ep);
}

void dvk_queue_del(struct dvk_endpoint *ep, struct dvk_kmsg *m)
{
	list_del_init(&m->link);
	ep->queued--;
	ep->queued_bytes -= m->size;
	if (ep->remote_of)
		atomic_dec(&ep->remote_of->outbound);
}

/*
 * An injected message that wants a verdict has reached @ep's queue (@status 0), or never will
 * (a negative errno): its DVK_PROXY_SENT record goes to the remote sender's queue, once, past
 * the bounds like a reply to a remote caller. If the sender is no longer registered there is
 * no one to tell, and the record goes with the message.
 */
void dvk_post_verdict(struct dvk_endpoint *ep, struct dvk_kmsg *m, int status)
{
	struct dvk_kmsg *v = m->verdict;
	struct dvk_endpoint *r;

	if (!v)
		return;
	r = dvk_lookup(ep->dc, m->src, m->src_gen);
	if (!r || !r->remote_of)
		return;
	m->verdict = NULL;
	v->src = ep->nr;
	v->src_gen = ep->gen;
	v->status = status;
	dvk_queue_add(r, v, false);
}

/* Whether a send or request from @m's sender waits on @m (the call's state follows it). */
static bool tracked(const struct dvk_kmsg *m)
{
	return m->call && (m->flags & (DVK_MSG_REQUEST | DVK_KMSG_VERDICT));
}

/* A received message's request, if any, now waits in transit to the receiver. */
static void hand_over(struct dvk_endpoint *ep, struct dvk_kmsg *m)
{
	ep->received++;
	if ((m->flags & DVK_MSG_REQUEST) && m->call)
		WRITE_ONCE(m->call->state, DVK_TAKING);
}

/*
 * Puts @m in @ep's queue, or straight into the first waiting receive whose filter it
 * matches. A matching receive whose buffer is too small ends with EMSGSIZE (it learns the
 * size it needs) and the message goes on to the next one, or to the queue.
 */
static void enqueue_at(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool sync, bool at_head)
{
	struct dvk_call *r, *next;

	dvk_post_verdict(ep, m, 0);
	list_for_each_entry_safe(r, next, &ep->receivers, link) {
		if (!matches(r->from, r->from_gen, m))
			continue;
		list_del_init(&r->link);
		if (m->size > r->capacity) {
			r->needed = m->size;
			dvk_finish(r, -EMSGSIZE, false);
			continue;
		}
		hand_over(ep, m);
		r->msg = m;
		dvk_finish(r, 0, sync);
		return;
	}
	if (tracked(m))
		WRITE_ONCE(m->call->state, DVK_QUEUED);
	dvk_queue_add(ep, m, at_head);
}

static void enqueue(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool sync)
{
	enqueue_at(ep, m, sync, false);
}

/*
 * Whether @m may go into @ep's queue now; if so it is there. Senders that find the queue full
 * or earlier senders held wait in ep->held, which is what keeps per-sender order. A receive
 * waiting for this very sender takes the message even when the queue is full, unless the
 * sender has older messages held.
 */
bool dvk_admit(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool sync)
{
	struct dvk_kmsg *h;
	struct dvk_call *r;
	bool wanted = false;

	list_for_each_entry(r, &ep->receivers, link) {
		if (matches(r->from, r->from_gen, m) && m->size <= r->capacity) {
			wanted = true;
			break;
		}
	}
	if (wanted) {
		list_for_each_entry(h, &ep->held, link) {
			if (same_sender(h, m))
				return false;
		}
		enqueue(ep, m, sync);
		return true;
	}
	if (!list_empty(&ep->held) || !has_room(ep, m))
		return false;
	enqueue(ep, m, sync);
	return true;
}

/*
 * A held message was admitted: its plain send is complete; a request, or a send that waits for
 * its verdict, now waits as queued.
 */
static void admitted(struct dvk_kmsg *m)
{
	struct dvk_call *call = m->call;

	if (call && call->kind == DVK_SEND && !(m->flags & DVK_KMSG_VERDICT)) {
		m->call = NULL;
		call->msg = NULL;
		call->ep->sent++;
		dvk_finish(call, 0, false);
	}
}

/* Admits held senders, in order, while @ep has room and is not being unbound. */
void dvk_pump(struct dvk_endpoint *ep)
{
	bool moved = false;

	while (!ep->unbinding && !list_empty(&ep->held)) {
		struct dvk_kmsg *head = list_first_entry(&ep->held, struct dvk_kmsg, link);

		if (!has_room(ep, head))
			break;
		list_del_init(&head->link);
		admitted(head);
		enqueue(ep, head, false);
		moved = true;
	}
	if (moved)
		dvk_wake(ep, false);
}

/* Removes a held message; refills the queue if it was the head that blocked the others. */
void dvk_unhold(struct dvk_endpoint *ep, struct dvk_kmsg *m)
{
	bool was_head = list_first_entry(&ep->held, struct dvk_kmsg, link) == m;

	list_del_init(&m->link);
	if (was_head)
		dvk_pump(ep);
}

/*
 * Takes the next notification or message for a filter, or NULL. With a buffer of @capacity
 * too small for the next message, returns ERR_PTR(-EMSGSIZE) with *needed set and leaves the
 * message in place.
 */
static struct dvk_kmsg *take(struct dvk_endpoint *ep, u32 from, u32 from_gen, u32 capacity,
			     u32 *needed)
{
	struct dvk_kmsg *m;
	bool first = true;

	list_for_each_entry(m, &ep->notes, link) {
		if (matches(from, from_gen, m)) {
			list_del_init(&m->link);
			ep->received++;
			return m;
		}
	}
	list_for_each_entry(m, &ep->queue, link) {
		if (!matches(from, from_gen, m))
			continue;
		if (m->size > capacity)
			goto too_big;
		dvk_queue_del(ep, m);
		hand_over(ep, m);
		dvk_pump(ep);
		return m;
	}
	/*
	 * Nothing queued from the wanted sender, but it may be held behind a queue full of
	 * others. Its first held message is the oldest it has outstanding: taking it keeps order.
	 */
	list_for_each_entry(m, &ep->held, link) {
		if (!matches(from, from_gen, m)) {
			first = false;
			continue;
		}
		if (m->size > capacity)
			goto too_big;
		list_del_init(&m->link);
		admitted(m);
		dvk_post_verdict(ep, m, 0);
		hand_over(ep, m);
		if (first)
			dvk_pump(ep);
		return m;
	}
	return NULL;
too_big:
	*needed = m->size;
	return ERR_PTR(-EMSGSIZE);
}

/* The note pending at @ep from @like's source incarnation, if any. */
static struct dvk_kmsg *pending_note(struct dvk_endpoint *ep, const struct dvk_kmsg *like)
{
	struct dvk_kmsg *n;

	list_for_each_entry(n, &ep->notes, link) {
		if (same_sender(n, like))
			return n;
	}
	return NULL;
}

/*
 * Adds a notification at @ep: its bits join a note pending from the same source incarnation,
 * or it goes to the first waiting receive it matches, or it waits in ep->notes. Returns false
 * if it was merged (the caller frees it). At a remote endpoint, notifies waiting for the
 * verdict on a merged note (one a failed drain put back) wait for the one that took its bits.
 */
bool dvk_post_note(struct dvk_endpoint *ep, struct dvk_kmsg *note, bool at_head)
{
	struct dvk_kmsg *n = pending_note(ep, note);
	struct dvk_call *r;

	if (n) {
		n->bits |= note->bits;
		list_for_each_entry(r, &ep->notifiers, link) {
			if (r->id == note->request_id && r->ep->nr == note->src &&
			    r->ep->gen == note->src_gen)
				r->id = n->request_id;
		}
		return false;
	}
	list_for_each_entry(r, &ep->receivers, link) {
		if (matches(r->from, r->from_gen, note)) {
			list_del_init(&r->link);
			ep->received++;
			r->msg = note;
			dvk_finish(r, 0, false);
			return true;
		}
	}
	if (at_head)
		list_add(&note->link, &ep->notes);
	else
		list_add_tail(&note->link, &ep->notes);
	dvk_wake(ep, false);
	outbound_add(ep);
	return true;
}

/*
 * Puts a taken message back where receive found it, because it could not be copied out. A
 * request whose caller gave up meanwhile is dropped instead: nobody waits for its reply.
 */
void dvk_untake(struct dvk_endpoint *ep, struct dvk_kmsg *m, struct list_head *garbage)
{
	struct dvk_endpoint *src;

	ep->received--;
	if (m->flags & DVK_MSG_NOTIFY) {
		if (!dvk_post_note(ep, m, true))
			list_add(&m->link, garbage);
		return;
	}
	/*
	 * A local request without its call: the caller gave up. A request injected from a remote
	 * caller never has one; it stays while that caller is registered, or it would wait for a
	 * reply that never comes.
	 */
	src = dvk_lookup(ep->dc, m->src, m->src_gen);
	if ((m->flags & DVK_MSG_REQUEST) && !m->call && !(src && src->remote_of)) {
		list_add(&m->link, garbage);
		return;
	}
	/* Another receive may have started waiting meanwhile: it gets the message first. */
	enqueue_at(ep, m, false, true);
}

/*
 * Copies a taken message out to the caller: header into *out, payload to out->payload. On
 * success a request becomes owed by @ep and anything else is freed. On failure the message
 * goes back (untake) and -EFAULT is returned.
 */
static int deliver(struct dvk_endpoint *ep, struct dvk_kmsg *m, struct dvk_msg *out,
		   struct dvk_msg __user *uout)
{
	struct dvk_dc *dc = ep->dc;
	LIST_HEAD(garbage);

	out->peer = m->src;
	out->peer_gen = m->src_gen;
	out->type = m->type;
	out->flags = m->flags;
	out->request_id = m->request_id;
	out->size = m->size;
	out->bits = m->bits;
	if (copy_to_user(u64_to_user_ptr(out->payload), m->data, m->size) ||
	    copy_to_user(uout, out, sizeof(*out))) {
		spin_lock(&dc->lock);
		dvk_untake(ep, m, &garbage);
		dvk_wake(ep, false);
		spin_unlock(&dc->lock);
		dvk_kmsg_free_list(&garbage);
		return -EFAULT;
	}
	if (m->flags & DVK_MSG_REQUEST)
		dvk_owe(ep, m);
	else
		dvk_kmsg_free(m);
	return 0;
}

/*
 * Turns @m, the owed header of a local caller's request drained to remote endpoint @r (or the
 * request itself), into the DVK_PROXY_CANCEL record that asks the other node to withdraw that
 * request, with @why, and queues it for the proxy (past the bounds, like a reply to a remote
 * caller). It keeps the caller (src, src_gen) and the request id.
 */
static void post_withdrawal(struct dvk_endpoint *r, struct dvk_kmsg *m, int why)
{
	m->flags = DVK_KMSG_CANCEL;
	m->status = why;
	m->call = NULL;
	m->type = 0;
	m->bits = 0;
	m->deadline = 0;
	dvk_queue_add(r, m, false);
}

/* Posts the DVK_PROXY_CANCEL record of a drained send whose sender gave up. */
static void post_cancel(struct dvk_call *call)
{
	struct dvk_kmsg *c = call->cancel;

	if (WARN_ON_ONCE(!c))
		return;
	call->cancel = NULL;
	c->flags = DVK_KMSG_CANCEL;
	c->src = call->ep->nr;
	c->src_gen = call->ep->gen;
	c->request_id = call->id;
	c->status = call->cancel_status;
	dvk_queue_add(call->peer, c, false);
}

/*
 * The sender of a send in flight gives up (its deadline passed, or DVK_IOC_CANCEL) with
 * @status: once, a DVK_PROXY_CANCEL record asks the other node to withdraw the send. Posted at
 * once if the send is drained; if it is being drained, dvk_owe() posts it, or a failed drain
 * withdraws the send (untake_outbound in proxy.c). call->cancel must be allocated.
 */
void dvk_send_cancel(struct dvk_call *call, int status)
{
	if (!dvk_send_in_flight(call) || call->cancel_status)
		return;
	call->cancel_status = status;
	if (call->state == DVK_RECEIVED)
		post_cancel(call);
}

/*
 * A taken request has reached its server (a local receiver, or the proxy for a remote one):
 * the server now owes a reply. The obligation needs the request's header, not its payload,
 * so a header-only copy is kept and requests not answered yet hold no payload memory. The
 * same for a send drained by a DVK_PROXY_VERDICTS proxy: @ep (the remote endpoint) owes its
 * verdict, and the header waits in its owed list for the DVK_PROXY_SENT that brings it. A
 * request its caller gave up while the proxy drained it (its status set, see
 * withdraw_request) gets no header: the one allocated here becomes the DVK_PROXY_CANCEL
 * record that asks the other node to withdraw it (or, without memory, the request itself
 * does). Takes the DC lock.
 */
void dvk_owe(struct dvk_endpoint *ep, struct dvk_kmsg *m)
{
	struct dvk_kmsg *owed = dvk_kmsg_alloc(0);
	struct dvk_call *call;

	spin_lock(&ep->dc->lock);
	call = m->call;
	if ((m->flags & DVK_KMSG_VERDICT) && !call) {
		/* Its sender abandoned it while it was drained: no one waits for its verdict. */
		spin_unlock(&ep->dc->lock);
		dvk_kmsg_free(owed);
		dvk_kmsg_free(m);
		return;
	}
	if ((m->flags & DVK_MSG_REQUEST) && !call && m->status) {
		/* Its caller gave up while it was drained: the other node is to withdraw it. */
		int why = m->status;

		if (owed) {
			owed->src = m->src;
			owed->src_gen = m->src_gen;
			owed->request_id = m->request_id;
			swap(owed, m);
		}
		post_withdrawal(ep, m, why);
		spin_unlock(&ep->dc->lock);
		dvk_kmsg_free(owed);
		return;
	}
	if (owed) {
		owed->src = m->src;
		owed->src_gen = m->src_gen;
		owed->type = m->type;
		owed->flags = m->flags;
		owed->request_id = m->request_id;
		owed->call = m->call;
		if (m->call)
			m->call->msg = owed;
		swap(owed, m);
	}
	if (call) {
		WRITE_ONCE(call->state, DVK_RECEIVED);
		if (call->cancel_status)
			post_cancel(call);
	}
	list_add_tail(&m->link, &ep->owed);
	spin_unlock(&ep->dc->lock);
	dvk_kmsg_free(owed);
}

/* --- send ---------------------------------------------------------------------------------- */

/* What a call that would wait gets instead, for its flags and deadline (0: it may wait). */
static int wait_error(u32 flags, u64 deadline)
{
	if (flags & DVK_CALL_NONBLOCK)
		return -EAGAIN;
	if (deadline_passed(deadline))
		return -ETIMEDOUT;
	return 0;
}

/*
 * Starts a send of @m from @ep to @dst_nr: returns 0 once it is queued (the queue owns @m),
 * 1 if it waits with @call: in the destination's held list for room (finished when it is
 * admitted), or, to a remote endpoint that wants verdicts, held or queued until its verdict
 * comes; or a negative errno (-ENOENT; @wait_error instead of waiting), @m untouched.
 */
int dvk_send_start(struct dvk_endpoint *ep, struct dvk_call *call, struct dvk_kmsg *m,
		   u32 dst_nr, u32 dst_gen, int wait_error)
{
	struct dvk_endpoint *dst = dvk_lookup(ep->dc, dst_nr, dst_gen);
	bool nonblock;

	if (!dst)
		return -ENOENT;
	if (dvk_wants_verdict(dst)) {
		/*
		 * It completes only with its verdict from the other node: a blocking send always
		 * waits. A submitted non-blocking one waits for the verdict too, if it finds room
		 * here, and asks the other node not to wait for room there either.
		 */
		nonblock = call->async && wait_error == -EAGAIN;
		if (wait_error && !nonblock)
			return wait_error;
		m->flags |= DVK_KMSG_VERDICT | (nonblock ? DVK_KMSG_NONBLOCK : 0);
		m->request_id = ++ep->next_request_id;
		m->deadline = call->deadline;
		m->call = call;
		call->id = m->request_id;
		call->peer = dst;
		call->msg = m;
		WRITE_ONCE(call->state, DVK_HELD);
		if (dvk_admit(dst, m, false))
			return 1;
		if (nonblock) {
			m->flags &= ~(DVK_KMSG_VERDICT | DVK_KMSG_NONBLOCK);
			m->call = NULL;
			call->msg = NULL;
			return -EAGAIN;
		}
		list_add_tail(&m->link, &dst->held);
		return 1;
	}
	if (dvk_admit(dst, m, false)) {
		ep->sent++;
		dvk_wake(dst, false);
		return 0;
	}
	if (wait_error)
		return wait_error;
	m->call = call;
	call->peer = dst;
	call->msg = m;
	WRITE_ONCE(call->state, DVK_HELD);
	list_add_tail(&m->link, &dst->held);
	return 1;
}

/*
 * Waits for the verdict on a blocking send in flight, killably. When @deadline passes, the
 * other node is asked, once, to withdraw it (a DVK_PROXY_CANCEL record); the verdict still
 * decides. Returns 0 once the send is no longer in flight (finished, or put back in the queue
 * by a failed drain), or -EINTR for a fatal signal. Only the sending thread touches
 * cancel_status of its (on-stack) call.
 */
static int await_verdict(struct dvk_endpoint *ep, struct dvk_call *call, u64 deadline)
{
	int ret;

	for (;;) {
		ret = wait_in_flight(ep, call, call->cancel_status ? 0 : deadline);
		if (ret != -ETIMEDOUT)
			return ret;
		spin_lock(&ep->dc->lock);
		dvk_send_cancel(call, -ETIMEDOUT);
		spin_unlock(&ep->dc->lock);
	}
}

int dvk_send(struct dvk_endpoint *ep, const struct dvk_send *args)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_call call = { .kind = DVK_SEND, .ep = ep, .link = LIST_HEAD_INIT(call.link),
				 .deadline = args->deadline_ns };
	int werr = wait_error(args->flags, args->deadline_ns);
	struct dvk_endpoint *dst;
	struct dvk_kmsg *m;
	LIST_HEAD(garbage);
	int ret, err;

	m = dvk_kmsg_from_user(ep, &args->msg, 0);
	if (IS_ERR(m))
		return PTR_ERR(m);
	/*
	 * A send that will wait for its verdict may have to post a CANCEL record when its deadline
	 * passes in flight: that record is allocated first, outside the lock.
	 */
	for (;;) {
		spin_lock(&dc->lock);
		dst = dvk_lookup(dc, args->msg.peer, args->msg.peer_gen);
		if (call.cancel || werr || !dst || !dvk_wants_verdict(dst))
			break;
		spin_unlock(&dc->lock);
		call.cancel = dvk_kmsg_alloc(0);
		if (!call.cancel) {
			dvk_kmsg_free(m);
			return -ENOMEM;
		}
	}
	ret = dvk_send_start(ep, &call, m, args->msg.peer, args->msg.peer_gen, werr);
	spin_unlock(&dc->lock);
	if (ret < 0)
		dvk_kmsg_free(m);
	if (ret <= 0)
		goto out;

	ret = wait_call(ep, &call, args->deadline_ns);

	spin_lock(&dc->lock);
	while (dvk_send_in_flight(&call)) {
		/* Drained: the deadline, signals and close() no longer end it; its verdict does. */
		spin_unlock(&dc->lock);
		err = await_verdict(ep, &call, args->deadline_ns);
		spin_lock(&dc->lock);
		if (err && dvk_send_in_flight(&call)) {
			/* A fatal signal: the send is abandoned, its verdict will be ignored. */
			dvk_undo(&call, &garbage, err);
			ret = err;
			goto unlock;
		}
	}
	if (call.state == DVK_DONE)
		/*
		 * Admitted (0), its verdict, or the destination unbound (-ESRCH) and freed the
		 * message.
		 */
		ret = call.result;
	else
		/* Timed out, interrupted or closed before it was queued or drained: withdrawn. */
		dvk_undo(&call, &garbage, ret);
unlock:
	spin_unlock(&dc->lock);
	dvk_kmsg_free_list(&garbage);
out:
	dvk_kmsg_free(call.cancel);
	return ret;
}

/* --- receive ------------------------------------------------------------------------------- */

/*
 * Whether a receive filtered on an exact incarnation can still be served: false once that
 * incarnation is gone (or never was) and left nothing here, so waiting would be forever.
 */
static bool source_may_come(struct dvk_dc *dc, u32 from, u32 from_gen)
{
	return from == DVK_ANY || !from_gen || dvk_lookup(dc, from, from_gen);
}

/*
 * Starts a receive for the filter and capacity in @call: returns a taken message, NULL with
 * @call waiting in ep->receivers, or an ERR_PTR (-EMSGSIZE with call->needed set, -ENOENT,
 * or @wait_error instead of waiting).
 */
struct dvk_kmsg *dvk_receive_start(struct dvk_endpoint *ep, struct dvk_call *call,
				   int wait_error)
{
	struct dvk_kmsg *m = take(ep, call->from, call->from_gen, call->capacity, &call->needed);

	if (m)
		return m;
	if (!source_may_come(ep->dc, call->from, call->from_gen))
		return ERR_PTR(-ENOENT);
	if (wait_error)
		return ERR_PTR(wait_error);
	WRITE_ONCE(call->state, DVK_WAITING);
	list_add_tail(&call->link, &ep->receivers);
	return NULL;
}

/*
 * Waits for a message matching the filter in @args (the DC lock held on entry, dropped on
 * return). Returns the taken message, or an ERR_PTR; with -EMSGSIZE, *needed is set.
 */
static struct dvk_kmsg *receive_locked(struct dvk_endpoint *ep, const struct dvk_receive *args,
				       u32 *needed)
	__releases(&ep->dc->lock)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_call call = {
		.kind = DVK_RECEIVE,
		.ep = ep,
		.link = LIST_HEAD_INIT(call.link),
		.from = args->from,
		.from_gen = args->from_gen,
		.capacity = args->msg.size,
	};
	struct dvk_kmsg *m;
	int ret;

	m = dvk_receive_start(ep, &call, wait_error(args->flags, args->deadline_ns));
	if (m)
		goto out;
	spin_unlock(&dc->lock);

	ret = wait_call(ep, &call, args->deadline_ns);

	spin_lock(&dc->lock);
	if (call.state == DVK_DONE) {
		m = call.result ? ERR_PTR(call.result) : call.msg;
	} else {
		dvk_undo(&call, NULL, 0);
		m = ERR_PTR(ret);
	}
out:
	*needed = call.needed;
	spin_unlock(&dc->lock);
	return m;
}

/* Writes back the size a receive needed, after EMSGSIZE. */
static int report_needed(struct dvk_msg __user *uout, u32 needed)
{
	if (put_user(needed, &uout->size))
		return -EFAULT;
	return -EMSGSIZE;
}

static int receive_into(struct dvk_endpoint *ep, struct dvk_receive *args,
			struct dvk_receive __user *uargs)
	__releases(&ep->dc->lock)
{
	struct dvk_kmsg *m;
	u32 needed = 0;

	m = receive_locked(ep, args, &needed);
	if (IS_ERR(m)) {
		if (PTR_ERR(m) == -EMSGSIZE)
			return report_needed(&uargs->msg, needed);
		return PTR_ERR(m);
	}
	return deliver(ep, m, &args->msg, &uargs->msg);
}

int dvk_receive(struct dvk_endpoint *ep, struct dvk_receive *args,
		struct dvk_receive __user *uargs)
{
	spin_lock(&ep->dc->lock);
	return receive_into(ep, args, uargs);
}

/* --- sendrec ------------------------------------------------------------------------------- */

struct dvk_call *dvk_call_alloc(struct dvk_endpoint *ep, enum dvk_call_kind kind)
{
	struct dvk_call *call = kzalloc(sizeof(*call), GFP_KERNEL_ACCOUNT);

	if (!call)
		return NULL;
	call->kind = kind;
	call->ep = ep;
	INIT_LIST_HEAD(&call->link);
	INIT_LIST_HEAD(&call->async_link);
	atomic_long_inc(&dvk_stats.calls);
	return call;
}

void dvk_call_free(struct dvk_call *call)
{
	atomic_long_dec(&dvk_stats.calls);
	dvk_kmsg_free(call->cancel);
	kfree(call);
}

/*
 * A sendrec whose request is in flight to another node, drained (RECEIVED, @m its owed header)
 * or being drained (TAKING, @m the request) by a DVK_PROXY_VERDICTS proxy, is given up by its
 * caller with @why (-ETIMEDOUT, -ECANCELED, -ESRCH): once, a DVK_PROXY_CANCEL record asks the
 * other node to withdraw the request, if its server has not received it yet. Drained, the
 * owed header becomes that record: no answer is awaited any more, so a late REPLY or FAIL
 * finds nothing, and the record needs no memory of its own (dvk_owe() allocated the header at
 * the drain, outside the lock). Being drained, the request keeps @why in its status for
 * dvk_owe() to post the record once the drain is done; a drain that fails drops the request
 * instead (untake_outbound in proxy.c): the other node never had it.
 */
static void withdraw_request(struct dvk_call *call, struct dvk_kmsg *m, int why)
{
	if (!why)
		why = -ECANCELED;
	if (call->state == DVK_TAKING) {
		m->status = why;
		return;
	}
	list_del_init(&m->link);
	post_withdrawal(call->peer, m, why);
}

/*
 * The caller gives up on a sendrec: a request the server has not received is taken back and
 * never runs; a received one stays owed by the server, whose reply will be dropped. A request
 * in flight to another node through a DVK_PROXY_VERDICTS proxy is withdrawn there too: see
 * withdraw_request, which gets @why (the errno the withdrawal carries; 0 where no sendrec
 * can be in flight). The same for a send: held or queued, it is taken back; in flight
 * (drained, or being drained, by a DVK_PROXY_VERDICTS proxy) it is abandoned: nothing waits
 * for its verdict any more. The call leaves ep->calls; its reply, if one came, goes to
 * @garbage. The caller frees the call.
 */
static void abandon(struct dvk_call *call, struct list_head *garbage, int why)
{
	struct dvk_kmsg *m = call->msg;

	switch (call->state) {
	case DVK_HELD:
		dvk_unhold(call->peer, m);
		list_add(&m->link, garbage);
		break;
	case DVK_QUEUED:
		dvk_queue_del(call->peer, m);
		dvk_pump(call->peer);
		list_add(&m->link, garbage);
		break;
	case DVK_TAKING:
	case DVK_RECEIVED:
		m->call = NULL;
		/* A send's owed header only matches its verdict to the call: drop it. */
		if (call->kind == DVK_SEND && call->state == DVK_RECEIVED) {
			list_del_init(&m->link);
			list_add(&m->link, garbage);
		} else if (call->kind == DVK_SENDREC && dvk_wants_verdict(call->peer)) {
			withdraw_request(call, m, why);
		}
		break;
	case DVK_DONE:
		if (m)
			list_add(&m->link, garbage);
		break;
	case DVK_WAITING:
		break;
	}
	call->msg = NULL;
	if (call->parked)
		call->ep->nr_parked--;
	list_del_init(&call->link);
}

/*
 * Undoes a call that has not finished, as a timeout does: a held (or queued) send is
 * withdrawn, a receive stops waiting (so does a notify; its bits stay), a sendrec is abandoned (a request in flight to another
 * node is withdrawn there with @why, see abandon); so is a send in flight. What it held goes
 * to @garbage.
 */
void dvk_undo(struct dvk_call *call, struct list_head *garbage, int why)
{
	switch (call->kind) {
	case DVK_RECEIVE:
	case DVK_NOTIFY:
		list_del_init(&call->link);
		break;
	case DVK_SEND:
	case DVK_SENDREC:
		abandon(call, garbage, why);
		break;
	}
}

static void fail_waiter(struct dvk_endpoint *gone, struct dvk_kmsg *m, int error,
			struct list_head *garbage);

/* Whether a file may submit a call pinning @bytes more payload (one is always admitted). */
bool dvk_async_room(struct dvk_endpoint *ep, u32 bytes)
{
	return ep->nr_async < DVK_ASYNC_MAX &&
	       (!ep->async_bytes || ep->async_bytes + bytes <= DVK_ASYNC_BYTES_MAX);
}

void dvk_async_charge(struct dvk_endpoint *ep, struct dvk_call *call, u32 bytes)
{
	call->charged = bytes;
	ep->async_bytes += bytes;
}

/* The call's payload no longer waits on its account: it is queued, answered or undone. */
void dvk_async_uncharge(struct dvk_call *call)
{
	call->ep->async_bytes -= call->charged;
	call->charged = 0;
}

/* A submitted call: named by a token, and counted against DVK_ASYNC_MAX until reaped. */
void dvk_async_track(struct dvk_endpoint *ep, struct dvk_call *call)
{
	call->async = true;
	call->token = ++ep->next_token;
	list_add_tail(&call->async_link, &ep->async);
	ep->nr_async++;
	ep->async_used = true;
}

/*
 * The file goes (unbind): every submitted call is undone, and what finished calls hold is
 * let go as at unbind (a received request's caller gets ESRCH). The calls go to @calls.
 */
void dvk_async_release(struct dvk_endpoint *ep, struct list_head *garbage,
		       struct list_head *calls)
{
	struct dvk_call *call, *next;

	list_for_each_entry_safe(call, next, &ep->async, async_link) {
		dvk_async_uncharge(call);
		if (call->state != DVK_DONE)
			dvk_undo(call, garbage, -ESRCH);
		else if (call->msg && call->kind == DVK_RECEIVE)
			fail_waiter(ep, call->msg, -ESRCH, garbage);
		else if (call->msg)
			list_add(&call->msg->link, garbage);
		call->msg = NULL;
		list_del_init(&call->link);
		list_move(&call->async_link, calls);
	}
	ep->nr_async = 0;
}

static struct dvk_call *find_parked(struct dvk_endpoint *ep, u64 id)
{
	struct dvk_call *call;

	list_for_each_entry(call, &ep->calls, link) {
		if (call->parked && call->id == id)
			return call;
	}
	return NULL;
}

/* Keeps an interrupted sendrec for resumption; gives up the oldest beyond DVK_PARKED_MAX. */
static void park(struct dvk_endpoint *ep, struct dvk_call *call, struct list_head *garbage,
		 struct list_head *evicted)
{
	struct dvk_call *c;

	if (ep->nr_parked >= DVK_PARKED_MAX) {
		list_for_each_entry(c, &ep->calls, link) {
			if (c->parked) {
				abandon(c, garbage, -ECANCELED);
				list_add(&c->link, evicted);
				break;
			}
		}
	}
	call->parked = true;
	ep->nr_parked++;
	/* Parked calls go last, so the first parked one in the list is the oldest. */
	list_move_tail(&call->link, &ep->calls);
	/* A parked call with its reply makes the file readable (see dvk_poll_mask). */
	if (call->state == DVK_DONE)
		dvk_wake(ep, false);
}

/* A resumed call is over: ready the caller's structure for its next call. */
static int clear_resume(const struct dvk_sendrec *args, struct dvk_sendrec __user *uargs)
{
	if (put_user(args->flags & ~DVK_CALL_RESUME, &uargs->flags) || put_user(0, &uargs->call))
		return -EFAULT;
	return 0;
}

static void free_evicted(struct list_head *evicted)
{
	struct dvk_call *c, *next;

	list_for_each_entry_safe(c, next, evicted, link) {
		list_del(&c->link);
		dvk_call_free(c);
	}
}

/*
 * Sends the request of a new sendrec; returns the call waiting for its reply. A submitted one
 * (@token set) is tracked for REAP and CANCEL, its token written to *@token, and fails with
 * EAGAIN beyond DVK_ASYNC_MAX.
 */
struct dvk_call *dvk_sendrec_start(struct dvk_endpoint *ep, const struct dvk_msg *request,
				   u64 deadline, u64 *token)
{
	bool async = token;
	struct dvk_dc *dc = ep->dc;
	struct dvk_endpoint *dst;
	struct dvk_call *call;
	struct dvk_kmsg *m;
	int ret;

	m = dvk_kmsg_from_user(ep, request, DVK_MSG_REQUEST);
	if (IS_ERR(m))
		return ERR_CAST(m);
	call = dvk_call_alloc(ep, DVK_SENDREC);
	if (!call) {
		dvk_kmsg_free(m);
		return ERR_PTR(-ENOMEM);
	}

	spin_lock(&dc->lock);
	if (async && !dvk_async_room(ep, m->size)) {
		ret = -EAGAIN;
		goto fail;
	}
	dst = dvk_lookup(dc, request->peer, request->peer_gen);
	if (!dst && async) {
		/* As for a submitted send: the outcome comes as the call's completion. */
		dvk_async_track(ep, call);
		*token = call->token;
		dvk_finish(call, -ENOENT, false);
		spin_unlock(&dc->lock);
		dvk_kmsg_free(m);
		return call;
	}
	if (!dst) {
		ret = -ENOENT;
		goto fail;
	}
	m->request_id = ++ep->next_request_id;
	m->deadline = deadline;
	m->call = call;
	call->id = m->request_id;
	call->deadline = deadline;
	call->peer = dst;
	call->msg = m;
	WRITE_ONCE(call->state, DVK_HELD);
	/* The caller sleeps next: a sync wake-up lets the server run on this CPU. */
	if (!dvk_admit(dst, m, !async)) {
		if (deadline_passed(deadline)) {
			ret = -ETIMEDOUT;
			goto fail;
		}
		list_add_tail(&m->link, &dst->held);
	}
	list_add(&call->link, &ep->calls);
	if (async) {
		/* Read under the lock: once it is dropped, another thread may reap the call. */
		dvk_async_track(ep, call);
		dvk_async_charge(ep, call, m->size);
		*token = call->token;
	}
	ep->sent++;
	dvk_wake(dst, false);
	spin_unlock(&dc->lock);
	return call;
fail:
	spin_unlock(&dc->lock);
	dvk_kmsg_free(m);
	dvk_call_free(call);
	return ERR_PTR(ret);
}

/*
 * Keeps a sendrec for the caller to resume: records its id and DVK_CALL_RESUME in the
 * caller's arguments first (until it is parked no other thread can reach the call), then
 * parks it. False, with the call left as it was, if the arguments cannot be written.
 */
static bool keep_for_resume(struct dvk_endpoint *ep, struct dvk_call *call,
			    const struct dvk_sendrec *args, struct dvk_sendrec __user *uargs)
{
	LIST_HEAD(garbage);
	LIST_HEAD(evicted);

	if (put_user(args->flags | DVK_CALL_RESUME, &uargs->flags) ||
	    put_user(call->id, &uargs->call))
		return false;
	spin_lock(&ep->dc->lock);
	park(ep, call, &garbage, &evicted);
	spin_unlock(&ep->dc->lock);
	dvk_kmsg_free_list(&garbage);
	free_evicted(&evicted);
	return true;
}

/*
 * Ends a sendrec for good (the DC lock held on entry, dropped on return) and frees it; one not
 * finished is given up with @why (see abandon).
 */
static void end_sendrec_locked(struct dvk_endpoint *ep, struct dvk_call *call, int why)
	__releases(&ep->dc->lock)
{
	LIST_HEAD(garbage);

	abandon(call, &garbage, why);
	spin_unlock(&ep->dc->lock);
	dvk_kmsg_free_list(&garbage);
	dvk_call_free(call);
}

/* Hands a finished sendrec's reply to the caller; see DVK_CALL_RESUME for what may be kept. */
static int sendrec_deliver(struct dvk_endpoint *ep, struct dvk_call *call,
			   struct dvk_sendrec *args, struct dvk_sendrec __user *uargs)
{
	struct dvk_kmsg *m = call->msg;
	struct dvk_msg *out = &args->reply;
	int ret;

	if (call->result) {
		ret = call->result;
		goto done;
	}
	if (m->size > out->size) {
		ret = -EMSGSIZE;
		if (put_user(m->size, &uargs->reply.size))
			ret = -EFAULT;
		goto keep;
	}
	out->peer = m->src;
	out->peer_gen = m->src_gen;
	out->type = m->type;
	out->flags = m->flags;
	out->request_id = m->request_id;
	out->size = m->size;
	out->bits = 0;
	if (copy_to_user(u64_to_user_ptr(out->payload), m->data, m->size) ||
	    copy_to_user(&uargs->reply, out, sizeof(*out))) {
		ret = -EFAULT;
		goto keep;
	}
	ret = 0;
	goto done;
keep:
	/* The reply is not lost: the caller can resume the call with a fitting buffer. */
	if (keep_for_resume(ep, call, args, uargs))
		return ret;
	ret = -EFAULT;
done:
	if ((args->flags & DVK_CALL_RESUME) && clear_resume(args, uargs))
		ret = -EFAULT;
	spin_lock(&ep->dc->lock);
	end_sendrec_locked(ep, call, 0);	/* finished: nothing to withdraw */
	return ret;
}

/*
 * The errno that withdraws the request of a sendrec whose wait ended with @ret: its deadline
 * passed, or its caller is gone (a fatal signal, or its process closed the file), or it gives
 * up for another reason (its arguments could not be written to keep it for resumption).
 */
static int gave_up(int ret)
{
	switch (ret) {
	case -ETIMEDOUT:
		return -ETIMEDOUT;
	case -ERESTARTSYS:
	case -EBADF:
		return -ESRCH;
	}
	return -ECANCELED;
}

int dvk_sendrec(struct dvk_endpoint *ep, struct dvk_sendrec *args,
		struct dvk_sendrec __user *uargs)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_call *call;
	bool resumed = false;
	int ret;

	if (args->flags & DVK_CALL_RESUME) {
		spin_lock(&dc->lock);
		call = find_parked(ep, args->call);
		if (call) {
			call->parked = false;
			ep->nr_parked--;
			list_move(&call->link, &ep->calls);
		}
		spin_unlock(&dc->lock);
		if (!call)
			return -EINVAL;
		resumed = true;
	} else {
		call = dvk_sendrec_start(ep, &args->request, args->deadline_ns, NULL);
		if (IS_ERR(call))
			return PTR_ERR(call);
	}

	ret = wait_call(ep, call, args->deadline_ns);

	spin_lock(&dc->lock);
	if (call->state == DVK_DONE) {
		spin_unlock(&dc->lock);
		return sendrec_deliver(ep, call, args, uargs);
	}
	if (ret == -ERESTARTSYS && !fatal_signal_pending(current) &&
	    (resumed || call->state == DVK_TAKING || call->state == DVK_RECEIVED)) {
		/*
		 * The server has the request: running it again would run it twice, so the call is
		 * kept. Until it is parked no other thread can reach it, so the restart is
		 * recorded in the caller's arguments first.
		 */
		spin_unlock(&dc->lock);
		if (keep_for_resume(ep, call, args, uargs))
			return -ERESTARTSYS;
		ret = -EFAULT;
		spin_lock(&dc->lock);
	}
	/*
	 * Timed out, interrupted before the server took the request, killed, or its file closed:
	 * undo it (a request in flight to another node is withdrawn there).
	 */
	end_sendrec_locked(ep, call, gave_up(ret));
	if (resumed && clear_resume(args, uargs))
		ret = -EFAULT;
	return ret;
}

/* --- reply and notify ---------------------------------------------------------------------- */

/*
 * Ends the sendrec an owed record stands for, with @reply (0) or @error. Returns false if no
 * call waits for it any more; @reply then stays the caller's.
 */
bool dvk_complete_call(struct dvk_kmsg *owed, struct dvk_kmsg *reply, int error, bool sync)
{
	struct dvk_call *call = owed->call;

	if (!call || call->state != DVK_RECEIVED)
		return false;
	owed->call = NULL;
	call->msg = reply;
	dvk_finish(call, error, sync);
	return true;
}

/* @sync: the server receives (and sleeps) next, so the caller may run on this CPU. */
static int reply(struct dvk_endpoint *ep, const struct dvk_reply *args, bool sync)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_kmsg *m, *req, *found = NULL;
	struct dvk_endpoint *caller;

	m = dvk_kmsg_from_user(ep, &args->msg, DVK_MSG_REPLY);
	if (IS_ERR(m))
		return PTR_ERR(m);
	m->request_id = args->msg.request_id;

	spin_lock(&dc->lock);
	list_for_each_entry(req, &ep->owed, link) {
		if (req->src == args->msg.peer && req->src_gen == args->msg.peer_gen &&
		    req->request_id == args->msg.request_id) {
			found = req;
			break;
		}
	}
	if (!found) {
		spin_unlock(&dc->lock);
		dvk_kmsg_free(m);
		return -EINVAL;
	}
	list_del_init(&found->link);
	ep->replies++;
	caller = dvk_lookup(dc, found->src, found->src_gen);
	if (dvk_complete_call(found, m, 0, sync)) {
		m = NULL;
	} else if (!found->call && caller && caller->remote_of) {
		/* A remote caller: the reply goes out through the proxy, whatever the queue holds. */
		dvk_queue_add(caller, m, false);
		m = NULL;
	} else {
		ep->replies_dropped++;
	}
	spin_unlock(&dc->lock);
	dvk_kmsg_free(found);
	dvk_kmsg_free(m);
	return 0;
}

int dvk_reply(struct dvk_endpoint *ep, const struct dvk_reply *args)
{
	return reply(ep, args, false);
}

struct dvk_kmsg *dvk_note_alloc(struct dvk_endpoint *ep, u32 bits)
{
	struct dvk_kmsg *note = dvk_kmsg_alloc(0);

	if (!note)
		return NULL;
	note->src = ep->nr;
	note->src_gen = ep->gen;
	note->flags = DVK_MSG_NOTIFY;
	note->bits = bits;
	atomic_long_inc(&dvk_stats.notes);
	return note;
}

/*
 * Posts *@note, from @ep, at @dst_nr. Returns 0 once its bits are pending there, 1 if @call (a
 * submitted notify; NULL for DVK_IOC_NOTIFY, which never waits) waits in the remote
 * endpoint's notifiers for the verdict on the note that carries them to another node, or
 * -ENOENT. The bits that wait for the proxy from one source form one note, with an id from
 * the source's counter of send ids. *@note is NULL if the destination kept it; otherwise the
 * caller frees it.
 */
int dvk_notify_start(struct dvk_endpoint *ep, struct dvk_call *call, struct dvk_kmsg **note,
		     u32 dst_nr, u32 dst_gen)
{
	struct dvk_endpoint *dst = dvk_lookup(ep->dc, dst_nr, dst_gen);
	struct dvk_kmsg *carrier;

	if (!dst)
		return -ENOENT;
	ep->notified++;
	if (!dvk_wants_verdict(dst)) {
		if (dvk_post_note(dst, *note, false))
			*note = NULL;
		return 0;
	}
	carrier = pending_note(dst, *note);
	if (carrier) {
		carrier->bits |= (*note)->bits;
	} else {
		carrier = *note;
		*note = NULL;
		carrier->request_id = ++ep->next_request_id;
		dvk_post_note(dst, carrier, false);
	}
	if (!call)
		return 0;
	call->id = carrier->request_id;
	call->peer = dst;
	WRITE_ONCE(call->state, DVK_WAITING);
	list_add_tail(&call->link, &dst->notifiers);
	return 1;
}

int dvk_notify(struct dvk_endpoint *ep, const struct dvk_notify *args)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_kmsg *note = dvk_note_alloc(ep, args->bits);
	int ret;

	if (!note)
		return -ENOMEM;
	spin_lock(&dc->lock);
	ret = dvk_notify_start(ep, NULL, &note, args->peer, args->peer_gen);
	spin_unlock(&dc->lock);
	dvk_kmsg_free(note);
	return ret;
}

/* --- reply-and-receive, poll, unbind ------------------------------------------------------- */

int dvk_reply_receive(struct dvk_endpoint *ep, struct dvk_reply_receive *args,
		      struct dvk_reply_receive __user *uargs)
{
	int ret = reply(ep, &args->reply, true);

	if (ret)
		return ret;
	spin_lock(&ep->dc->lock);
	return receive_into(ep, &args->receive, &uargs->receive);
}

__poll_t dvk_poll_mask(struct dvk_endpoint *ep)
{
	struct dvk_proxy *px = READ_ONCE(ep->proxy);
	struct dvk_dc *dc = dvk_ep_dc(ep);
	struct dvk_call *call;
	__poll_t mask = 0;

	if (px)
		return atomic_read(&px->outbound) > 0 ? EPOLLIN | EPOLLRDNORM : 0;
	if (!dc)
		return 0;
	spin_lock(&dc->lock);
	if (ep->async_used) {
		if (!list_empty(&ep->completions))
			mask = EPOLLIN | EPOLLRDNORM;
		spin_unlock(&dc->lock);
		return mask;
	}
	if (!list_empty(&ep->notes) || !list_empty(&ep->queue))
		mask = EPOLLIN | EPOLLRDNORM;
	list_for_each_entry(call, &ep->calls, link) {
		if (call->parked && call->state == DVK_DONE)
			mask = EPOLLIN | EPOLLRDNORM;
	}
	spin_unlock(&dc->lock);
	return mask;
}

void dvk_endpoint_init(struct dvk_endpoint *ep)
{
	mutex_init(&ep->bind_lock);
	init_waitqueue_head(&ep->wait);
	spin_lock_init(&ep->sleepers_lock);
	INIT_LIST_HEAD(&ep->sleepers);
	INIT_LIST_HEAD(&ep->async);
	INIT_LIST_HEAD(&ep->completions);
	INIT_LIST_HEAD(&ep->queue);
	INIT_LIST_HEAD(&ep->held);
	INIT_LIST_HEAD(&ep->notes);
	INIT_LIST_HEAD(&ep->receivers);
	INIT_LIST_HEAD(&ep->owed);
	INIT_LIST_HEAD(&ep->calls);
	INIT_LIST_HEAD(&ep->notifiers);
	INIT_LIST_HEAD(&ep->claim_link);
}

/* Ends every receive in the DC that waits for exactly the incarnation that is going. */
static void end_receives_from(struct dvk_dc *dc, struct dvk_endpoint *gone, int error)
{
	struct dvk_call *r, *next;
	u32 i;

	for (i = 0; i < dc->slots; i++) {
		struct dvk_endpoint *ep = dc->bound[i];

		if (!ep)
			continue;
		list_for_each_entry_safe(r, next, &ep->receivers, link) {
			if (r->from == gone->nr && r->from_gen == gone->gen) {
				list_del_init(&r->link);
				dvk_finish(r, error, false);
			}
		}
	}
}

/*
 * Ends what waits on a message of an endpoint that is going away: the local call, with
 * @error, or for a request from a remote caller a DVK_PROXY_FAIL record back through the
 * proxy, or for a message from another node that wanted a verdict and never reached the queue
 * a DVK_PROXY_SENT record with @error. The message leaves its list; it goes to @garbage
 * unless it became that FAIL record.
 */
static void fail_waiter(struct dvk_endpoint *gone, struct dvk_kmsg *m, int error,
			struct list_head *garbage)
{
	struct dvk_call *call = m->call;
	struct dvk_endpoint *caller;

	list_del_init(&m->link);
	/* An injected message held here, that wanted a verdict: it will never be delivered. */
	dvk_post_verdict(gone, m, error);
	if (call) {
		m->call = NULL;
		call->msg = NULL;
		dvk_finish(call, error, false);
	} else if (m->flags & DVK_MSG_REQUEST) {
		caller = dvk_lookup(gone->dc, m->src, m->src_gen);
		if (caller && caller->remote_of) {
			m->flags = DVK_KMSG_FAIL;
			m->status = error;
			m->type = 0;
			m->bits = 0;
			m->src = gone->nr;
			m->src_gen = gone->gen;
			dvk_queue_add(caller, m, false);
			return;
		}
	}
	list_add(&m->link, garbage);
}

/*
 * Unbinds an endpoint: a file's at release, or a remote endpoint the proxy unregisters. No
 * call of a file is blocked at release, so its only calls are parked sendrecs. Calls waiting
 * on the endpoint end with @error (ESRCH, or EHOSTUNREACH for a node that is down); its
 * queued messages are discarded; what it sent to others stays there.
 */
void dvk_unbind(struct dvk_endpoint *ep, int error)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_call *call, *next_call;
	struct dvk_kmsg *m, *next;
	unsigned int records = 0;
	LIST_HEAD(garbage);
	LIST_HEAD(calls);
	LIST_HEAD(async_calls);

	if (!dc)
		return;
	spin_lock(&dc->lock);
	ep->unbinding = true;
	dc->bound[ep->nr] = NULL;
	dc->nr_bound--;
	dvk_async_release(ep, &garbage, &async_calls);
	list_for_each_entry_safe(call, next_call, &ep->calls, link) {
		abandon(call, &garbage, -ESRCH);
		list_add(&call->link, &calls);
	}
	list_for_each_entry_safe(m, next, &ep->held, link)
		fail_waiter(ep, m, error, &garbage);
	records = ep->queued;
	list_for_each_entry_safe(m, next, &ep->queue, link)
		fail_waiter(ep, m, error, &garbage);
	ep->queued = 0;
	ep->queued_bytes = 0;
	list_for_each_entry_safe(m, next, &ep->owed, link)
		fail_waiter(ep, m, error, &garbage);
	list_for_each_entry_safe(m, next, &ep->notes, link) {
		list_move(&m->link, &garbage);
		records++;
	}
	list_for_each_entry_safe(call, next_call, &ep->notifiers, link) {
		list_del_init(&call->link);
		dvk_finish(call, error, false);
	}
	if (ep->remote_of)
		atomic_sub(records, &ep->remote_of->outbound);
	end_receives_from(dc, ep, error);
	spin_unlock(&dc->lock);

	dvk_kmsg_free_list(&garbage);
	list_for_each_entry_safe(call, next_call, &calls, link) {
		list_del(&call->link);
		dvk_call_free(call);
	}
	list_for_each_entry_safe(call, next_call, &async_calls, async_link) {
		list_del(&call->async_link);
		dvk_call_free(call);
	}
	atomic_long_dec(ep->remote_of ? &dvk_stats.remotes : &dvk_stats.endpoints);
}
