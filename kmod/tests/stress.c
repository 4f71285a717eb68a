// SPDX-License-Identifier: GPL-2.0
/*
 * stress: random ioctls against /dev/dvk from several processes at once.
 *
 *   stress [CALLS [PROCS [SEED]]]     defaults: 100000 calls, 4 processes, seed from the clock
 *
 * The parent (root) creates a few small DCs and starts PROCS workers. Each worker opens files,
 * binds them, and issues random calls until CALLS calls have been made in all: valid traffic
 * (send, receive, sendrec, reply, notify, poll) with NONBLOCK or deadlines of at most ~20 ms,
 * submitted calls (SUBMIT of sends, some with NONBLOCK, receives, sendrecs and notifies that
 * stay in flight until reaped, cancelled or closed, REAP into good, short and bad buffers,
 * CANCEL of tokens given, reaped or made up; a request reaped is answered or kept like a
 * received one), structures with plausible but wrong values, structures of random bytes, NULL
 * and bad pointers, known command numbers and near misses, random closes and reopens, and DC
 * creates and destroys.
 * One worker at a time holds the node's proxy file (whichever attached first; the others
 * keep trying, and get EBUSY): it registers and removes random remote endpoints in the run's
 * DCs, where the other workers' traffic lands, drains what waits there into good, short and
 * bad buffers, and injects batches of plausible, answering, mutated and random records; then
 * it closes the proxy file, or is killed with it. Half the proxies ask for verdicts
 * (DVK_PROXY_VERDICTS): their holder answers every send and every note (a NOTIFY record with
 * a note id) it drains with a SENT verdict soon (0 or an errno, at once or at its next proxy
 * call), since such a send, and a submitted notify the note carries, waits for nothing else,
 * and its injects carry send ids, SENT and CANCEL records too: CANCELs of messages
 * injected with a send id and of requests it injected (held, queued, received or gone), and
 * of ids nothing has. The CANCEL records it drains (sends and sendrecs whose senders and
 * callers gave up in flight) must carry an errno the header names; one for a request it
 * drained makes it forget that request, mostly (an agent asks the other node to withdraw it,
 * and answers it no more). Some workers run two threads on the same files. Meanwhile the
 * parent interrupts workers with a signal (with and without SA_RESTART) and kills some with
 * SIGKILL, starting new ones in their place.
 *
 * Nothing may hang: every call that can wait has a short deadline (a send in flight waits for
 * the verdict its proxy's holder owes, or for that proxy to go), and the parent fails the
 * run if a call stays in the kernel for more than HANG_MS. Workers check what they can
 * (unknown commands fail with ENOTTY, errors are ones the header documents, received
 * messages, reaped completions and drained batches are well-formed, SUBMIT never accepts
 * what the header forbids, an inject reports a count, size and error that fit the batch)
 * and count anything else as an anomaly. At the end the parent kills everything, destroys
 * the DCs and checks that /proc/dvk/stats is back to zero.
 */
#include "tap.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define MAX_PROCS 64
#define MAX_THREADS 2
#define N_DCS 8			/* ids DC_FIRST .. DC_FIRST + N_DCS - 1 are the run's */
#define N_START_DCS 3		/* created at the start: 4, 8 and 2 endpoints */
#define DC_FIRST 0x5d0000u
#define HANG_MS 10000		/* a call this long in the kernel is a hang */
#define MAX_DIAGS 40		/* anomaly lines printed, in all */
#define INTR_SIG SIGURG		/* ignored by default, so an early signal kills no one */

/* State the parent and all workers share (MAP_SHARED). */
struct shared {
	_Atomic uint64_t calls;		/* calls begun */
	_Atomic uint64_t anomalies;
	_Atomic int diags;
	_Atomic int stop;
	_Atomic uint64_t ok[24];		/* successes per known command (index in known_cmds) */
	_Atomic uint64_t drained, injected;	/* records */
	_Atomic uint64_t drained_kind[16];	/* drained records by kind */
	_Atomic uint64_t verdicts;		/* SENT verdicts injected for drained sends */
	_Atomic uint64_t withdrawn_out;		/* drained CANCELs naming a request drained */
	_Atomic uint64_t withdrawals_in;	/* CANCELs injected of a request injected */
	_Atomic uint64_t reaped, reaped_ok, undone;	/* completions; of them 0; cancels that undid */
	_Atomic uint64_t reaped_op[DVK_OP_NOTIFY + 1];	/* completions by op */
	_Atomic uint64_t drained_nonblock;	/* MESSAGEs drained with DVK_PROXY_NONBLOCK */
	_Atomic uint64_t inject_stop[160];	/* injects by the error they stopped with */
	_Atomic uint64_t err[160];		/* failures per errno */
	_Atomic uint64_t kills, interrupts, restarts;
	struct {
		_Atomic uint64_t busy_since[MAX_THREADS]; /* 0: not in a call */
		_Atomic int ready;
	} worker[MAX_PROCS];
};

static struct shared *sh;
static uint64_t total_calls;
static uint32_t max_payload;

/* ---- a small PRNG (splitmix64), one per thread ---- */

struct rng {
	uint64_t s;
};

