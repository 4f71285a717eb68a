// SPDX-License-Identifier: GPL-2.0
/*
 * Submitted calls: DVK_IOC_SUBMIT, DVK_IOC_REAP and DVK_IOC_CANCEL, for an event loop that
 * keeps many calls in flight on one file and learns of their outcomes through poll(). A
 * submitted call is a struct dvk_call like a blocking one, started and undone by the same
 * code in ipc.c; instead of waking a sleeping thread, finishing it queues it in the file's
 * completions. Everything here runs under the DC lock except copies and frees.
 */
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "dvk.h"

#define RECORD_HEADER sizeof(struct dvk_completion)

static u32 op_of(const struct dvk_call *call)
{
	switch (call->kind) {
	case DVK_SEND:
		return DVK_OP_SEND;
	case DVK_RECEIVE:
		return DVK_OP_RECEIVE;
	case DVK_NOTIFY:
		return DVK_OP_NOTIFY;
	case DVK_SENDREC:
		break;
	}
	return DVK_OP_SENDREC;
}

static enum dvk_call_kind kind_of(u32 op)
{
	switch (op) {
	case DVK_OP_SEND:
		return DVK_SEND;
	case DVK_OP_NOTIFY:
		return DVK_NOTIFY;
	}
	return DVK_RECEIVE;
}

/*
 * Starts a send, notify or receive on a call already tracked; under the DC lock. @m is the
 * message or note to post.
 */
static void start(struct dvk_endpoint *ep, struct dvk_call *call, struct dvk_kmsg *m,
		  const struct dvk_submit *args, struct list_head *garbage)
{
	struct dvk_kmsg *got;
	int ret;

	switch (call->kind) {
	case DVK_SEND:
		ret = dvk_send_start(ep, call, m, args->msg.peer, args->msg.peer_gen,
				     args->flags & DVK_CALL_NONBLOCK ? -EAGAIN : 0);
		if (ret < 0)
			list_add(&m->link, garbage);
		if (ret <= 0)
			dvk_finish(call, ret, false);
		return;
	case DVK_NOTIFY:
		ret = dvk_notify_start(ep, call, &m, args->msg.peer, args->msg.peer_gen);
		if (m)
			list_add(&m->link, garbage);
		if (ret <= 0)
			dvk_finish(call, ret, false);
		return;
	default:
		break;
	}
	got = dvk_receive_start(ep, call, 0);
	if (IS_ERR(got)) {
		dvk_finish(call, PTR_ERR(got), false);
	} else if (got) {
		call->msg = got;
		dvk_finish(call, 0, false);
	}
}

int dvk_submit(struct dvk_endpoint *ep, struct dvk_submit *args)
{
	struct dvk_dc *dc = ep->dc;
	struct dvk_kmsg *m = NULL;
	struct dvk_call *call;
	LIST_HEAD(garbage);

	if (args->op == DVK_OP_SENDREC) {
		call = dvk_sendrec_start(ep, &args->msg, 0, &args->token);
		return PTR_ERR_OR_ZERO(call);
	}
	if (args->op == DVK_OP_SEND) {
		m = dvk_kmsg_from_user(ep, &args->msg, 0);
		if (IS_ERR(m))
			return PTR_ERR(m);
	} else if (args->op == DVK_OP_NOTIFY) {
		m = dvk_note_alloc(ep, args->msg.bits);
		if (!m)
			return -ENOMEM;
	}
	call = dvk_call_alloc(ep, kind_of(args->op));
	if (!call) {
		dvk_kmsg_free(m);
		return -ENOMEM;
	}
	call->from = args->from;
	call->from_gen = args->from_gen;
	call->capacity = dvk_max_payload;

	spin_lock(&dc->lock);
	if (!dvk_async_room(ep, m ? m->size : 0)) {
		spin_unlock(&dc->lock);
		dvk_kmsg_free(m);
		dvk_call_free(call);
		return -EAGAIN;
	}
	dvk_async_track(ep, call);
	if (m)
		dvk_async_charge(ep, call, m->size);
	args->token = call->token;
	start(ep, call, m, args, &garbage);
	spin_unlock(&dc->lock);
	dvk_kmsg_free_list(&garbage);
	return 0;
}

/*
 * A send in flight to another node cannot be undone: CANCEL answers EALREADY and, the first
 * time, posts a DVK_PROXY_CANCEL record (allocated here, before the lock, in case it is that).
 * Nor can a notify that waits for its note's verdict: its bits are on their way.
 */
