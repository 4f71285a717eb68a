/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal declarations shared by the module's files. The locking rules are in ipc.c.
 */
#ifndef _DVK_INTERNAL_H
#define _DVK_INTERNAL_H

#include <linux/atomic.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "include/uapi/linux/dvk.h"

/* Module parameters (main.c); read-only once loaded. */
extern unsigned int dvk_max_payload;
extern unsigned int dvk_queue_length;
extern unsigned int dvk_queue_bytes;

struct dvk_proxy;

struct dvk_dc {
	struct list_head node;		/* in dvk_dcs, under dvk_dcs_lock */
	u32 id;
	u32 slots;
	u32 queue_length;		/* bounds of each endpoint's queue */
	u32 queue_bytes;
	char name[DVK_NAME_MAX];
	spinlock_t lock;		/* the IPC lock: see ipc.c */
	struct dvk_endpoint **bound;	/* [slots], under lock */
	u32 *generation;		/* [slots], last generation handed out, under lock */
	u32 nr_bound;			/* under lock */
};

/*
 * One open file of /dev/dvk, and the endpoint it binds. Lives as long as the file; release()
 * is the only place it is unbound and freed, and no ioctl on the file runs then.
 *
 * A remote endpoint (an endpoint of another node, registered by the proxy) is the same
 * structure with no file: remote_of is set, its queue and notes hold what waits for the
 * proxy to drain, and its owed list the requests in flight to it. proxy.c owns its lifetime.
 */
struct dvk_endpoint {
	struct mutex bind_lock;		/* serialises DVK_IOC_BIND on this file */
	struct dvk_dc *dc;		/* published once by bind (release/acquire); NULL: unbound */
	struct dvk_proxy *proxy;	/* set once if this file is the node's proxy (bind_lock) */
	struct dvk_proxy *remote_of;	/* a remote endpoint: the proxy that registered it */
	struct list_head remote_link;	/* in remote_of->remotes */
	u32 node;			/* a remote endpoint's node */
	u32 nr;
	u32 gen;
	struct pid *pid;		/* the process that bound it (a reference) */
	wait_queue_head_t wait;		/* its blocked calls, and poll() */
	struct dvk_event *unbound_event; /* posted to a claims proxy at unbind (proxy.c) */
	struct list_head claim_link;	/* in the proxy's claimers while a bind waits for it */
	struct dvk_dc *claim_dc;	/* the DC of that bind */
	spinlock_t sleepers_lock;	/* innermost: protects sleepers */
	struct list_head sleepers;	/* threads sleeping in calls on this file (ipc.c) */

	/* Everything below is under dc->lock. */
	struct list_head queue;		/* dvk_kmsg, arrival order */
	u32 queued;
	u32 queued_bytes;
	struct list_head held;		/* dvk_kmsg of senders waiting for room, FIFO */
	struct list_head notes;		/* dvk_kmsg notifications, one per source incarnation */
	struct list_head receivers;	/* dvk_call of waiting receives, call order */
	struct list_head owed;		/* dvk_kmsg requests received and not answered; at a
					 * remote endpoint also sends in flight (verdict owed) */
	struct list_head calls;		/* dvk_call of its own sendrecs not yet returned */
	struct list_head notifiers;	/* at a remote endpoint: submitted notifies (dvk_call)
					 * waiting for the verdict on their note */
	bool unbinding;			/* set first by dvk_unbind: admit no held sender now */
	bool claiming;			/* bound in its slot, waiting for the proxy's verdict */
	int claim_result;		/* the verdict, once claiming is false */
	bool async_used;		/* a call was submitted: EPOLLIN means completions */
	struct list_head async;		/* dvk_call submitted and not reaped, by async_link */
	struct list_head completions;	/* dvk_call finished and not reaped, by link */
	u32 nr_async;
	u64 async_bytes;		/* payload pinned by unfinished submitted calls */
	u64 next_token;
	u32 nr_parked;
	u64 next_request_id;
	u64 sent;
	u64 received;
	u64 replies;
	u64 replies_dropped;
	u64 notified;
};