static uint64_t rnd64(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A number in 0..n-1. */
static uint32_t rnd(struct rng *r, uint32_t n)
{
	return n ? (uint32_t)(rnd64(r) % n) : 0;
}

static bool chance(struct rng *r, unsigned percent)
{
	return rnd(r, 100) < percent;
}

/* ---- the commands ---- */

static const unsigned long known_cmds[] = {
	DVK_IOC_VERSION, DVK_IOC_DC_CREATE, DVK_IOC_DC_DESTROY, DVK_IOC_BIND, DVK_IOC_SEND,
	DVK_IOC_RECEIVE, DVK_IOC_SENDREC, DVK_IOC_REPLY, DVK_IOC_REPLY_RECEIVE, DVK_IOC_NOTIFY,
	DVK_IOC_PROXY_ATTACH, DVK_IOC_REMOTE_ADD, DVK_IOC_REMOTE_DEL, DVK_IOC_PROXY_DRAIN,
	DVK_IOC_PROXY_INJECT, DVK_IOC_SUBMIT, DVK_IOC_REAP, DVK_IOC_CANCEL,
};
static const char *const known_names[] = {
	"VERSION", "DC_CREATE", "DC_DESTROY", "BIND", "SEND",
	"RECEIVE", "SENDREC", "REPLY", "REPLY_RECEIVE", "NOTIFY",
	"PROXY_ATTACH", "REMOTE_ADD", "REMOTE_DEL", "PROXY_DRAIN", "PROXY_INJECT", "SUBMIT",
	"REAP", "CANCEL",
};
#define N_KNOWN (sizeof(known_cmds) / sizeof(known_cmds[0]))

static int known_index(unsigned long cmd)
{
	for (size_t i = 0; i < N_KNOWN; i++)
		if (known_cmds[i] == cmd)
			return (int)i;
	return -1;
}

static bool is_known(unsigned long cmd)
{
	return known_index(cmd) >= 0;
}

/* ---- anomalies ---- */

static void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void anomaly(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	atomic_fetch_add(&sh->anomalies, 1);
	if (atomic_fetch_add(&sh->diags, 1) >= MAX_DIAGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tap_diag("anomaly [pid %d]: %s", (int)getpid(), msg);
}

/* The errors the header documents, and EBADF for a file another thread just closed. */
static bool documented(int e)
{
	switch (e) {
	case ENOENT: case EADDRINUSE: case EISCONN: case ENOTCONN: case EINVAL: case EMSGSIZE:
	case ESRCH: case ETIMEDOUT: case EAGAIN: case EPERM: case EBUSY: case EEXIST:
	case EFAULT: case ENOTTY: case EINTR: case EBADF: case EHOSTUNREACH: case EALREADY:
	case ECANCELED:
		return true;
	}
	return false;
}

/* ---- one worker process ---- */

struct slot {
	int fd;			/* -1: free */
	bool bound;
};

struct request {
	int fd;			/* the file that received it: only its endpoint may reply */
	uint32_t peer, gen;
	uint64_t id;
};

#define SLOTS 6
#define REQUESTS 32
#define REMOTES 16
#define KEPT 16
#define TOKENS 32
#define PENDING 64		/* drained sends and notes whose verdict this worker owes */
#define SENT_IDS 16		/* send ids this worker injected, to CANCEL some */
#define REQ_IDS 16		/* requests this worker injected, to CANCEL some */

/* A submitted call's token, and the file it was submitted on. */
struct token {
	int fd;
	uint64_t token;
};

/* A remote endpoint this worker registered as the proxy. */
struct remote {
	uint32_t dc, ep, gen;
};

/* A drained record kept to answer (a request) or to mutate: its header, a bit of payload. */
struct kept_record {
	struct dvk_proxy_msg h;
	unsigned char data[64];
};

struct worker {
	pthread_mutex_t mu;	/* guards slots, requests, the proxy file, remotes and records */
	struct slot slot[SLOTS];
	struct request req[REQUESTS];
	int nreq;
	int px;			/* the proxy file if this worker attached one, else -1 */
	struct remote remote[REMOTES];
	int nremotes;
	struct kept_record kept[KEPT];	/* drained requests first, mutated at random */
	int nkept;
	bool verdicts;		/* the proxy was attached with DVK_PROXY_VERDICTS */
	struct dvk_proxy_msg pending[PENDING];	/* drained sends, notes: verdicts owed */
	int npending;
	struct dvk_proxy_msg sent_ids[SENT_IDS];	/* MESSAGEs injected with a send id */
	int nsent_ids;
	struct dvk_proxy_msg req_ids[REQ_IDS];	/* REQUESTs injected */
	int nreq_ids;
	int index, nthreads;
	unsigned char *out;	/* max_payload + 64 bytes of data to send */
	unsigned char *in;	/* max_payload bytes, then an inaccessible page */
	void *none;		/* an inaccessible page */
	struct token tok[TOKENS];	/* tokens of submitted calls, to cancel */
	int ntok;
};

static struct worker w;

struct thread {
	pthread_t tid;
	int n;
	struct rng r;
	unsigned char *dbuf;	/* this thread's drain buffer: dlen bytes, then a hole */
	uint32_t dlen;
	struct px_batch batch;	/* this thread's inject batch */
	unsigned char *rbuf;	/* this thread's reap buffer: rlen bytes, then a hole */
	uint32_t rlen;
};

/*
 * A random open file (fd -1 if none), with what is known about it: a bound one if `bound`
 * and there is one, an unbound one if !bound and there is one, else any.
 */
static struct slot pick_file(struct rng *r, bool bound)
{
	struct slot s = { .fd = -1 };
	int start = rnd(r, SLOTS);

	pthread_mutex_lock(&w.mu);
	for (int i = 0; i < SLOTS; i++) {
		struct slot *c = &w.slot[(start + i) % SLOTS];

		if (c->fd >= 0 && (s.fd < 0 || (c->bound == bound && s.bound != bound)))
			s = *c;
	}
	pthread_mutex_unlock(&w.mu);
	return s;
}

/* Mostly a bound file: the calls that need one should mostly get past ENOTCONN. */
static struct slot pick(struct rng *r)
{
	return pick_file(r, chance(r, 90));
}

static void set_bound(int fd)
{
	pthread_mutex_lock(&w.mu);
	for (int i = 0; i < SLOTS; i++)
		if (w.slot[i].fd == fd)
			w.slot[i].bound = true;
	pthread_mutex_unlock(&w.mu);
}

static void remember_request(int fd, const struct dvk_msg *m)
{
	pthread_mutex_lock(&w.mu);
	w.req[w.nreq < REQUESTS ? w.nreq++ : (int)(m->request_id % REQUESTS)] =
		(struct request){ fd, m->peer, m->peer_gen, m->request_id };
	pthread_mutex_unlock(&w.mu);
}

/* Takes a remembered request (or makes one up); false if there is none. */
static bool take_request(struct rng *r, struct request *q)
{
	bool got = false;

	pthread_mutex_lock(&w.mu);
	if (w.nreq > 0) {
		int i = rnd(r, w.nreq);

		*q = w.req[i];
		w.req[i] = w.req[--w.nreq];
		got = true;
	}
	pthread_mutex_unlock(&w.mu);
	if (!got && chance(r, 30)) {
		*q = (struct request){ -1, rnd(r, 8), rnd(r, 4), rnd64(r) % 50 };
		got = true;
	}
	return got;
}

/* A known call, timed for the hang check; returns 0 or -errno and checks the errno. */
static int call(struct thread *t, int fd, unsigned long cmd, void *arg)
{
	int rc;

	atomic_store(&sh->worker[w.index].busy_since[t->n], now_ns());
	rc = dvk_ioctl(fd, cmd, arg);
	atomic_store(&sh->worker[w.index].busy_since[t->n], 0);
	if (rc == 0 && known_index(cmd) >= 0)
		atomic_fetch_add(&sh->ok[known_index(cmd)], 1);
	else if (rc && -rc < 160)
		atomic_fetch_add(&sh->err[-rc], 1);
	if (rc && !documented(-rc))
		anomaly("cmd 0x%lx failed with %s, which the header does not document", cmd,
			errname(-rc));
	return rc;
}

/* ---- plausible arguments ---- */

/* Mostly 0..7, where the run's endpoints are; sometimes out of range or DVK_ANY. */
static uint32_t some_endpoint(struct rng *r)
{
	switch (rnd(r, 20)) {
	case 0: return DVK_ANY;
	case 1: return 8 + rnd(r, 10);
	case 2: return (uint32_t)rnd64(r);
	default: return rnd(r, 8);
	}
}

static uint32_t some_generation(struct rng *r)
{
	return chance(r, 70) ? 0 : rnd(r, 5);
}

/* How a call may wait: never without a deadline, and never for more than ~20 ms. */
static void some_wait(struct rng *r, __u32 *flags, __u64 *deadline)
{
	uint32_t p = rnd(r, 100);

	*flags = 0;
	if (p < 40) {
		*flags = DVK_CALL_NONBLOCK;
		*deadline = chance(r, 50) ? 0 : in_ms(rnd(r, 20));
	} else if (p < 80) {
		*deadline = now_ns() + rnd(r, 2000000);
	} else if (p < 95) {
		*deadline = now_ns() + rnd(r, 20000000);
	} else {
		*deadline = chance(r, 50) ? 1 : now_ns() - rnd(r, 1000000000);
	}
}

/* An out-going payload: mostly small, sometimes large, rarely too large or bad. */
static void some_payload(struct rng *r, struct dvk_msg *m)
{
	uint32_t p = rnd(r, 100);

	m->payload = (uintptr_t)w.out;
	if (p < 60)
		m->size = rnd(r, 65);
	else if (p < 90)
		m->size = rnd(r, 4097 < max_payload ? 4097 : max_payload + 1);
	else if (p < 96)
		m->size = rnd(r, max_payload + 1);
	else if (p < 98)
		m->size = max_payload + 1 + rnd(r, 100);
	else {
		m->payload = chance(r, 50) ? 0 : (uintptr_t)w.none;
		m->size = 1 + rnd(r, 64);
	}
	if (m->size > max_payload + 64 && m->payload == (uintptr_t)w.out)
		m->size = max_payload + 1; /* never read past the buffer: EMSGSIZE comes first */
}

/* A buffer to receive into: mostly all of `in`, sometimes small, NULL, bad or near a hole. */
static void some_buffer(struct rng *r, struct dvk_msg *m)
{
	uint32_t p = rnd(r, 100);

	memset(m, 0, sizeof(*m));
	m->payload = (uintptr_t)w.in;
	m->size = max_payload;
	if (p < 15) {
		m->size = rnd(r, 64);
	} else if (p < 20) {
		m->payload = 0;
		m->size = chance(r, 50) ? 0 : 64;
	} else if (p < 25) {
		m->payload = (uintptr_t)w.none;
	} else if (p < 30) {
		/* The last bytes before the inaccessible page, with a capacity beyond it. */
		uint32_t room = rnd(r, 64);

		m->payload = (uintptr_t)(w.in + max_payload - room);
		m->size = room + rnd(r, 256);
	}
}

/* What a received message must look like. */
static void check_received(const struct dvk_msg *m, uint32_t cap, const char *what)
{
	if (m->size > cap)
		anomaly("%s: size %u above the capacity %u", what, m->size, cap);
	if (m->flags == DVK_MSG_NOTIFY) {
		if (m->bits == 0 || m->size != 0 || m->request_id != 0)
			anomaly("%s: notification with bits 0x%x, size %u", what, m->bits, m->size);
	} else if (m->flags == DVK_MSG_REQUEST) {
		if (m->request_id == 0 || m->bits != 0)
			anomaly("%s: request with id 0 or bits", what);
	} else if (m->flags == 0) {
		if (m->request_id != 0 || m->bits != 0)
			anomaly("%s: plain message with request id or bits", what);
	} else {
		anomaly("%s: flags 0x%x", what, m->flags);
	}
	if (m->peer >= DVK_SLOTS_MAX || m->peer_gen == 0)
		anomaly("%s: source %u generation %u", what, m->peer, m->peer_gen);
}

/* ---- the operations ---- */

static void op_open(struct thread *t)
{
	int fd = open(DVK_DEV, O_RDWR | O_CLOEXEC);

	(void)t;
	if (fd < 0) {
		anomaly("open: %s", errname(errno));
		return;
	}
	pthread_mutex_lock(&w.mu);
	for (int i = 0; i < SLOTS && fd >= 0; i++) {
		if (w.slot[i].fd < 0) {
			w.slot[i] = (struct slot){ .fd = fd };
			fd = -1;
		}
	}
	pthread_mutex_unlock(&w.mu);
	if (fd >= 0)
		close(fd);
}

static void op_close(struct thread *t)
{
	int i = rnd(&t->r, SLOTS), fd;

	pthread_mutex_lock(&w.mu);
	fd = w.slot[i].fd;
	w.slot[i] = (struct slot){ .fd = -1 };
	pthread_mutex_unlock(&w.mu);
	if (fd >= 0)
		close(fd);
}

static void op_bind(struct thread *t)
{
	struct slot s = pick_file(&t->r, chance(&t->r, 10));
	struct dvk_bind b = { 0 };
	uint32_t p = rnd(&t->r, 100);
	int rc;

	if (s.fd < 0)
		return;
	/* Mostly the DCs the run starts with, sometimes the others of its range. */
	if (p < 80)
		b.dc = DC_FIRST + rnd(&t->r, N_START_DCS);
	else if (p < 95)
		b.dc = DC_FIRST + rnd(&t->r, N_DCS);
	else
		b.dc = (uint32_t)rnd64(&t->r);
	b.endpoint = chance(&t->r, 60) ? rnd(&t->r, 4) : some_endpoint(&t->r);
	if (chance(&t->r, 20)) {
		b.flags = DVK_BIND_BY_NAME;
		snprintf(b.dc_name, sizeof(b.dc_name), "stress-%u", b.dc);
		b.dc = 0;
	}
	if (chance(&t->r, 5))
		b.reserved[rnd(&t->r, 2)] = rnd64(&t->r);
	if (chance(&t->r, 5))
		b.flags |= 1u << rnd(&t->r, 32);
	rc = call(t, s.fd, DVK_IOC_BIND, &b);
	if (rc == 0) {
		if (b.generation == 0)
			anomaly("bind: generation 0");
		set_bound(s.fd);
	}
}

static void op_send(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_send x = { 0 };
	int rc;

	if (s.fd < 0)
		return;
	x.msg.peer = some_endpoint(&t->r);
	x.msg.peer_gen = some_generation(&t->r);
	x.msg.type = (int32_t)rnd64(&t->r);
	some_payload(&t->r, &x.msg);
	some_wait(&t->r, &x.flags, &x.deadline_ns);
	if (chance(&t->r, 3))
		x.reserved = 1;
	if (chance(&t->r, 3))
		x.msg.flags = 1u << rnd(&t->r, 32);
	rc = call(t, s.fd, DVK_IOC_SEND, &x);
	if (rc == 0 && (x.msg.size > max_payload || x.reserved || x.msg.flags))
		anomaly("send of %u bytes, reserved %u, flags 0x%x succeeded", x.msg.size,
			x.reserved, x.msg.flags);
}

/* A request just received: mostly answered at once, sometimes kept to answer late or never. */
static void answer_or_keep(struct thread *t, int fd, const struct dvk_msg *m)
{
	struct dvk_reply x = { 0 };

	if (chance(&t->r, 35)) {
		remember_request(fd, m);
		return;
	}
	x.msg = (struct dvk_msg){ .peer = m->peer, .peer_gen = m->peer_gen,
				  .request_id = m->request_id, .type = m->type };
	some_payload(&t->r, &x.msg);
	call(t, fd, DVK_IOC_REPLY, &x);
}

static void op_receive(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_receive x = { 0 };
	uint32_t cap;
	int rc;

	if (s.fd < 0)
		return;
	x.from = chance(&t->r, 60) ? DVK_ANY : some_endpoint(&t->r);
	x.from_gen = x.from == DVK_ANY ? 0 : some_generation(&t->r);
	some_wait(&t->r, &x.flags, &x.deadline_ns);
	some_buffer(&t->r, &x.msg);
	cap = x.msg.size;
	rc = call(t, s.fd, DVK_IOC_RECEIVE, &x);
	if (rc == 0) {
		check_received(&x.msg, cap, "receive");
		if (x.msg.flags == DVK_MSG_REQUEST)
			answer_or_keep(t, s.fd, &x.msg);
	}
}

static void op_reply(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct request q;
	struct dvk_reply x = { 0 };

	if (s.fd < 0 || !take_request(&t->r, &q))
		return;
	x.msg = (struct dvk_msg){ .peer = q.peer, .peer_gen = q.gen, .request_id = q.id,
				  .type = (int32_t)rnd64(&t->r) };
	some_payload(&t->r, &x.msg);
	/* The file that took it (it may be closed, or reused, by now), or any. */
	call(t, q.fd >= 0 && chance(&t->r, 90) ? q.fd : s.fd, DVK_IOC_REPLY, &x);
}

static void op_reply_receive(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct request q = { .fd = -1 };
	struct dvk_reply_receive x;
	uint32_t cap;

	if (s.fd < 0)
		return;
	/* Answer a kept request from the file that took it, mostly; or fail on a made-up one. */
	take_request(&t->r, &q);
	if (q.fd >= 0 && chance(&t->r, 90))
		s.fd = q.fd;
	memset(&x, 0, sizeof(x));
	x.reply.msg = (struct dvk_msg){ .peer = q.peer, .peer_gen = q.gen, .request_id = q.id };
	some_payload(&t->r, &x.reply.msg);
	x.receive.from = DVK_ANY;
	some_wait(&t->r, &x.receive.flags, &x.receive.deadline_ns);
	some_buffer(&t->r, &x.receive.msg);
	cap = x.receive.msg.size;
	if (call(t, s.fd, DVK_IOC_REPLY_RECEIVE, &x) == 0) {
		check_received(&x.receive.msg, cap, "reply_receive");
		if (x.receive.msg.flags == DVK_MSG_REQUEST)
			answer_or_keep(t, s.fd, &x.receive.msg);
	}
}

static void op_sendrec(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_sendrec x;
	uint32_t cap, ignored;
	int rc;

	if (s.fd < 0)
		return;
	memset(&x, 0, sizeof(x));
	x.request.peer = some_endpoint(&t->r);
	x.request.peer_gen = some_generation(&t->r);
	x.request.type = (int32_t)rnd64(&t->r);
	some_payload(&t->r, &x.request);
	some_buffer(&t->r, &x.reply);
	cap = x.reply.size;
	some_wait(&t->r, &ignored, &x.deadline_ns);
	if (x.deadline_ns == 0)
		x.deadline_ns = in_ms(rnd(&t->r, 20));
	if (chance(&t->r, 3)) {
		/* Resume a call that does not exist. */
		x.flags = DVK_CALL_RESUME;
		x.call = rnd64(&t->r) % 100;
	}
	rc = call(t, s.fd, DVK_IOC_SENDREC, &x);
	/* Interrupted after the server took it: resume it at once, now and then. */
	while (rc == -EINTR && (x.flags & DVK_CALL_RESUME) && chance(&t->r, 60))
		rc = call(t, s.fd, DVK_IOC_SENDREC, &x);
	if (rc == 0) {
		if (x.reply.flags != DVK_MSG_REPLY || x.reply.request_id == 0)
			anomaly("sendrec reply with flags 0x%x, request id %llu", x.reply.flags,
				(unsigned long long)x.reply.request_id);
		if (x.reply.size > cap)
			anomaly("sendrec reply of %u bytes in %u", x.reply.size, cap);
	}
}

static void op_notify(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_notify x = { 0 };
	int rc;

	if (s.fd < 0)
		return;
	x.peer = some_endpoint(&t->r);
	x.peer_gen = some_generation(&t->r);
	x.bits = chance(&t->r, 10) ? 0 : (uint32_t)rnd64(&t->r) | 1;
	if (chance(&t->r, 3))
		x.reserved = 1;
	rc = call(t, s.fd, DVK_IOC_NOTIFY, &x);
	if (rc == 0 && (x.bits == 0 || x.reserved))
		anomaly("notify with bits 0x%x, reserved %u succeeded", x.bits, x.reserved);
}

static void op_poll(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct pollfd p;

	if (s.fd < 0)
		return;
	p = (struct pollfd){ .fd = s.fd, .events = POLLIN | POLLOUT };
	atomic_store(&sh->worker[w.index].busy_since[t->n], now_ns());
	if (poll(&p, 1, rnd(&t->r, 6)) < 0 && errno != EINTR)
		anomaly("poll: %s", errname(errno));
	atomic_store(&sh->worker[w.index].busy_since[t->n], 0);
}

static void op_dc(struct thread *t)
{
	struct dvk_dc_config c = { .id = DC_FIRST + rnd(&t->r, N_DCS) };
	struct slot s = pick(&t->r);
	uint32_t id = c.id;

	if (s.fd < 0)
		return;
	if (chance(&t->r, 30)) {
		call(t, s.fd, DVK_IOC_DC_DESTROY, &id);
		return;
	}
	c.slots = chance(&t->r, 90) ? 1 + rnd(&t->r, 16) : (uint32_t)rnd64(&t->r);
	snprintf(c.name, sizeof(c.name), chance(&t->r, 90) ? "stress-%u" : "bad name %u", c.id);
	call(t, s.fd, DVK_IOC_DC_CREATE, &c);
}

/* ---- submitted calls ---- */

static void remember_token(int fd, uint64_t token)
{
	pthread_mutex_lock(&w.mu);
	w.tok[w.ntok < TOKENS ? w.ntok++ : (int)(token % TOKENS)] = (struct token){ fd, token };
	pthread_mutex_unlock(&w.mu);
}

/* Takes a remembered token (or makes one up); false if there is none. */
static bool take_token(struct rng *r, struct token *k)
{
	bool got = false;

	pthread_mutex_lock(&w.mu);
	if (w.ntok > 0 && chance(r, 85)) {
		int i = rnd(r, w.ntok);

		*k = w.tok[i];
		w.tok[i] = w.tok[--w.ntok];
		got = true;
	}
	pthread_mutex_unlock(&w.mu);
	if (!got && chance(r, 50)) {
		*k = (struct token){ -1, chance(r, 80) ? rnd(r, 200) : rnd64(r) };
		got = true;
	}
	return got;
}

/*
 * SUBMIT of a send (some with NONBLOCK), receive, sendrec or notify, mostly plausible (they
 * stay in flight until reaped, cancelled or their file goes), sometimes with what the header
 * forbids.
 */
static void op_submit(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_submit x = { 0 };
	bool bad = false;
	uint32_t p = rnd(&t->r, 100);
	int rc;

	if (s.fd < 0)
		return;
	x.op = p < 30 ? DVK_OP_SEND : p < 60 ? DVK_OP_RECEIVE : p < 85 ? DVK_OP_SENDREC
		: p < 97 ? DVK_OP_NOTIFY : (uint32_t)rnd64(&t->r);
	if (x.op < DVK_OP_SEND || x.op > DVK_OP_NOTIFY)
		bad = true;
	if (x.op == DVK_OP_RECEIVE) {
		x.from = chance(&t->r, 60) ? DVK_ANY : some_endpoint(&t->r);
		x.from_gen = x.from == DVK_ANY && chance(&t->r, 97) ? 0 : some_generation(&t->r);
		if (x.from == DVK_ANY && x.from_gen)
			bad = true;
		if (chance(&t->r, 4)) {	/* RECEIVE takes no buffer: msg must be zero */
			((uint32_t *)&x.msg)[rnd(&t->r, sizeof(x.msg) / 4)] = (uint32_t)rnd64(&t->r) | 1;
			bad = true;
		}
	} else if (x.op == DVK_OP_NOTIFY) {
		/* peer, peer_gen and non-zero bits; nothing else. */
		x.msg.peer = some_endpoint(&t->r);
		x.msg.peer_gen = some_generation(&t->r);
		x.msg.bits = chance(&t->r, 5) ? 0 : (uint32_t)rnd64(&t->r) | 1;
		if (x.msg.peer == DVK_ANY || !x.msg.bits)
			bad = true;
		if (chance(&t->r, 4)) {
			switch (rnd(&t->r, 5)) {
			case 0: x.msg.type = (int32_t)(rnd64(&t->r) | 1); break;
			case 1: x.msg.flags = 1u << rnd(&t->r, 32); break;
			case 2: x.msg.request_id = rnd64(&t->r) | 1; break;
			case 3: x.msg.payload = (uintptr_t)w.out; break;
			default: x.msg.size = 1 + rnd(&t->r, 64); break;
			}
			bad = true;
		}
		if (chance(&t->r, 2)) {
			x.from = (uint32_t)rnd64(&t->r) | 1;
			bad = true;
		}
	} else {
		x.msg.peer = some_endpoint(&t->r);
		x.msg.peer_gen = some_generation(&t->r);
		x.msg.type = (int32_t)rnd64(&t->r);
		some_payload(&t->r, &x.msg);
		if (x.msg.peer == DVK_ANY || x.msg.size > max_payload)
			bad = true;
		if (chance(&t->r, 3)) {
			x.msg.flags = 1u << rnd(&t->r, 32);
			bad = true;
		}
		if (chance(&t->r, 2)) {
			x.msg.request_id = rnd64(&t->r) | 1;
			bad = true;
		}
		if (chance(&t->r, 2)) {
			x.msg.bits = (uint32_t)rnd64(&t->r) | 1;
			bad = true;
		}
		if (chance(&t->r, 2)) {
			x.from = (uint32_t)rnd64(&t->r) | 1;
			bad = true;
		}
	}
	/* NONBLOCK is the one flag, and a SEND's only. */
	if (x.op == DVK_OP_SEND && chance(&t->r, 30))
		x.flags = DVK_CALL_NONBLOCK;
	if (chance(&t->r, 3)) {
		x.flags |= 1u << rnd(&t->r, 32);
		if (x.op != DVK_OP_SEND || x.flags != DVK_CALL_NONBLOCK)
			bad = true;
	}
	if (chance(&t->r, 3)) {
		x.reserved = rnd64(&t->r) | 1;
		bad = true;
	}
	if (chance(&t->r, 5))
		x.token = rnd64(&t->r);	/* only written */
	rc = call(t, s.fd, DVK_IOC_SUBMIT, &x);
	if (rc == 0 && bad)
		anomaly("SUBMIT of op %u (flags 0x%x, reserved %llu, from %u/%u, msg flags 0x%x, "
			"size %u) succeeded", x.op, x.flags, (unsigned long long)x.reserved, x.from,
			x.from_gen, x.msg.flags, x.msg.size);
	if (rc == 0 && x.token == 0)
		anomaly("SUBMIT returned token 0");
	if (rc == 0)
		remember_token(s.fd, x.token);
}

/* REAP into a good, short or bad buffer; the records must be what the header describes. */
static void op_reap(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_reap x = { 0 };
	uint32_t p = rnd(&t->r, 100), cap;
	bool ours = true;
	int rc;

	if (s.fd < 0)
		return;
	x.buffer = (uintptr_t)t->rbuf;
	x.size = cap = t->rlen;
	if (p < 20) {
		x.size = cap = rnd(&t->r, 300);		/* often too small */
	} else if (p < 25) {
		x.buffer = chance(&t->r, 50) ? 0 : (uintptr_t)w.none;
		ours = false;
	} else if (p < 32) {
		/* The last bytes before the hole, with a size that runs into it. */
		cap = rnd(&t->r, 200);
		x.buffer = (uintptr_t)(t->rbuf + t->rlen - cap);
		x.size = cap + rnd(&t->r, 4096);
	}
	if (chance(&t->r, 3))
		x.reserved = rnd64(&t->r) | 1;
	if (chance(&t->r, 20))
		x.count = (uint32_t)rnd64(&t->r);	/* only written */
	rc = call(t, s.fd, DVK_IOC_REAP, &x);
	if (rc == -EMSGSIZE && (x.size <= cap || x.size > cq_record_size(max_payload)))
		anomaly("REAP EMSGSIZE into %u bytes needs %u", cap, x.size);
	if (rc)
		return;
	if (x.reserved || !ours || x.count == 0 || x.size > cap ||
	    x.size < x.count * (uint32_t)sizeof(struct dvk_completion)) {
		anomaly("REAP succeeded with reserved %llu into %s: %u records, %u bytes in %u",
			(unsigned long long)x.reserved, ours ? "our buffer" : "a bad one", x.count,
			x.size, cap);
		return;
	}
	{
		const unsigned char *buf = (const unsigned char *)(uintptr_t)x.buffer;
		uint32_t count = 0;
		size_t off = 0, len;
		char why[256];

		while (off < x.size) {
			struct dvk_completion c;

			len = cq_record_check(buf, x.size, off, max_payload, why, sizeof(why));
			if (!len) {
				anomaly("reaped %u records, %u bytes: %s", x.count, x.size, why);
				return;
			}
			memcpy(&c, buf + off, sizeof(c));
			atomic_fetch_add(&sh->reaped_op[c.op], 1);	/* checked: 1..4 */
			if (c.result == 0)
				atomic_fetch_add(&sh->reaped_ok, 1);
			else if (!documented(-c.result) || c.result == -EINVAL || c.result == -EFAULT)
				anomaly("a completion of op %u with %s", c.op, rcname(c.result));
			/* A request reaped is owed: answer it now or later, like a received one. */
			if (c.op == DVK_OP_RECEIVE && c.result == 0 && c.msg.flags == DVK_MSG_REQUEST)
				answer_or_keep(t, s.fd, &c.msg);
			off += len;
			count++;
		}
		if (count != x.count)
			anomaly("REAP reported %u records, found %u", x.count, count);
		atomic_fetch_add(&sh->reaped, count);
	}
}

/* CANCEL of a token given (on its file, mostly), reaped, or made up. */
static void op_cancel(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct token k;
	struct dvk_cancel x = { 0 };
	int rc, fd;

	if (s.fd < 0 || !take_token(&t->r, &k))
		return;
	fd = k.fd >= 0 && chance(&t->r, 90) ? k.fd : s.fd;
	x.token = k.token;
	if (chance(&t->r, 4))
		x.reserved = rnd64(&t->r) | 1;
	rc = call(t, fd, DVK_IOC_CANCEL, &x);
	if (rc == 0)
		atomic_fetch_add(&sh->undone, 1);
	if (x.reserved && rc != -EINVAL && rc != -ENOTCONN && rc != -EBADF)
		anomaly("CANCEL with reserved %llu: %s", (unsigned long long)x.reserved,
			rcname(rc));
	else if (!x.reserved && rc && rc != -EALREADY && rc != -ENOENT && rc != -ENOTCONN &&
		 rc != -EBADF)
		anomaly("CANCEL of token %llu: %s", (unsigned long long)x.token, rcname(rc));
	/* Completed: its completion follows, and a later CANCEL of it says so again, or ENOENT. */
	if (rc == -EALREADY && chance(&t->r, 50))
		remember_token(fd, k.token);
}

/* ---- the proxy role ---- */

static int proxy_file(void)
{
	int px;

	pthread_mutex_lock(&w.mu);
	px = w.px;
	pthread_mutex_unlock(&w.mu);
	return px;
}

/* Tries to become the node's proxy, mostly with good arguments; most tries find one. */
static void op_attach(struct thread *t)
{
	struct dvk_proxy_attach a = { .node = rnd(&t->r, 8) };
	int fd = open(DVK_DEV, O_RDWR | O_CLOEXEC), rc;
	bool bad = false;

	if (fd < 0) {
		anomaly("open: %s", errname(errno));
		return;
	}
	/* Half with verdicts; never DVK_PROXY_CLAIMS (nobody here answers claims). */
	if (chance(&t->r, 50))
		a.flags = DVK_PROXY_VERDICTS;
	if (chance(&t->r, 5)) {
		a.flags |= 1u << (2 + rnd(&t->r, 30));
		bad = true;
	}
	if (chance(&t->r, 5)) {
		a.reserved[rnd(&t->r, 2)] = rnd64(&t->r) | 1;
		bad = true;
	}
	rc = call(t, fd, DVK_IOC_PROXY_ATTACH, chance(&t->r, 3) ? NULL : &a);
	if (rc == 0 && bad)
		anomaly("attach with flags 0x%x succeeded", a.flags);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		if (w.px < 0) {
			w.px = fd;
			w.nremotes = 0;
			w.nkept = 0;
			w.verdicts = a.flags & DVK_PROXY_VERDICTS;
			w.npending = 0;
			w.nsent_ids = 0;
			w.nreq_ids = 0;
			fd = -1;
		}
		pthread_mutex_unlock(&w.mu);
		if (fd >= 0)
			anomaly("a second attach succeeded while this worker holds the proxy");
	}
	if (fd >= 0)
		close(fd);
}

/* A proxy call on a file that is not the proxy: EPERM, whatever the argument. */
static void op_proxy_elsewhere(struct thread *t)
{
	static const unsigned long cmds[] = { DVK_IOC_REMOTE_ADD, DVK_IOC_REMOTE_DEL,
					      DVK_IOC_PROXY_DRAIN, DVK_IOC_PROXY_INJECT };
	struct slot s = pick_file(&t->r, chance(&t->r, 50));
	unsigned char arg[64];
	int rc;

	if (s.fd < 0)
		return;
	for (size_t i = 0; i < sizeof(arg); i += 8) {
		uint64_t v = rnd64(&t->r);

		memcpy(arg + i, &v, 8);
	}
	rc = call(t, s.fd, cmds[rnd(&t->r, 4)], chance(&t->r, 10) ? NULL : arg);
	/* (Unless another thread closed the file and its number went to a new proxy file.) */
	if (rc != -EPERM && rc != -EBADF && proxy_file() != s.fd)
		anomaly("a proxy call on a file that is not the proxy: %s", rcname(rc));
}

static void op_remote_add(struct thread *t, int px)
{
	struct dvk_remote r = { 0 };
	bool bad = false;
	int rc;

	r.dc = chance(&t->r, 90) ? DC_FIRST + rnd(&t->r, N_START_DCS)
				 : DC_FIRST + rnd(&t->r, N_DCS + 2);
	r.endpoint = chance(&t->r, 70) ? rnd(&t->r, 8) : some_endpoint(&t->r);
	r.generation = chance(&t->r, 90) ? 1 + rnd(&t->r, 5) : (uint32_t)rnd64(&t->r);
	r.node = rnd(&t->r, 8);
	if (chance(&t->r, 4)) {
		r.flags = 1u << rnd(&t->r, 32);
		bad = true;
	}
	if (chance(&t->r, 3)) {
		r.reserved = (uint32_t)rnd64(&t->r) | 1;
		bad = true;
	}
	rc = call(t, px, DVK_IOC_REMOTE_ADD, &r);
	if (rc == 0 && (bad || r.generation == 0 || r.endpoint == DVK_ANY))
		anomaly("REMOTE_ADD of endpoint %u generation %u flags 0x%x succeeded", r.endpoint,
			r.generation, r.flags);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		w.remote[w.nremotes < REMOTES ? w.nremotes++ : (int)rnd(&t->r, REMOTES)] =
			(struct remote){ r.dc, r.endpoint, r.generation };
		pthread_mutex_unlock(&w.mu);
	}
}