int dvk_cancel(struct dvk_endpoint *ep, const struct dvk_cancel *args)
{
	struct dvk_kmsg *withdrawal = dvk_kmsg_alloc(0);
	struct dvk_dc *dc = ep->dc;
	struct dvk_call *call, *found = NULL;
	LIST_HEAD(garbage);

	if (!withdrawal)
		return -ENOMEM;
	spin_lock(&dc->lock);
	list_for_each_entry(call, &ep->async, async_link) {
		if (call->token == args->token) {
			found = call;
			break;
		}
	}
	if (found && dvk_send_in_flight(found)) {
		if (!found->cancel_status) {
			swap(found->cancel, withdrawal);
			dvk_send_cancel(found, -ECANCELED);
		}
		spin_unlock(&dc->lock);
		dvk_kmsg_free(withdrawal);
		return -EALREADY;
	}
	if (!found || found->state == DVK_DONE || found->kind == DVK_NOTIFY) {
		spin_unlock(&dc->lock);
		dvk_kmsg_free(withdrawal);
		return found ? -EALREADY : -ENOENT;
	}
	dvk_async_uncharge(found);
	/* (A sendrec's request in flight to another node is withdrawn there, see abandon.) */
	dvk_undo(found, &garbage, -ECANCELED);
	list_del_init(&found->async_link);
	ep->nr_async--;
	spin_unlock(&dc->lock);
	dvk_kmsg_free_list(&garbage);
	dvk_call_free(found);
	dvk_kmsg_free(withdrawal);
	return 0;
}

static u32 payload_of(const struct dvk_call *call)
{
	return call->msg ? call->msg->size : 0;
}

static size_t record_size(const struct dvk_call *call)
{
	return RECORD_HEADER + ALIGN(payload_of(call), 8);
}

static int put_record(const struct dvk_call *call, u8 __user *at)
{
	const struct dvk_kmsg *m = call->msg;
	struct dvk_completion rec = {
		.token = call->token,
		.op = op_of(call),
		.result = call->result,
	};
	u32 size = payload_of(call);

	if (m) {
		rec.msg.peer = m->src;
		rec.msg.peer_gen = m->src_gen;
		rec.msg.type = m->type;
		rec.msg.flags = m->flags;
		rec.msg.request_id = m->request_id;
		rec.msg.size = m->size;
		rec.msg.bits = m->bits;
	}
	if (copy_to_user(at, &rec, sizeof(rec)) ||
	    copy_to_user(at + sizeof(rec), m ? m->data : NULL, size) ||
	    clear_user(at + sizeof(rec) + size, ALIGN(size, 8) - size))
		return -EFAULT;
	return 0;
}

/* Puts reaped completions back, in order, because they could not be copied out. */
static void unreap(struct dvk_endpoint *ep, struct list_head *taken)
{
	struct dvk_call *call, *prev;

	spin_lock(&ep->dc->lock);
	list_for_each_entry_safe_reverse(call, prev, taken, link)
		list_move(&call->link, &ep->completions);
	dvk_wake(ep, false);
	spin_unlock(&ep->dc->lock);
}

/* A reaped call lets go of what it carried: a received request becomes owed. */
static void release_reaped(struct dvk_endpoint *ep, struct dvk_call *call)
{
	struct dvk_kmsg *m = call->msg;

	if (m && call->kind == DVK_RECEIVE && (m->flags & DVK_MSG_REQUEST))
		dvk_owe(ep, m);
	else
		dvk_kmsg_free(m);
	dvk_call_free(call);
}

int dvk_reap(struct dvk_endpoint *ep, struct dvk_reap *args, struct dvk_reap __user *uargs)
{
	u8 __user *buf = u64_to_user_ptr(args->buffer);
	struct dvk_call *call, *next;
	size_t used = 0, off = 0;
	LIST_HEAD(taken);
	u32 count = 0;

	spin_lock(&ep->dc->lock);
	list_for_each_entry_safe(call, next, &ep->completions, link) {
		if (used + record_size(call) > args->size)
			break;
		used += record_size(call);
		/*
		 * It stays in ep->async until the caller has it, so that a CANCEL meanwhile
		 * finds it complete (EALREADY) rather than unknown.
		 */
		list_move_tail(&call->link, &taken);
	}
	if (list_empty(&taken)) {
		int ret = -EAGAIN;

		if (!list_empty(&ep->completions)) {
			call = list_first_entry(&ep->completions, struct dvk_call, link);
			args->size = record_size(call);	/* written back with EMSGSIZE */
			ret = -EMSGSIZE;
		}
		spin_unlock(&ep->dc->lock);
		return ret;
	}
	spin_unlock(&ep->dc->lock);

	list_for_each_entry(call, &taken, link) {
		if (put_record(call, buf + off)) {
			unreap(ep, &taken);
			return -EFAULT;
		}
		off += record_size(call);
		count++;
	}
	/* Until the caller knows what it got, the records can still go back. */
	if (put_user((u32)used, &uargs->size) || put_user(count, &uargs->count)) {
		unreap(ep, &taken);
		return -EFAULT;
	}
	spin_lock(&ep->dc->lock);
	list_for_each_entry(call, &taken, link) {
		list_del_init(&call->async_link);
		ep->nr_async--;
	}
	spin_unlock(&ep->dc->lock);
	list_for_each_entry_safe(call, next, &taken, link) {
		list_del_init(&call->link);
		release_reaped(ep, call);
	}
	return 0;
}