/* A message in a queue, held, owed or in transit to a receiver. */
struct dvk_kmsg {
	struct list_head link;
	struct dvk_call *call;		/* the call waiting on it (a held send, a sendrec, a send
					 * waiting for its verdict) or NULL */
	struct dvk_kmsg *verdict;	/* injected with a send id: its DVK_KMSG_SENT record, until
					 * posted (freed with the message if it never is) */
	u64 deadline;			/* to a remote endpoint: the caller's deadline (0: none) */
	u32 src;
	u32 src_gen;
	s32 type;
	u32 flags;			/* DVK_MSG_*, and DVK_KMSG_* in remote endpoints' queues */
	u64 request_id;			/* a request's id; DVK_KMSG_VERDICT and the records: a send id */
	u32 bits;
	int status;			/* DVK_KMSG_FAIL, _SENT, _CANCEL: 0 or the negative errno;
					 * a request being drained whose caller gave up: the
					 * errno of its withdrawal (see dvk_owe) */
	u32 size;
	u8 data[];
};

/*
 * Records that only wait in remote endpoints' queues for the proxy (dvk_kmsg.flags, internal):
 * a failed remote request on its way back to the caller's node, a plain send that waits for
 * its verdict (DVK_PROXY_VERDICTS; once drained, its header stays in the remote endpoint's
 * owed list until the verdict comes), the verdict on a send from another node, and the
 * withdrawal of a local send, or of a local sendrec's request, in flight (the latter is the
 * request's owed header, turned into this record when its caller gives up).
 */
#define DVK_KMSG_FAIL		(1U << 31)	/* drained as DVK_PROXY_FAIL */
#define DVK_KMSG_VERDICT	(1U << 30)	/* drained as DVK_PROXY_MESSAGE with a send id */
#define DVK_KMSG_SENT		(1U << 29)	/* drained as DVK_PROXY_SENT */
#define DVK_KMSG_CANCEL		(1U << 28)	/* drained as DVK_PROXY_CANCEL */
#define DVK_KMSG_NONBLOCK	(1U << 27)	/* a _VERDICT send drained with DVK_PROXY_NONBLOCK */

/* News of a local binding for a claims proxy: DVK_PROXY_CLAIM, _BOUND or _UNBOUND. */
struct dvk_event {
	struct list_head link;		/* in dvk_proxy.events */
	u32 kind;
	u32 dc;
	u32 nr;
	u32 gen;
};

/* The node's proxy: the agent's file with the proxy role (proxy.c). */
struct dvk_proxy {
	struct mutex lock;		/* serialises drain, inject, REMOTE_ADD/DEL and detach */
	struct dvk_endpoint *ep;	/* the proxy's file: its wait queue, for drain and poll */
	u32 node;
	u32 flags;			/* DVK_PROXY_* */
	struct list_head remotes;	/* registered remote endpoints, under lock */
	atomic_t outbound;		/* records to drain: queues and notes of remotes, events */
	spinlock_t events_lock;		/* innermost: events and claimers */
	struct list_head events;	/* dvk_event, oldest first */
	struct list_head claimers;	/* endpoints whose bind waits for a verdict */
};

enum dvk_call_kind { DVK_SEND, DVK_RECEIVE, DVK_SENDREC, DVK_NOTIFY };

/*
 * A plain send to a remote endpoint of a DVK_PROXY_VERDICTS proxy goes through the states of
 * a request: HELD, QUEUED, TAKING (being drained), RECEIVED (drained: in flight, its verdict
 * owed); TAKING and RECEIVED are "in flight", past undoing.
 */
enum dvk_call_state {
	DVK_HELD,		/* send or request waiting for room at the destination */
	DVK_QUEUED,		/* request (or send waiting for a verdict) in the destination's queue */
	DVK_TAKING,		/* request being copied out to the server (or the proxy) */
	DVK_RECEIVED,		/* request received, reply owed (or a send drained, verdict owed) */
	DVK_WAITING,		/* receive waiting for a message; notify for its note's verdict */
	DVK_DONE,		/* finished: result (and msg) are final */
};