/* One of the remote endpoints registered (or made up); false if there is none. */
static bool some_remote(struct thread *t, struct remote *out, bool take)
{
	bool got = false;

	pthread_mutex_lock(&w.mu);
	if (w.nremotes > 0 && chance(&t->r, 90)) {
		int i = rnd(&t->r, w.nremotes);

		*out = w.remote[i];
		if (take)
			w.remote[i] = w.remote[--w.nremotes];
		got = true;
	}
	pthread_mutex_unlock(&w.mu);
	if (!got && chance(&t->r, 50)) {
		*out = (struct remote){ DC_FIRST + rnd(&t->r, N_START_DCS), rnd(&t->r, 8),
					rnd(&t->r, 6) };
		got = true;
	}
	return got;
}

static void op_remote_del(struct thread *t, int px)
{
	struct remote m;
	struct dvk_remote r = { 0 };
	int rc;

	if (!some_remote(t, &m, true))
		return;
	r = (struct dvk_remote){ .dc = m.dc, .endpoint = m.ep,
				 .generation = chance(&t->r, 80) ? m.gen : rnd(&t->r, 6),
				 .node = rnd(&t->r, 8) };
	if (chance(&t->r, 30))
		r.flags = DVK_REMOTE_NODE_DOWN;
	if (chance(&t->r, 3))
		r.flags |= 1u << rnd(&t->r, 32);
	if (chance(&t->r, 3))
		r.reserved = 1;
	rc = call(t, px, DVK_IOC_REMOTE_DEL, &r);
	if (rc == 0 && ((r.flags & ~DVK_REMOTE_NODE_DOWN) || r.reserved))
		anomaly("REMOTE_DEL with flags 0x%x, reserved %u succeeded", r.flags, r.reserved);
}

/* Keeps a drained record: requests to answer later, any record to mutate. */
static void keep_record(struct thread *t, const unsigned char *rec)
{
	struct kept_record k;
	int i;

	memcpy(&k.h, rec, sizeof(k.h));
	memcpy(k.data, rec + sizeof(k.h), k.h.size < sizeof(k.data) ? k.h.size : sizeof(k.data));
	pthread_mutex_lock(&w.mu);
	if (w.nkept < KEPT) {
		i = w.nkept++;
	} else {
		i = rnd(&t->r, KEPT);
		/* When full, requests are replaced last, so that most get answered. */
		if (k.h.kind != DVK_PROXY_REQUEST && w.kept[i].h.kind == DVK_PROXY_REQUEST &&
		    chance(&t->r, 80))
			i = -1;
	}
	if (i >= 0)
		w.kept[i] = k;
	pthread_mutex_unlock(&w.mu);
}

/* What a verdict on a failed send may say: errnos the header documents for callers. */
static const int32_t verdict_errnos[] = { -ETIMEDOUT, -EAGAIN, -ESRCH, -ECANCELED,
					  -EHOSTUNREACH, -ENOENT };
#define N_VERDICT_ERRNOS (sizeof(verdict_errnos) / sizeof(verdict_errnos[0]))