/* A call that waits: on the caller's stack (send, receive) or allocated (sendrec). */
struct dvk_call {
	struct list_head link;		/* in ep->receivers, ep->calls or peer->notifiers */
	enum dvk_call_kind kind;
	enum dvk_call_state state;	/* under dc->lock; read without it only to decide to wake */
	struct dvk_endpoint *ep;	/* the caller */
	struct dvk_endpoint *peer;	/* send, sendrec: the destination */
	struct dvk_kmsg *msg;		/* out-going while held or queued; received when done */
	int result;			/* when DVK_DONE: 0 or -errno */
	u32 from;			/* receive filter */
	u32 from_gen;
	u32 capacity;			/* receive buffer size */
	u32 needed;			/* with -EMSGSIZE: the size that did not fit */
	u64 id;				/* sendrec: the request id, also its call id for resume;
					 * send waiting for a verdict: its send id; notify: its
					 * note's id */
	u64 deadline;			/* send, sendrec: the caller's (0: none, or submitted) */
	struct dvk_kmsg *cancel;	/* send waiting for a verdict: its DVK_KMSG_CANCEL record,
					 * allocated ahead; freed with the call if never posted */
	int cancel_status;		/* once the sender gives up in flight: the CANCEL's errno */
	bool parked;			/* sendrec kept after a signal, see DVK_CALL_RESUME */
	bool async;			/* submitted: finishing queues it in ep->completions */
	u32 charged;			/* async: payload bytes counted in ep->async_bytes */
	u64 token;			/* async: its name for REAP and CANCEL */
	struct list_head async_link;	/* async: in ep->async until reaped or cancelled */
};

/* Object counters, for leak checks (/proc/dvk/stats). */
struct dvk_stats {
	atomic_long_t dcs;
	atomic_long_t endpoints;
	atomic_long_t files;
	atomic_long_t messages;
	atomic_long_t calls;
	atomic_long_t notes;
	atomic_long_t bytes;
	atomic_long_t remotes;
};
extern struct dvk_stats dvk_stats;

/* dc.c: the DC table and binding. */
extern struct mutex dvk_dcs_lock;
extern struct list_head dvk_dcs;
int dvk_dc_create(const struct dvk_dc_config *config);
int dvk_dc_destroy(u32 id);
void dvk_dc_destroy_all(void);
int dvk_bind(struct dvk_endpoint *ep, struct dvk_bind *args);
struct dvk_dc *dvk_dc_find(u32 id);	/* dvk_dcs_lock held */
bool dvk_name_valid(const char *name);

/* ipc.c: queues and calls. */
void dvk_endpoint_init(struct dvk_endpoint *ep);
void dvk_unbind(struct dvk_endpoint *ep, int error);
void dvk_flush(struct dvk_endpoint *ep, struct files_struct *files);
int dvk_send(struct dvk_endpoint *ep, const struct dvk_send *args);
int dvk_receive(struct dvk_endpoint *ep, struct dvk_receive *args,
		struct dvk_receive __user *uargs);
int dvk_sendrec(struct dvk_endpoint *ep, struct dvk_sendrec *args,
		struct dvk_sendrec __user *uargs);
int dvk_reply(struct dvk_endpoint *ep, const struct dvk_reply *args);
int dvk_reply_receive(struct dvk_endpoint *ep, struct dvk_reply_receive *args,
		      struct dvk_reply_receive __user *uargs);
int dvk_notify(struct dvk_endpoint *ep, const struct dvk_notify *args);
struct dvk_kmsg *dvk_note_alloc(struct dvk_endpoint *ep, u32 bits);	/* no lock */
int dvk_notify_start(struct dvk_endpoint *ep, struct dvk_call *call, struct dvk_kmsg **note,
		     u32 dst_nr, u32 dst_gen);
__poll_t dvk_poll_mask(struct dvk_endpoint *ep);

/* ipc.c, for proxy.c: the queue machinery, under the DC lock unless said otherwise. */
struct dvk_kmsg *dvk_kmsg_alloc(u32 size);		/* no lock */
void dvk_kmsg_free(struct dvk_kmsg *m);			/* no lock */
void dvk_kmsg_free_list(struct list_head *garbage);	/* no lock */
struct dvk_endpoint *dvk_lookup(struct dvk_dc *dc, u32 nr, u32 gen);
bool dvk_admit(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool sync);
void dvk_queue_del(struct dvk_endpoint *ep, struct dvk_kmsg *m);
void dvk_queue_add(struct dvk_endpoint *ep, struct dvk_kmsg *m, bool at_head);
void dvk_pump(struct dvk_endpoint *ep);
void dvk_unhold(struct dvk_endpoint *ep, struct dvk_kmsg *m);
void dvk_post_verdict(struct dvk_endpoint *ep, struct dvk_kmsg *m, int status);
bool dvk_send_in_flight(const struct dvk_call *call);	/* or READ_ONCE state without it */
void dvk_send_cancel(struct dvk_call *call, int status);
void dvk_owe(struct dvk_endpoint *ep, struct dvk_kmsg *m);		/* takes the lock */
bool dvk_post_note(struct dvk_endpoint *ep, struct dvk_kmsg *note, bool at_head);
bool dvk_complete_call(struct dvk_kmsg *owed, struct dvk_kmsg *reply, int error, bool sync);
struct dvk_kmsg *dvk_kmsg_from_user(struct dvk_endpoint *ep, const struct dvk_msg *msg,
				    u32 flags);				/* no lock */