static bool verdict_errno(int32_t status)
{
	for (size_t i = 0; i < N_VERDICT_ERRNOS; i++)
		if (verdict_errnos[i] == status)
			return true;
	return false;
}

/*
 * Injects the verdicts this worker owes for the sends and notes it drained (all, or a random
 * part of them): mostly 0, sometimes an errno. Such a send, and a submitted notify a note
 * carries, waits for nothing else, so each verdict
 * must go in: one the kernel refuses (its remote endpoint was removed, which ended the send
 * already) is skipped, and the rest injected.
 */
static void answer_sends(struct thread *t, int px, bool all)
{
	struct dvk_proxy_msg owe[PENDING];
	int n = 0;

	pthread_mutex_lock(&w.mu);
	for (int i = 0; i < w.npending;) {
		if (all || chance(&t->r, 60)) {
			owe[n++] = w.pending[i];
			w.pending[i] = w.pending[--w.npending];
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&w.mu);
	if (!n)
		return;
	px_batch_reset(&t->batch);
	for (int i = 0; i < n; i++) {
		struct dvk_proxy_msg h = {
			.kind = DVK_PROXY_SENT, .dc = owe[i].dc,
			.dst = owe[i].src, .dst_gen = owe[i].src_gen,
			.src = owe[i].dst, .src_gen = owe[i].dst_gen,
			.request_id = owe[i].request_id,
			.status = chance(&t->r, 75) ? 0
						    : verdict_errnos[rnd(&t->r, N_VERDICT_ERRNOS)],
		};

		px_batch_add(&t->batch, &h, NULL);
	}
	for (size_t off = 0; off < t->batch.len;) {
		struct dvk_proxy_batch x = { .buffer = (uintptr_t)(t->batch.buf + off),
					     .size = (uint32_t)(t->batch.len - off) };
		int rc = call(t, px, DVK_IOC_PROXY_INJECT, &x);

		/* (Another thread may have closed the proxy: then the sends have ended.) */
		if (rc) {
			if (rc == -EINVAL || rc == -EFAULT)
				anomaly("injecting %d verdicts: %s", n, rcname(rc));
			return;
		}
		atomic_fetch_add(&sh->injected, x.count);
		atomic_fetch_add(&sh->verdicts, x.count);
		off += x.size;
		if (x.error) {
			if (x.error != -EADDRNOTAVAIL && x.error != -ENOMEM)
				anomaly("a verdict was refused with %s", rcname(x.error));
			off += sizeof(struct dvk_proxy_msg);
		}
	}
}

/* A drained send or note that waits for its verdict: this worker owes it. */
static void owe_verdict(struct thread *t, int px, const struct dvk_proxy_msg *h)
{
	bool full;

	pthread_mutex_lock(&w.mu);
	full = w.npending == PENDING;
	pthread_mutex_unlock(&w.mu);
	if (full)
		answer_sends(t, px, true);
	pthread_mutex_lock(&w.mu);
	if (w.npending < PENDING)
		w.pending[w.npending++] = *h;
	pthread_mutex_unlock(&w.mu);
}

/*
 * A drained CANCEL: a local sender or caller gave up on a send or a sendrec in flight (its
 * deadline: -ETIMEDOUT; DVK_IOC_CANCEL or given up otherwise: -ECANCELED; gone: -ESRCH). For
 * a request this worker drained and keeps, the answer is no longer awaited: it is forgotten,
 * mostly (or answered anyway, late, to be ignored).
 */
static void withdrawn(struct thread *t, const struct dvk_proxy_msg *h)
{
	if (h->status != -ETIMEDOUT && h->status != -ECANCELED && h->status != -ESRCH)
		anomaly("a CANCEL record with status %s", rcname(h->status));
	pthread_mutex_lock(&w.mu);
	for (int i = 0; i < w.nkept; i++) {
		const struct dvk_proxy_msg *k = &w.kept[i].h;

		if (k->kind == DVK_PROXY_REQUEST && k->dc == h->dc && k->src == h->src &&
		    k->src_gen == h->src_gen && k->dst == h->dst && k->dst_gen == h->dst_gen &&
		    k->request_id == h->request_id) {
			atomic_fetch_add(&sh->withdrawn_out, 1);
			if (chance(&t->r, 80))
				w.kept[i] = w.kept[--w.nkept];
			break;
		}
	}
	pthread_mutex_unlock(&w.mu);
}

static void op_drain(struct thread *t, int px)
{
	struct dvk_proxy_batch x = { 0 };
	uint32_t p = rnd(&t->r, 100), cap;
	bool ours = true;
	int rc;

	x.buffer = (uintptr_t)t->dbuf;
	x.size = cap = t->dlen;
	if (p < 15) {
		x.size = cap = rnd(&t->r, 400);		/* often too small */
	} else if (p < 20) {
		x.buffer = chance(&t->r, 50) ? 0 : (uintptr_t)w.none;
		ours = false;
	} else if (p < 27) {
		/* The last bytes before the hole, with a size that runs into it. */
		cap = rnd(&t->r, 300);
		x.buffer = (uintptr_t)(t->dbuf + t->dlen - cap);
		x.size = cap + rnd(&t->r, 4096);
	}
	some_wait(&t->r, &x.flags, &x.deadline_ns);
	if (chance(&t->r, 3))
		x.flags |= 1u << rnd(&t->r, 32);
	if (chance(&t->r, 2))
		x.reserved = 1;
	if (chance(&t->r, 2))
		x.count = 1;
	rc = call(t, px, DVK_IOC_PROXY_DRAIN, &x);
	if (rc == -EMSGSIZE && (x.size <= cap || x.size > px_record_size(max_payload)))
		anomaly("drain EMSGSIZE into %u bytes needs %u", cap, x.size);
	if (rc || !ours)
		return;
	if ((x.flags & ~DVK_CALL_NONBLOCK) || x.reserved || x.count == 0 || x.size > cap) {
		anomaly("drain succeeded with flags 0x%x, reserved %llu: %u records, %u bytes "
			"in %u", x.flags, (unsigned long long)x.reserved, x.count, x.size, cap);
		return;
	}
	{
		const unsigned char *buf = (const unsigned char *)(uintptr_t)x.buffer;
		uint32_t count = 0;
		size_t off = 0, len;
		char why[256];

		while (off < x.size) {
			len = px_record_check(buf, x.size, off, max_payload, why, sizeof(why));
			if (!len) {
				anomaly("drained batch of %u records, %u bytes: %s", x.count, x.size,
					why);
				return;
			}
			if (chance(&t->r, 30) || buf[off] == DVK_PROXY_REQUEST)
				keep_record(t, buf + off);
			{
				struct dvk_proxy_msg h;

				memcpy(&h, buf + off, sizeof(h));
				/* A send, or a note, that waits for its verdict. */
				if ((h.kind == DVK_PROXY_MESSAGE || h.kind == DVK_PROXY_NOTIFY) &&
				    h.request_id)
					owe_verdict(t, px, &h);
				if (h.flags & DVK_PROXY_NONBLOCK)
					atomic_fetch_add(&sh->drained_nonblock, 1);
				if (h.kind == DVK_PROXY_CANCEL)
					withdrawn(t, &h);
				atomic_fetch_add(&sh->drained_kind[h.kind & 15], 1);
			}
			off += len;
			count++;
		}
		if (count != x.count)
			anomaly("drain reported %u records, found %u", x.count, count);
		atomic_fetch_add(&sh->drained, count);
	}
	/* Most verdicts go at once; the others at this worker's next proxy call. */
	answer_sends(t, px, chance(&t->r, 70));
}

/* Appends one record to the thread's batch: plausible, an answer, mutated or random. */
static void add_record(struct thread *t)
{
	struct dvk_proxy_msg h = { 0 };
	struct kept_record k = { 0 };
	struct remote m;
	uint32_t p = rnd(&t->r, 100);
	bool have = false, verdicts;

	pthread_mutex_lock(&w.mu);
	verdicts = w.verdicts;
	if (w.nkept > 0) {
		int i = rnd(&t->r, w.nkept);

		k = w.kept[i];
		have = true;
		/* An answered request is answered once, mostly. */
		if (p >= 55 && p < 80 && k.h.kind == DVK_PROXY_REQUEST && chance(&t->r, 80))
			w.kept[i] = w.kept[--w.nkept];
	}
	pthread_mutex_unlock(&w.mu);

	if (p < 55 && some_remote(t, &m, false)) {
		/* From a remote endpoint to a local one (with verdicts: withdrawals too). */
		static const uint32_t kinds[] = { DVK_PROXY_MESSAGE, DVK_PROXY_MESSAGE,
						  DVK_PROXY_REQUEST, DVK_PROXY_NOTIFY,
						  DVK_PROXY_CANCEL };

		h.kind = kinds[rnd(&t->r, verdicts ? 5 : 4)];
		h.dc = m.dc;
		h.src = m.ep;
		h.src_gen = m.gen;
		h.dst = chance(&t->r, 80) ? rnd(&t->r, 4) : some_endpoint(&t->r);
		h.dst_gen = chance(&t->r, 90) ? 0 : some_generation(&t->r);
		h.type = (int32_t)rnd64(&t->r);
		if (h.kind == DVK_PROXY_NOTIFY) {
			h.bits = (uint32_t)rnd64(&t->r) | 1;
			h.type = 0;
		} else {
			h.size = chance(&t->r, 90) ? rnd(&t->r, 65) : rnd(&t->r, max_payload + 2);
		}
		if (h.kind == DVK_PROXY_REQUEST) {
			/* Remembered: a CANCEL may withdraw it later (held, queued, or too late). */
			h.request_id = rnd64(&t->r) | 1;
			pthread_mutex_lock(&w.mu);
			w.req_ids[w.nreq_ids < REQ_IDS ? w.nreq_ids++ : (int)rnd(&t->r, REQ_IDS)] =
				h;
			pthread_mutex_unlock(&w.mu);
		}
		if (h.kind == DVK_PROXY_MESSAGE && verdicts && chance(&t->r, 40)) {
			/* A send id: the message gets a SENT verdict once it is queued. */
			h.request_id = rnd64(&t->r) | 1;
			pthread_mutex_lock(&w.mu);
			w.sent_ids[w.nsent_ids < SENT_IDS ? w.nsent_ids++ : (int)rnd(&t->r, SENT_IDS)] =
				h;
			pthread_mutex_unlock(&w.mu);
		}
		if (h.kind == DVK_PROXY_CANCEL) {
			/*
			 * Mostly of a message injected with a send id, or of a request injected
			 * (held, queued, received or gone).
			 */
			pthread_mutex_lock(&w.mu);
			if (w.nsent_ids > 0 && chance(&t->r, 45)) {
				h = w.sent_ids[rnd(&t->r, w.nsent_ids)];
			} else if (w.nreq_ids > 0 && chance(&t->r, 75)) {
				h = w.req_ids[rnd(&t->r, w.nreq_ids)];
				atomic_fetch_add(&sh->withdrawals_in, 1);
			} else {
				h.request_id = rnd64(&t->r) | 1;
			}
			pthread_mutex_unlock(&w.mu);
			h.kind = DVK_PROXY_CANCEL;
			h.type = 0;
			h.size = 0;
			h.bits = 0;
			h.status = chance(&t->r, 50) ? -ECANCELED : -ETIMEDOUT;
		}
	} else if (p < 80 && have && (k.h.kind == DVK_PROXY_MESSAGE ||
				      k.h.kind == DVK_PROXY_NOTIFY) && k.h.request_id) {
		/* A (possibly second) verdict on a drained send or note. */
		h = (struct dvk_proxy_msg){
			.kind = DVK_PROXY_SENT, .dc = k.h.dc, .dst = k.h.src, .dst_gen = k.h.src_gen,
			.src = k.h.dst, .src_gen = k.h.dst_gen, .request_id = k.h.request_id,
			.status = chance(&t->r, 50) ? 0 : verdict_errnos[rnd(&t->r, N_VERDICT_ERRNOS)],
		};
	} else if (p < 80 && have && k.h.kind == DVK_PROXY_REQUEST) {
		/* The answer to a drained request: a reply, mostly, or a failure. */
		static const int32_t statuses[] = { -ESRCH, -EHOSTUNREACH, -ETIMEDOUT, -ENOENT };

		h.dc = k.h.dc;
		h.dst = k.h.src;
		h.dst_gen = k.h.src_gen;
		h.src = k.h.dst;
		h.src_gen = k.h.dst_gen;
		h.request_id = k.h.request_id;
		if (chance(&t->r, 80)) {
			h.kind = DVK_PROXY_REPLY;
			h.type = k.h.type;
			h.size = rnd(&t->r, 65);
		} else {
			h.kind = DVK_PROXY_FAIL;
			h.status = statuses[rnd(&t->r, 4)];
		}
	} else if (p < 95 && have) {
		/* A drained record sent back, mostly reflected (from its destination to its
		 * source), with a few bits flipped now and then. */
		h = k.h;
		if (chance(&t->r, 80)) {
			h.src = k.h.dst;
			h.src_gen = k.h.dst_gen;
			h.dst = k.h.src;
			h.dst_gen = k.h.src_gen;
		}
		/* What was left of a deadline is not injected back, mostly. */
		if (chance(&t->r, 80))
			h.timeout_ns = 0;
		for (int flips = chance(&t->r, 50) ? 0 : 1 + rnd(&t->r, 2); flips > 0; flips--)
			((unsigned char *)&h)[rnd(&t->r, sizeof(h))] ^= 1u << rnd(&t->r, 8);
		if (h.size > 64 && chance(&t->r, 90))
			h.size = rnd(&t->r, 65);
	} else {
		/* Random bytes, with a size that does not run past our data. */
		for (size_t i = 0; i < sizeof(h); i += 8) {
			uint64_t v = rnd64(&t->r);

			memcpy((unsigned char *)&h + i, &v, 8);
		}
		if (chance(&t->r, 70))
			h.kind = 1 + rnd(&t->r, DVK_PROXY_CANCEL);
		h.size = chance(&t->r, 90) ? rnd(&t->r, 65) : max_payload + 1;
	}
	/*
	 * Keep what a local call could be handed within what the header documents: a request id
	 * is never 0, a failure's status is a plain errno (invalid ones stay, to be refused).
	 */
	if (h.kind == DVK_PROXY_REQUEST && h.request_id == 0)
		h.request_id = 1;
	if (h.kind == DVK_PROXY_FAIL && h.status < 0 && h.status > -4096)
		h.status = -ESRCH;
	if (h.kind == DVK_PROXY_SENT && h.status < 0 && h.status > -512 && !verdict_errno(h.status))
		h.status = -ETIMEDOUT;
	if (h.size > max_payload + 1)
		h.size = max_payload + 1;
	px_batch_add(&t->batch, &h, w.out);
}

static void op_inject(struct thread *t, int px)
{
	struct dvk_proxy_batch x = { 0 };
	uint32_t records = 1 + rnd(&t->r, chance(&t->r, 80) ? 4 : 40), p = rnd(&t->r, 100);
	bool bad_in;
	int rc;

	px_batch_reset(&t->batch);
	for (uint32_t i = 0; i < records; i++)
		add_record(t);
	x.buffer = (uintptr_t)t->batch.buf;
	x.size = (uint32_t)t->batch.len;
	if (p < 5)
		x.size -= 1 + rnd(&t->r, x.size < 48 ? x.size : 48);	/* truncated */
	else if (p < 8)
		x.buffer = chance(&t->r, 50) ? 0 : (uintptr_t)w.none;
	if (chance(&t->r, 2))
		x.flags = 1u << rnd(&t->r, 32);
	if (chance(&t->r, 2))
		x.deadline_ns = 1 + rnd(&t->r, 1000);
	if (chance(&t->r, 2))
		x.error = -1;	/* only written: ignored on input */
	bad_in = x.flags || x.deadline_ns;
	rc = call(t, px, DVK_IOC_PROXY_INJECT, &x);
	if (rc)
		return;
	if (bad_in) {
		anomaly("inject with flags 0x%x or deadline %llu succeeded", x.flags,
			(unsigned long long)x.deadline_ns);
		return;
	}
	switch (-x.error) {
	case 0:
		if (x.size != (p < 5 ? x.size : t->batch.len) || x.count > records)
			anomaly("inject took %u records, %u bytes of %zu, and no error", x.count,
				x.size, t->batch.len);
		break;
	case EINVAL: case EMSGSIZE: case ENOENT: case EADDRNOTAVAIL: case EAGAIN: case EFAULT:
	case ENOMEM:
		break;
	default:
		anomaly("inject stopped with error %s", rcname(x.error));
	}
	if (x.count > records || x.size > t->batch.len)
		anomaly("inject took %u records, %u bytes of %u records, %zu bytes", x.count, x.size,
			records, t->batch.len);
	atomic_fetch_add(&sh->injected, x.count);
	if (-x.error >= 0 && -x.error < 160)
		atomic_fetch_add(&sh->inject_stop[-x.error], 1);
}

static void op_proxy(struct thread *t)
{
	int px = proxy_file();
	uint32_t p = rnd(&t->r, 100);

	if (px < 0) {
		if (p < 40)
			op_attach(t);
		else
			op_proxy_elsewhere(t);
		return;
	}
	/* Sends drained earlier wait for their verdicts: those go first. */
	answer_sends(t, px, true);
	pthread_mutex_lock(&w.mu);
	if (w.nremotes < 3 && p >= 50)
		p = 0;	/* few remote endpoints: register more */
	pthread_mutex_unlock(&w.mu);
	if (p < 12) {
		op_remote_add(t, px);
	} else if (p < 16) {
		op_remote_del(t, px);
	} else if (p < 56) {
		op_drain(t, px);
	} else if (p < 96) {
		op_inject(t, px);
	} else if (p < 99) {
		struct pollfd pf = { .fd = px, .events = POLLIN };

		atomic_store(&sh->worker[w.index].busy_since[t->n], now_ns());
		if (poll(&pf, 1, rnd(&t->r, 6)) < 0 && errno != EINTR)
			anomaly("poll on the proxy: %s", errname(errno));
		atomic_store(&sh->worker[w.index].busy_since[t->n], 0);
	} else {
		/* Let the proxy go: its remote endpoints, and every call waiting on them, end. */
		pthread_mutex_lock(&w.mu);
		if (w.px == px) {
			w.px = -1;
			w.nremotes = 0;
			w.nkept = 0;
			w.npending = 0;
			w.nsent_ids = 0;
			w.nreq_ids = 0;
		} else {
			px = -1;
		}
		pthread_mutex_unlock(&w.mu);
		if (px >= 0)
			close(px);
	}
}

/* ---- raw ioctls: any command, any argument ---- */


/* A known command changed in one part: direction, size, number or magic. */
static unsigned long near_miss(struct rng *r)
{
	unsigned long c = known_cmds[rnd(r, N_KNOWN)];
	unsigned dir = _IOC_DIR(c), type = _IOC_TYPE(c), nr = _IOC_NR(c), size = _IOC_SIZE(c);
	static const int dsize[] = { -8, -4, 4, 8, 16 };

	switch (rnd(r, 4)) {
	case 0: dir = (dir + 1 + rnd(r, 3)) & 3; break;
	case 1: size = (size + dsize[rnd(r, 5)]) & _IOC_SIZEMASK; break;
	case 2: nr = chance(r, 50) ? 0x04 + rnd(r, 12) : 0x16 + rnd(r, 0xe9); break;
	default: type = chance(r, 50) ? DVK_IOC_MAGIC + 1 : DVK_IOC_MAGIC - 1; break;
	}
	return _IOC(dir, type, nr, size);
}

/*
 * Fills the argument of a known command with random bytes, then makes it safe for this
 * process: a deadline the call cannot wait past, and out-going payload pointers that are
 * either ours or certainly invalid (the kernel writes there).
 */
static void randomize(struct rng *r, unsigned long cmd, unsigned char *arg, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd64(r);

		memcpy(arg + i, &v, len - i < 8 ? len - i : 8);
	}
	if (chance(r, 50)) /* often zero the reserved-looking tail, to get past the checks */
		memset(arg + len / 2, 0, len - len / 2);
	switch (cmd) {
	case DVK_IOC_DC_CREATE:
		((struct dvk_dc_config *)arg)->id = DC_FIRST + rnd(r, N_DCS);
		break;
	case DVK_IOC_DC_DESTROY:
		*(uint32_t *)arg = DC_FIRST + rnd(r, N_DCS + 2);
		break;
	case DVK_IOC_RECEIVE: {
		struct dvk_receive *x = (void *)arg;

		some_wait(r, &x->flags, &x->deadline_ns);
		some_buffer(r, &x->msg);
		break;
	}
	case DVK_IOC_SENDREC: {
		struct dvk_sendrec *x = (void *)arg;
		uint32_t ignored;

		some_wait(r, &ignored, &x->deadline_ns);
		if (x->deadline_ns == 0)
			x->deadline_ns = in_ms(5);
		some_buffer(r, &x->reply);
		break;
	}
	case DVK_IOC_REPLY_RECEIVE: {
		struct dvk_reply_receive *x = (void *)arg;

		some_wait(r, &x->receive.flags, &x->receive.deadline_ns);
		some_buffer(r, &x->receive.msg);
		break;
	}
	case DVK_IOC_SEND: {
		struct dvk_send *x = (void *)arg;
		uint32_t flags;

		some_wait(r, &flags, &x->deadline_ns);
		x->flags = (x->flags & ~DVK_CALL_NONBLOCK) | flags;
		break;
	}
	case DVK_IOC_PROXY_DRAIN: {
		/* The kernel writes there: our receive buffer or nothing, and never a long wait. */
		struct dvk_proxy_batch *x = (void *)arg;
		uint32_t flags;

		x->buffer = chance(r, 80) ? (uintptr_t)w.in : 0;
		x->size %= max_payload + 1;
		some_wait(r, &flags, &x->deadline_ns);
		x->flags = (x->flags & ~DVK_CALL_NONBLOCK) | flags;
		break;
	}
	case DVK_IOC_REAP: {
		/* The kernel writes there: our receive buffer, within it, or nothing. */
		struct dvk_reap *x = (void *)arg;

		x->buffer = chance(r, 80) ? (uintptr_t)w.in : 0;
		x->size %= max_payload + 1;
		break;
	}
	case DVK_IOC_SUBMIT: {
		/* The kernel only reads the payload; mostly ours, so that some get through. */
		struct dvk_submit *x = (void *)arg;

		if (chance(r, 50))
			x->msg.payload = (uintptr_t)w.out;
		x->msg.size %= max_payload + 64;
		break;
	}
	case DVK_IOC_PROXY_INJECT: {
		struct dvk_proxy_batch *x = (void *)arg;

		x->buffer = chance(r, 80) ? (uintptr_t)w.out : (uintptr_t)w.none;
		x->size %= max_payload + 64;
		break;
	}
	}
}

static void op_raw(struct thread *t)
{
	struct slot s = pick(&t->r);
	static __thread unsigned char buf[4096] __attribute__((aligned(8)));
	unsigned long cmd;
	bool known;
	void *arg;
	int rc;

	if (s.fd < 0)
		return;
	/*
	 * Known commands, near misses, and anything with our magic. Other magics are left out:
	 * the VFS acts on some of them (FIOCLEX, FIONBIO...) whatever the device.
	 */
	switch (rnd(&t->r, 10)) {
	case 0 ... 4:
		cmd = known_cmds[rnd(&t->r, N_KNOWN)];
		break;
	case 5 ... 8:
		cmd = near_miss(&t->r);
		break;
	default:
		cmd = _IOC(rnd(&t->r, 4), DVK_IOC_MAGIC, rnd(&t->r, 256), rnd(&t->r, 512));
		break;
	}
	known = is_known(cmd);

	switch (rnd(&t->r, 8)) {
	case 0: arg = NULL; break;
	case 1: arg = w.none; break;
	case 2: arg = (void *)0xffff888000000000ull; break;
	case 3: arg = w.in + max_payload - rnd(&t->r, 16); break; /* runs into the hole */
	default:
		arg = buf;
		if (known)
			randomize(&t->r, cmd, buf, _IOC_SIZE(cmd));
		else
			memset(buf, 0, sizeof(buf));
		break;
	}
	rc = call(t, s.fd, cmd, arg);
	if (!known && rc != -ENOTTY && rc != -EBADF)
		anomaly("unknown cmd 0x%lx gave %s, not ENOTTY", cmd, rcname(rc));
	if (known && rc == 0 && arg != buf)
		anomaly("cmd 0x%lx with argument %p succeeded", cmd, arg);
}