struct dvk_call *dvk_call_alloc(struct dvk_endpoint *ep, enum dvk_call_kind kind); /* no lock */
void dvk_call_free(struct dvk_call *call);				/* no lock */
void dvk_finish(struct dvk_call *call, int result, bool sync);
int dvk_send_start(struct dvk_endpoint *ep, struct dvk_call *call, struct dvk_kmsg *m,
		   u32 dst_nr, u32 dst_gen, int wait_error);
struct dvk_kmsg *dvk_receive_start(struct dvk_endpoint *ep, struct dvk_call *call,
				   int wait_error);
struct dvk_call *dvk_sendrec_start(struct dvk_endpoint *ep, const struct dvk_msg *request,
				   u64 deadline, u64 *token);		/* takes the lock */
void dvk_undo(struct dvk_call *call, struct list_head *garbage, int why);
void dvk_untake(struct dvk_endpoint *ep, struct dvk_kmsg *m, struct list_head *garbage);
void dvk_async_track(struct dvk_endpoint *ep, struct dvk_call *call);
bool dvk_async_room(struct dvk_endpoint *ep, u32 bytes);
void dvk_async_charge(struct dvk_endpoint *ep, struct dvk_call *call, u32 bytes);
void dvk_async_uncharge(struct dvk_call *call);
void dvk_async_release(struct dvk_endpoint *ep, struct list_head *garbage,
		       struct list_head *calls);

/* async.c: submitted calls. */
int dvk_submit(struct dvk_endpoint *ep, struct dvk_submit *args);
int dvk_reap(struct dvk_endpoint *ep, struct dvk_reap *args, struct dvk_reap __user *uargs);
int dvk_cancel(struct dvk_endpoint *ep, const struct dvk_cancel *args);
void dvk_wake(struct dvk_endpoint *ep, bool sync);
int dvk_wait_event(struct dvk_endpoint *ep, atomic_t *count, u64 deadline);	/* no lock */

/* proxy.c: the proxy role. */
int dvk_proxy_attach(struct dvk_endpoint *ep, const struct dvk_proxy_attach *args);
void dvk_proxy_detach(struct dvk_endpoint *ep);
int dvk_remote_add(struct dvk_proxy *px, const struct dvk_remote *args);
int dvk_remote_del(struct dvk_proxy *px, const struct dvk_remote *args);
int dvk_proxy_drain(struct dvk_proxy *px, struct dvk_proxy_batch *args);
int dvk_proxy_inject(struct dvk_proxy *px, struct dvk_proxy_batch *args);
bool dvk_proxy_claims(void);						/* dvk_dcs_lock held */
void dvk_proxy_claim(struct dvk_endpoint *ep, struct dvk_event *claim); /* dvk_dcs_lock held */
int dvk_proxy_claim_wait(struct dvk_endpoint *ep);
void dvk_proxy_unbound(struct dvk_endpoint *ep, u32 dc);

/* chardev.c: /dev/dvk. */
int dvk_chardev_init(void);
void dvk_chardev_exit(void);

/* stats.c: /proc/dvk. */
int dvk_stats_init(void);
void dvk_stats_exit(void);

static inline struct dvk_dc *dvk_ep_dc(struct dvk_endpoint *ep)
{
	return smp_load_acquire(&ep->dc);
}

/*
 * A remote endpoint whose proxy wants sends to it to wait for their verdict. Under the DC
 * lock: the proxy outlives its remote endpoints, and its flags are set before it has any.
 */
static inline bool dvk_wants_verdict(const struct dvk_endpoint *dst)
{
	return dst->remote_of && (dst->remote_of->flags & DVK_PROXY_VERDICTS);
}

#endif /* _DVK_INTERNAL_H */