static void op_version(struct thread *t)
{
	struct slot s = pick(&t->r);
	struct dvk_version v;

	if (s.fd >= 0 && call(t, s.fd, DVK_IOC_VERSION, &v) == 0 &&
	    (v.abi != DVK_ABI_VERSION || v.max_payload != max_payload))
		anomaly("version: abi %u, max_payload %u", v.abi, v.max_payload);
}

/* One random operation, by weight. */
static void one_op(struct thread *t)
{
	uint32_t p = rnd(&t->r, 1000);

	/* The proxy's holder spends a good part of its calls on the proxy's work. */
	if (chance(&t->r, 30) && proxy_file() >= 0) {
		op_proxy(t);
		return;
	}
	if (p < 30)
		op_open(t);
	else if (p < 50)
		op_close(t);
	else if (p < 110)
		op_bind(t);
	else if (p < 260)
		op_send(t);
	else if (p < 460)
		op_receive(t);
	else if (p < 560)
		op_sendrec(t);
	else if (p < 590)
		op_reply(t);
	else if (p < 640)
		op_reply_receive(t);
	else if (p < 690)
		op_notify(t);
	else if (p < 720)
		op_poll(t);
	else if (p < 725)
		op_dc(t);
	else if (p < 735)
		op_version(t);
	else if (p < 795)
		op_proxy(t);
	else if (p < 855)
		op_submit(t);
	else if (p < 895)
		op_reap(t);
	else if (p < 910)
		op_cancel(t);
	else
		op_raw(t);
}

static void *worker_thread(void *p)
{
	struct thread *t = p;

	while (!atomic_load(&sh->stop) && atomic_fetch_add(&sh->calls, 1) < total_calls)
		one_op(t);
	return NULL;
}

static void on_interrupt(int sig)
{
	(void)sig;
}

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	REQUIRE(p != MAP_FAILED);
	return p;
}

/* A worker process: runs until the calls are used up or the parent says stop. */
static void worker_main(int index, uint64_t seed)
{
	struct rng r = { seed };
	struct thread t[MAX_THREADS];
	struct sigaction sa;
	size_t in_len = ((size_t)max_payload + 4095) / 4096 * 4096;

	setpgid(0, 0);
	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.mu, NULL);
	w.index = index;
	w.nthreads = chance(&r, 40) ? 2 : 1;
	for (int i = 0; i < SLOTS; i++)
		w.slot[i].fd = -1;
	w.px = -1;
	w.out = map(max_payload + 64, PROT_READ | PROT_WRITE);
	for (size_t i = 0; i < max_payload + 64; i++)
		w.out[i] = (unsigned char)i;
	/* `in` ends where an inaccessible page begins. */
	w.in = map(in_len + 4096, PROT_READ | PROT_WRITE);
	REQUIRE(mprotect(w.in + in_len, 4096, PROT_NONE) == 0);
	w.in += in_len - max_payload;
	w.none = map(4096, PROT_NONE);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sa.sa_flags = chance(&r, 50) ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(INTR_SIG, &sa, NULL);
	atomic_store(&sh->worker[index].ready, 1);

	for (int i = 0; i < 2; i++)
		op_open(&(struct thread){ .r = r });
	for (int i = 0; i < w.nthreads; i++) {
		t[i] = (struct thread){ .n = i, .r = { rnd64(&r) } };
		/* A drain buffer for one largest record, and an inaccessible page after it. */
		t[i].dlen = (uint32_t)((px_record_size(max_payload) + 4095) / 4096 * 4096);
		t[i].dbuf = map(t[i].dlen + 4096, PROT_READ | PROT_WRITE);
		REQUIRE(mprotect(t[i].dbuf + t[i].dlen, 4096, PROT_NONE) == 0);
		/* A reap buffer for a few records, the largest among them, and a hole after it. */
		t[i].rlen = (uint32_t)((cq_record_size(max_payload) + 4096 + 4095) / 4096 * 4096);
		t[i].rbuf = map(t[i].rlen + 4096, PROT_READ | PROT_WRITE);
		REQUIRE(mprotect(t[i].rbuf + t[i].rlen, 4096, PROT_NONE) == 0);
		if (i > 0)
			REQUIRE(pthread_create(&t[i].tid, NULL, worker_thread, &t[i]) == 0);
	}
	worker_thread(&t[0]);
	for (int i = 1; i < w.nthreads; i++)
		pthread_join(t[i].tid, NULL);
	_exit(0);
}

/* ---- the parent ---- */

struct proc {
	pid_t pid;
	bool killed;	/* by us, with SIGKILL */
	int restarts;
};

static uint64_t seed;
static int nprocs;
static struct proc procs[MAX_PROCS];

static void start_worker(int i)
{
	uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (i + 1)) ^ ((uint64_t)procs[i].restarts << 40);
	pid_t pid;

	atomic_store(&sh->worker[i].ready, 0);
	for (int k = 0; k < MAX_THREADS; k++)
		atomic_store(&sh->worker[i].busy_since[k], 0);
	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		worker_main(i, s);
	setpgid(pid, pid);
	procs[i].pid = pid;
	procs[i].killed = false;
}

/* Reaps ended workers; unexpected deaths are failures. Returns how many are still running. */
static int reap_workers(bool restart, bool *failed)
{
	int running = 0;

	for (int i = 0; i < nprocs; i++) {
		int st;

		if (procs[i].pid == 0)
			continue;
		if (waitpid(procs[i].pid, &st, WNOHANG) != procs[i].pid) {
			running++;
			continue;
		}
		kill(-procs[i].pid, SIGKILL); /* anything it left in its group */
		if (WIFSIGNALED(st) && !(procs[i].killed && WTERMSIG(st) == SIGKILL)) {
			tap_diag("worker %d (pid %d) died of signal %d (%s)", i, (int)procs[i].pid,
				 WTERMSIG(st), strsignal(WTERMSIG(st)));
			*failed = true;
		} else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
			tap_diag("worker %d (pid %d) exited with %d", i, (int)procs[i].pid,
				 WEXITSTATUS(st));
			*failed = true;
		}
		procs[i].pid = 0;
		if (restart && atomic_load(&sh->calls) < total_calls) {
			procs[i].restarts++;
			sh->restarts++;
			start_worker(i);
			running++;
		}
	}
	return running;
}

/* True if a worker thread has been inside one call for more than HANG_MS. */
static bool hung(void)
{
	uint64_t now = now_ns();

	for (int i = 0; i < nprocs; i++) {
		for (int k = 0; k < MAX_THREADS; k++) {
			uint64_t since = atomic_load(&sh->worker[i].busy_since[k]);

			if (procs[i].pid && since && now > since + HANG_MS * 1000000ull) {
				tap_diag("worker %d thread %d has been in one call for %" PRIu64
					 " ms", i, k, (now - since) / 1000000);
				return true;
			}
		}
	}
	return false;
}

static int admin_ioctl(unsigned long cmd, void *arg)
{
	int fd = open(DVK_DEV, O_RDWR | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = dvk_ioctl(fd, cmd, arg);
	close(fd);
	return rc;
}

static void create_dcs(void)
{
	static const uint32_t slots[N_START_DCS] = { 4, 8, 2 };

	for (uint32_t i = 0; i < N_START_DCS; i++) {
		struct dvk_dc_config c = { .id = DC_FIRST + i, .slots = slots[i] };
		int rc;

		snprintf(c.name, sizeof(c.name), "stress-%u", c.id);
		rc = admin_ioctl(DVK_IOC_DC_CREATE, &c);
		if (rc)
			tap_diag("creating DC %u: %s", c.id, errname(-rc));
	}
}

/* Destroys every DC of the run, waiting while endpoints still unbind; false on failure. */
static bool destroy_dcs(void)
{
	bool ok = true;

	for (uint32_t id = DC_FIRST; id < DC_FIRST + N_DCS; id++) {
		uint64_t end = in_ms(5000);
		int rc;

		while ((rc = admin_ioctl(DVK_IOC_DC_DESTROY, &id)) == -EBUSY && now_ns() < end)
			sleep_ms(10);
		if (rc && rc != -ENOENT) {
			tap_diag("destroying DC %u: %s", id, errname(-rc));
			ok = false;
		}
	}
	return ok;
}

/* Runs the workers, interrupting and killing some, until the calls are used up. */
static bool run(void)
{
	struct rng r = { seed ^ 0x5eed };
	uint64_t limit = in_ms(300000 + total_calls / 1000 * 1000);
	bool failed = false;

	for (int i = 0; i < nprocs; i++)
		start_worker(i);
	while (atomic_load(&sh->calls) < total_calls) {
		int i = rnd(&r, nprocs);

		sleep_ms(2);
		if (procs[i].pid && atomic_load(&sh->worker[i].ready) && chance(&r, 60)) {
			kill(procs[i].pid, INTR_SIG);
			sh->interrupts++;
		}
		if (procs[i].pid && !procs[i].killed && chance(&r, 1)) {
			procs[i].killed = true;
			kill(procs[i].pid, SIGKILL);
			sh->kills++;
		}
		reap_workers(true, &failed);
		if (hung() || now_ns() > limit) {
			if (now_ns() > limit)
				tap_diag("the run took too long");
			failed = true;
			break;
		}
	}
	/* Let the workers finish their last calls, then end them all. */
	atomic_store(&sh->stop, 1);
	for (uint64_t end = in_ms(HANG_MS); reap_workers(false, &failed) > 0;) {
		if (hung() || now_ns() > end) {
			failed = true;
			break;
		}
		sleep_ms(5);
	}
	for (int i = 0; i < nprocs; i++) {
		if (procs[i].pid) {
			procs[i].killed = true;
			kill(-procs[i].pid, SIGKILL);
		}
	}
	while (reap_workers(false, &failed) > 0)
		sleep_ms(5);
	return !failed;
}

/* What the run did: successes per command, failures per errno, kills and signals. */
static void report(void)
{
	char line[1024];
	size_t off = 0;

	for (size_t i = 0; i < N_KNOWN; i++)
		off += snprintf(line + off, sizeof(line) - off, "%s %" PRIu64 " ", known_names[i],
				(uint64_t)atomic_load(&sh->ok[i]));
	tap_diag("succeeded: %s", line);
	off = 0;
	for (int e = 1; e < 160; e++)
		if (atomic_load(&sh->err[e]) && off < sizeof(line))
			off += snprintf(line + off, sizeof(line) - off, "%s %" PRIu64 " ",
					errname(e), (uint64_t)atomic_load(&sh->err[e]));
	tap_diag("failed: %s", line);
	tap_diag("completions reaped %" PRIu64 " (%" PRIu64 " with result 0), calls undone by "
		 "CANCEL %" PRIu64, (uint64_t)atomic_load(&sh->reaped),
		 (uint64_t)atomic_load(&sh->reaped_ok), (uint64_t)atomic_load(&sh->undone));
	tap_diag("completions by op: SEND %" PRIu64 ", RECEIVE %" PRIu64 ", SENDREC %" PRIu64
		 ", NOTIFY %" PRIu64, (uint64_t)atomic_load(&sh->reaped_op[DVK_OP_SEND]),
		 (uint64_t)atomic_load(&sh->reaped_op[DVK_OP_RECEIVE]),
		 (uint64_t)atomic_load(&sh->reaped_op[DVK_OP_SENDREC]),
		 (uint64_t)atomic_load(&sh->reaped_op[DVK_OP_NOTIFY]));
	tap_diag("proxy records drained %" PRIu64 ", injected %" PRIu64,
		 (uint64_t)atomic_load(&sh->drained), (uint64_t)atomic_load(&sh->injected));
	off = 0;
	for (int k = 0; k < 16; k++)
		if (atomic_load(&sh->drained_kind[k]) && off < sizeof(line))
			off += snprintf(line + off, sizeof(line) - off, "%d: %" PRIu64 " ", k,
					(uint64_t)atomic_load(&sh->drained_kind[k]));
	tap_diag("drained by kind: %s; verdicts given on drained sends and notes %" PRIu64
		 "; MESSAGEs drained with DVK_PROXY_NONBLOCK %" PRIu64, line,
		 (uint64_t)atomic_load(&sh->verdicts),
		 (uint64_t)atomic_load(&sh->drained_nonblock));
	tap_diag("CANCELs drained for requests drained %" PRIu64 ", injected for requests "
		 "injected %" PRIu64, (uint64_t)atomic_load(&sh->withdrawn_out),
		 (uint64_t)atomic_load(&sh->withdrawals_in));
	off = 0;
	for (int e = 0; e < 160; e++)
		if (atomic_load(&sh->inject_stop[e]) && off < sizeof(line))
			off += snprintf(line + off, sizeof(line) - off, "%s %" PRIu64 " ",
					e ? errname(e) : "none", (uint64_t)atomic_load(&sh->inject_stop[e]));
	tap_diag("injects stopped by: %s", line);
	tap_diag("workers killed %" PRIu64 ", restarted %" PRIu64 ", signals sent %" PRIu64,
		 (uint64_t)sh->kills, (uint64_t)sh->restarts, (uint64_t)sh->interrupts);
}

int main(int argc, char **argv)
{
	struct dvk_stats before, after;
	struct dvk_version v;
	char why[512];
	bool ok, clean, zero_before = true;
	uint64_t calls;

	setvbuf(stdout, NULL, _IOLBF, 0);
	total_calls = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000;
	nprocs = argc > 2 ? atoi(argv[2]) : 4;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if (nprocs < 1 || nprocs > MAX_PROCS) {
		fprintf(stderr, "usage: stress [CALLS [PROCS (1..%d) [SEED]]]\n", MAX_PROCS);
		return 2;
	}
	printf("1..2\n# seed %" PRIu64 "\n", seed);
	if (admin_ioctl(DVK_IOC_VERSION, &v) != 0 || stats_read(&before) != 0) {
		printf("Bail out! %s or %s not usable\n", DVK_DEV, DVK_STATS);
		return 1;
	}
	max_payload = v.max_payload;
	for (int i = 0; i < before.n; i++)
		zero_before &= before.value[i] == 0;
	if (!zero_before)
		tap_diag("the counters were not zero before the run; checking against their values");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));

	/* The last resort if the parent itself gets stuck in the kernel. */
	alarm(360 + total_calls / 1000 + 60);
	create_dcs();
	ok = run();
	calls = atomic_load(&sh->calls);
	if (calls > total_calls)
		calls = total_calls;
	if (atomic_load(&sh->anomalies)) {
		tap_diag("%" PRIu64 " anomalies", (uint64_t)atomic_load(&sh->anomalies));
		ok = false;
	}
	report();
	printf("%s 1 - stress: %" PRIu64 " calls in %d processes, seed %" PRIu64 "\n",
	       ok ? "ok" : "not ok", calls, nprocs, seed);

	clean = destroy_dcs();
	{
		uint64_t end = in_ms(5000);
		bool same;

		do {
			REQUIRE(stats_read(&after) == 0);
			same = stats_same(&before, &after, why, sizeof(why));
			if (!same)
				sleep_ms(10);
		} while (!same && now_ns() < end);
		if (!same) {
			tap_diag("counters not back: %s", why);
			clean = false;
		}
	}
	printf("%s 2 - counters back to zero\n", clean ? "ok" : "not ok");
	return ok && clean ? 0 : 1;
}
