// SPDX-License-Identifier: GPL-2.0
/*
 * async: TAP tests of the asynchronous calls of /dev/dvk (DVK_IOC_SUBMIT, DVK_IOC_REAP,
 * DVK_IOC_CANCEL) against "Asynchronous calls" in include/uapi/linux/dvk.h and
 * docs/semantics.md.
 *
 *   async [SUBSTRING...]    run every case, or those whose name contains one of the arguments
 *
 * Like uapi.c and proxy.c, each case runs in a forked process of its own (its own process
 * group, with a watchdog), so a crash or hang fails that case only. Cases play the event loop
 * by hand: they submit calls, reap completions into a buffer pre-filled with 0xa5 (so that
 * padding the kernel left unwritten shows) and check every record's layout, and they drive
 * peers (servers, callers, senders) with blocking calls, in forked processes or threads where
 * a peer must wait. They synchronise through pipes, by polling /proc/dvk/endpoints and by
 * waiting until a process or thread sleeps in the kernel, never by sleeping alone; where
 * something must NOT happen (a completion after a cancel), they watch for QUIET_MS after the
 * event that would have caused it. After every case the runner kills what is left of it,
 * destroys the DCs it used and checks that every counter in /proc/dvk/stats (calls counts
 * submitted calls until they are reaped or cancelled) is back to its value before the case.
 *
 * Most DCs are created with a queue of QLEN messages, so that a full queue takes few sends.
 */

#include "harness.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* How long to watch for something that must not happen. */
#define QUIET_MS 100

/* The loaded module's limit, read by the runner before it forks the cases. */
static uint32_t max_payload;

/* The DC ids a case may use: dc_base .. dc_base + DCS_PER_CASE - 1; the runner destroys them. */
#define DCS_PER_CASE 8
#define DC_FIRST 50000

/* The queue length of the DCs the cases create (dvk_dc_config.queue_length). */
#define QLEN 4

const struct harness_config harness_config = {
	.dc_prefix = "async",
	.dc_first = DC_FIRST,
	.dcs_per_case = DCS_PER_CASE,
	.dc_queue_length = QLEN,
};

#define HDR ((uint32_t)sizeof(struct dvk_completion))
#define REC(len) ((uint32_t)cq_record_size(len))

/* The reap buffer: room for DVK_ASYNC_MAX small records and a largest one; a hole after it. */
static unsigned char *rbuf;
static uint32_t rbuf_len;

/* ====================================================================================== */
/* Endpoints and blocking calls; each returns 0 or -errno.                                 */
/* ====================================================================================== */

static int msendrec(int fd, uint32_t dst, int32_t type, const void *p, uint32_t len, void *rbuf_,
		    uint32_t rcap, uint64_t deadline, struct dvk_msg *reply)
{
	struct dvk_sendrec s;
	int rc;

	memset(&s, 0, sizeof(s));
	s.request = (struct dvk_msg){ .peer = dst, .type = type, .payload = (uintptr_t)p,
				      .size = len };
	s.reply = (struct dvk_msg){ .payload = (uintptr_t)rbuf_, .size = rcap };
	s.deadline_ns = deadline;
	rc = dvk_ioctl(fd, DVK_IOC_SENDREC, &s);
	if (reply)
		*reply = s.reply;
	return rc;
}

/* Replies to a request (as received: peer, peer_gen and request_id name it). */
static int mreply(int fd, uint32_t peer, uint32_t peer_gen, uint64_t id, int32_t type,
		  const void *p, uint32_t len)
{
	struct dvk_reply r = {
		.msg = { .peer = peer, .peer_gen = peer_gen, .type = type, .request_id = id,
			 .payload = (uintptr_t)p, .size = len },
	};

	return dvk_ioctl(fd, DVK_IOC_REPLY, &r);
}

/*
 * Numbered messages: the number is both the type and an 8-byte payload, so a receiver can
 * check order and integrity at once.
 */
static int send_num(int fd, uint32_t dst, uint64_t n, uint32_t flags, uint64_t deadline)
{
	return msend(fd, dst, 0, (int32_t)n, &n, sizeof(n), flags, deadline);
}

static int recv_num(int fd, uint32_t from, uint32_t flags, uint64_t deadline, uint64_t *n,
		    struct dvk_msg *m)
{
	uint64_t v = ~0ull;
	struct dvk_msg msg = { 0 };
	int rc = mrecv(fd, from, 0, &v, sizeof(v), flags, deadline, &msg);

	if (rc == 0 && (msg.size != sizeof(v) || msg.type != (int32_t)v))
		v = ~0ull;
	if (n)
		*n = v;
	if (m)
		*m = msg;
	return rc;
}

/* Sends number n without waiting; it must go (the queue has room). */
#define SEND_NUM(fd, dst, n) CHECK_RC(send_num(fd, dst, n, DVK_CALL_NONBLOCK, 0), 0)

/* Expects the next message (from `from`) to be number `want`; evaluates to its source. */
#define EXPECT_NUM(fd, from, want)                                                        \
	({                                                                                \
		uint64_t got_n_ = ~0ull;                                                  \
		struct dvk_msg got_m_ = { 0 };                                            \
		CHECK_RC(recv_num(fd, from, 0, SOON, &got_n_, &got_m_), 0);               \
		CHECK_EQ(got_n_, want);                                                   \
		got_m_.peer;                                                              \
	})

/* Expects nothing receivable right now. */
#define EXPECT_EMPTY(fd) CHECK_RC(mrecv(fd, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), \
				  -EAGAIN)

/* Fills endpoint dst's queue (QLEN messages) from fd with numbers first.. */
static void fill_queue(int fd, uint32_t dst, uint64_t first)
{
	for (uint64_t i = 0; i < QLEN; i++)
		SEND_NUM(fd, dst, first + i);
	CHECK_RC(send_num(fd, dst, 999999, DVK_CALL_NONBLOCK, 0), -EAGAIN);
}

/* ====================================================================================== */
/* Submitted calls                                                                         */
/* ====================================================================================== */

/* The arguments of a SEND or SENDREC. */
static struct dvk_submit sub_msg(uint32_t op, uint32_t dst, uint32_t gen, int32_t type,
				 const void *p, uint32_t len)
{
	struct dvk_submit s = {
		.op = op,
		.msg = { .peer = dst, .peer_gen = gen, .type = type, .payload = (uintptr_t)p,
			 .size = len },
	};

	return s;
}

/* The arguments of a RECEIVE. */
static struct dvk_submit sub_recv(uint32_t from, uint32_t from_gen)
{
	struct dvk_submit s = { .op = DVK_OP_RECEIVE, .from = from, .from_gen = from_gen };

	return s;
}

static int submit_rc(int fd, struct dvk_submit *s)
{
	return dvk_ioctl(fd, DVK_IOC_SUBMIT, s);
}

/* Submits a call that must be accepted; returns its token (0 after a failure). */
static uint64_t submit_ok_at(const char *file, int line, int fd, struct dvk_submit s)
{
	int rc = submit_rc(fd, &s);

	if (rc) {
		tap_failed = 1;
		tap_diag_at(file, line, "SUBMIT of op %u: %s", s.op, errname(-rc));
		return 0;
	}
	if (!s.token) {
		tap_failed = 1;
		tap_diag_at(file, line, "SUBMIT of op %u returned token 0", s.op);
	}
	return s.token;
}

#define SUBMIT_OK(fd, s) submit_ok_at(__FILE__, __LINE__, fd, s)
#define A_SEND(fd, dst, gen, type, p, len)                                                 \
	SUBMIT_OK(fd, sub_msg(DVK_OP_SEND, dst, gen, type, p, len))
#define A_SENDREC(fd, dst, gen, type, p, len)                                              \
	SUBMIT_OK(fd, sub_msg(DVK_OP_SENDREC, dst, gen, type, p, len))
#define A_RECV(fd, from, from_gen) SUBMIT_OK(fd, sub_recv(from, from_gen))
/* A numbered SEND or SENDREC (see send_num). */
#define A_SEND_NUM(fd, dst, n)                                                             \
	SUBMIT_OK(fd, sub_msg(DVK_OP_SEND, dst, 0, (int32_t)(n), &(uint64_t){ n }, 8))
#define A_SENDREC_NUM(fd, dst, n)                                                          \
	SUBMIT_OK(fd, sub_msg(DVK_OP_SENDREC, dst, 0, (int32_t)(n), &(uint64_t){ n }, 8))

/* The arguments of a NOTIFY: only peer, peer_gen and bits. */
static struct dvk_submit sub_notify(uint32_t dst, uint32_t gen, uint32_t bits)
{
	struct dvk_submit s = {
		.op = DVK_OP_NOTIFY,
		.msg = { .peer = dst, .peer_gen = gen, .bits = bits },
	};

	return s;
}

/* The same arguments with dvk_submit.flags set. */
static struct dvk_submit sub_flags(struct dvk_submit s, uint32_t flags)
{
	s.flags = flags;
	return s;
}

#define A_NOTIFY(fd, dst, gen, bits) SUBMIT_OK(fd, sub_notify(dst, gen, bits))
/* A numbered SEND with DVK_CALL_NONBLOCK: EAGAIN at once where it would wait for room. */
#define A_SEND_NUM_NB(fd, dst, n)                                                          \
	SUBMIT_OK(fd, sub_flags(sub_msg(DVK_OP_SEND, dst, 0, (int32_t)(n), &(uint64_t){ n }, 8), \
				DVK_CALL_NONBLOCK))

static int cancel_rc(int fd, uint64_t token)
{
	struct dvk_cancel c = { .token = token };

	return dvk_ioctl(fd, DVK_IOC_CANCEL, &c);
}

static int reap_rc(int fd, void *buf, uint32_t len, struct dvk_reap *out)
{
	struct dvk_reap r = { .buffer = (uintptr_t)buf, .size = len };
	int rc = dvk_ioctl(fd, DVK_IOC_REAP, &r);

	if (out)
		*out = r;
	return rc;
}

/* A reaped completion: its header, and a copy of its payload. */
struct comp {
	struct dvk_completion c;
	unsigned char *data;
};

static void comps_free(struct comp *c, int n)
{
	for (int i = 0; i < n; i++) {
		free(c[i].data);
		c[i].data = NULL;
	}
}

/*
 * One DVK_IOC_REAP into rbuf with room `len` (pre-filled with 0xa5). A success must report a
 * count and size that fit, and records the header describes, back to back; they are appended
 * to out[*n..max), and more than fit there is a failure. Returns the ioctl's 0 or -errno; the
 * kernel's answer in *res if given.
 */
static int reap_once_at(const char *file, int line, int fd, uint32_t len, struct comp *out,
			int *n, int max, struct dvk_reap *res)
{
	struct dvk_reap r;
	uint32_t count = 0;
	size_t off = 0;
	char why[256];
	int rc;

	REQUIRE(len <= rbuf_len);
	memset(rbuf, 0xa5, len);
	rc = reap_rc(fd, rbuf, len, &r);
	if (res)
		*res = r;
	if (rc)
		return rc;
	if (r.size > len || r.count == 0 || r.size < r.count * HDR) {
		tap_failed = 1;
		tap_diag_at(file, line, "REAP into %u bytes: count %u, size %u", len, r.count,
			    r.size);
		return rc;
	}
	while (off < r.size) {
		size_t rec = cq_record_check(rbuf, r.size, off, max_payload, why, sizeof(why));
		struct comp *c;

		if (!rec) {
			tap_failed = 1;
			tap_diag_at(file, line, "REAP of %u records, %u bytes: %s", r.count, r.size,
				    why);
			return rc;
		}
		count++;
		if (*n >= max) {
			struct dvk_completion h;

			memcpy(&h, rbuf + off, sizeof(h));
			tap_failed = 1;
			tap_diag_at(file, line, "an unexpected completion: token %llu op %u result %s",
				    (unsigned long long)h.token, h.op, rcname(h.result));
			off += rec;
			continue;
		}
		c = &out[(*n)++];
		memcpy(&c->c, rbuf + off, sizeof(c->c));
		c->data = malloc(c->c.msg.size ? c->c.msg.size : 1);
		REQUIRE(c->data);
		memcpy(c->data, rbuf + off + HDR, c->c.msg.size);
		off += rec;
	}
	if (count != r.count) {
		tap_failed = 1;
		tap_diag_at(file, line, "REAP reported %u records, %u bytes hold %u", r.count,
			    r.size, count);
	}
	return rc;
}

/* Waits for a completion (up to ms); whether poll said so. A broken poll() only slows it. */
static bool wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Reaps until `want` completions are in out[] (failing if they do not all come in LONG_MS). */
#define REAP_N(fd, out, want) reap_n_at(__FILE__, __LINE__, fd, out, want)
static int reap_n_at(const char *file, int line, int fd, struct comp *out, int want)
{
	uint64_t end = in_ms(LONG_MS);
	int n = 0;

	while (n < want) {
		int rc = reap_once_at(file, line, fd, rbuf_len, out, &n, want, NULL);

		if (rc == 0)
			continue;
		if (rc != -EAGAIN) {
			tap_failed = 1;
			tap_diag_at(file, line, "REAP: %s", errname(-rc));
			break;
		}
		if (now_ns() > end) {
			tap_failed = 1;
			tap_diag_at(file, line, "%d of %d completions came in %d ms", n, want,
				    LONG_MS);
			break;
		}
		wait_readable(fd, 5);
	}
	for (int i = n; i < want; i++)
		memset(&out[i], 0, sizeof(out[i]));
	return n;
}

/* No completion waits right now. */
#define EXPECT_NONE(fd) expect_none_at(__FILE__, __LINE__, fd)
static void expect_none_at(const char *file, int line, int fd)
{
	struct comp c[8];
	int n = 0, rc = reap_once_at(file, line, fd, rbuf_len, c, &n, 8, NULL);

	if (rc == -EAGAIN)
		return;
	tap_failed = 1;
	if (rc)
		tap_diag_at(file, line, "REAP with nothing to reap: %s, want EAGAIN", errname(-rc));
	for (int i = 0; i < n; i++)
		tap_diag_at(file, line, "an unexpected completion: token %llu op %u result %s",
			    (unsigned long long)c[i].c.token, c[i].c.op, rcname(c[i].c.result));
	comps_free(c, n);
}

/* No completion comes within QUIET_MS. */
#define EXPECT_QUIET(fd)                                                                  \
	do {                                                                              \
		wait_readable(fd, QUIET_MS);                                              \
		EXPECT_NONE(fd);                                                          \
	} while (0)

/* Checks a completion's token, op and result. */
#define CHECK_COMP(cp, tok, op_, res) check_comp_at(__FILE__, __LINE__, cp, tok, op_, res)
static bool check_comp_at(const char *file, int line, const struct comp *c, uint64_t token,
			  uint32_t op, int result)
{
	if (c->c.token == token && c->c.op == op && c->c.result == result)
		return true;
	tap_failed = 1;
	tap_diag_at(file, line, "completion: token %llu op %u result %s; want token %llu op %u "
		    "result %s", (unsigned long long)c->c.token, c->c.op, rcname(c->c.result),
		    (unsigned long long)token, op, rcname(result));
	return false;
}

/*
 * Reaps exactly one completion, waiting for it: a buffer of one header takes a record
 * without payload; for any other, EMSGSIZE tells the size of the next record, and a buffer
 * of that size takes it alone.
 */
static int reap_one_at(const char *file, int line, int fd, struct comp *out)
{
	uint64_t end = in_ms(LONG_MS);

	for (;;) {
		struct dvk_reap r;
		int n = 0, rc = reap_once_at(file, line, fd, HDR, out, &n, 1, &r);

		if (rc == -EMSGSIZE) {
			if (r.size <= HDR || r.size > REC(max_payload)) {
				tap_failed = 1;
				tap_diag_at(file, line, "REAP into %u bytes: EMSGSIZE, needs %u", HDR,
					    r.size);
				break;
			}
			rc = reap_once_at(file, line, fd, r.size, out, &n, 1, NULL);
		}
		if (rc == 0 && n == 1)
			return 1;
		if (rc != -EAGAIN) {
			tap_failed = 1;
			tap_diag_at(file, line, "REAP: %s", rc ? errname(-rc) : "no record");
			break;
		}
		if (now_ns() > end) {
			tap_failed = 1;
			tap_diag_at(file, line, "no completion came in %d ms", LONG_MS);
			break;
		}
		wait_readable(fd, 5);
	}
	memset(out, 0, sizeof(*out));
	return 0;
}

/* Reaps exactly one completion (waiting for it) and checks it; returns it (free its data). */
#define EXPECT_ONE(fd, tok, op_, res) expect_one_at(__FILE__, __LINE__, fd, tok, op_, res)
static struct comp expect_one_at(const char *file, int line, int fd, uint64_t token, uint32_t op,
				 int result)
{
	struct comp c;

	if (reap_one_at(file, line, fd, &c) == 1)
		check_comp_at(file, line, &c, token, op, result);
	return c;
}

/* The same, when only the outcome matters. */
#define EXPECT_DONE(fd, tok, op_, res)                                                    \
	do {                                                                              \
		struct comp done_ = EXPECT_ONE(fd, tok, op_, res);                        \
		comps_free(&done_, 1);                                                    \
	} while (0)

/*
 * Expects call `tok` to have completed within its SUBMIT: one REAP, without waiting, gives
 * exactly its completion (and no other). Returns it (free its data).
 */
#define EXPECT_NOW(fd, tok, op_, res) expect_now_at(__FILE__, __LINE__, fd, tok, op_, res)
static struct comp expect_now_at(const char *file, int line, int fd, uint64_t token,
				 uint32_t op, int result)
{
	struct comp c;
	int n = 0, rc = reap_once_at(file, line, fd, rbuf_len, &c, &n, 1, NULL);

	if (rc || n != 1) {
		tap_failed = 1;
		tap_diag_at(file, line, "token %llu not complete at once: REAP %s, %d records",
			    (unsigned long long)token, rcname(rc), n);
		if (n)
			comps_free(&c, 1);
		memset(&c, 0, sizeof(c));
		return c;
	}
	check_comp_at(file, line, &c, token, op, result);
	return c;
}

#define EXPECT_DONE_NOW(fd, tok, op_, res)                                                \
	do {                                                                              \
		struct comp now_ = EXPECT_NOW(fd, tok, op_, res);                         \
		comps_free(&now_, 1);                                                     \
	} while (0)

/* Receives a notification from (src, src_gen) carrying exactly `bits`. */
#define EXPECT_NOTE(fd, src, src_gen, bits)                                               \
	expect_note_at(__FILE__, __LINE__, fd, src, src_gen, bits)
static void expect_note_at(const char *file, int line, int fd, uint32_t src, uint32_t src_gen,
			   uint32_t bits)
{
	struct dvk_msg m = { 0 };
	int rc = mrecv(fd, DVK_ANY, 0, NULL, 0, 0, SOON, &m);

	if (rc || m.flags != DVK_MSG_NOTIFY || m.peer != src || m.peer_gen != src_gen ||
	    m.bits != bits || m.size || m.type || m.request_id) {
		tap_failed = 1;
		tap_diag_at(file, line, "receive: %s, flags 0x%x from %u gen %u bits 0x%x size %u; "
			    "want bits 0x%x from %u gen %u", rcname(rc), m.flags, m.peer,
			    m.peer_gen, m.bits, m.size, bits, src, src_gen);
	}
}

/* The number a numbered message in a RECEIVE completion carries, or ~0. */
static uint64_t comp_num(const struct comp *c)
{
	uint64_t v;

	if (c->c.msg.size != sizeof(v) || !c->data)
		return ~0ull;
	memcpy(&v, c->data, sizeof(v));
	return c->c.msg.type == (int32_t)v ? v : ~0ull;
}

/* Expects one RECEIVE completion of `tok` carrying number `n` from `src`. */
#define EXPECT_RECV_NUM(fd, tok, src, n)                                                  \
	do {                                                                              \
		struct comp rn_ = EXPECT_ONE(fd, tok, DVK_OP_RECEIVE, 0);                 \
		CHECK_EQ(comp_num(&rn_), n);                                              \
		CHECK_EQ(rn_.c.msg.peer, src);                                            \
		CHECK_EQ(rn_.c.msg.flags, 0);                                             \
		comps_free(&rn_, 1);                                                      \
	} while (0)

static int poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, 0);

	return n == 1 ? p.revents : n;
}

/* ====================================================================================== */
/* Helper processes and threads                                                            */
/* ====================================================================================== */

/* ---- pipes ---- */

static void put_u64(int fd, uint64_t v)
{
	CHECK(write(fd, &v, sizeof(v)) == sizeof(v));
}

static uint64_t get_u64(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v = ~0ull;

	if (poll(&p, 1, 3 * LONG_MS) != 1 || read(fd, &v, sizeof(v)) != sizeof(v))
		tap_fail("no number came through the pipe");
	return v;
}

/* Sleeps until the process is killed. */
static void linger(void)
{
	for (;;)
		pause();
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

#define WAIT_SLEEPING(pid, tid) wait_state_at(__FILE__, __LINE__, pid, tid, 'S')

/* ---- memory the kernel cannot touch ---- */

/* A page holding `len` bytes of `src`, then made read-only. */
static void *read_only_copy(const void *src, size_t len)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	REQUIRE(p != MAP_FAILED && len <= 4096);
	memcpy(p, src, len);
	REQUIRE(mprotect(p, 4096, PROT_READ) == 0);
	return p;
}

/* ---- counters ---- */

/* Waits (up to 3 s) until statistic `name` is `want`. */
#define WAIT_STAT(name, want) wait_stat_at(__FILE__, __LINE__, name, want)
static bool wait_stat_at(const char *file, int line, const char *name, long long want)
{
	uint64_t end = in_ms(3000);
	long long got;

	while ((got = stat_now(name)) != want && now_ns() < end)
		sleep_ms(2);
	if (got == want)
		return true;
	tap_failed = 1;
	tap_diag_at(file, line, "statistic %s is %lld, want %lld", name, got, want);
	return false;
}

/* ---- helpers many cases share ---- */

/* The reply a server gives to request number n: type 1000 + n, payload n * 3 + 1. */
#define REPLY_TYPE(n) ((int32_t)(1000 + (n)))
#define REPLY_NUM(n) ((uint64_t)(n) * 3 + 1)

/* Answers a numbered request (received as `req`, carrying n) as REPLY_* says. */
static int answer(int fd, const struct dvk_msg *req, uint64_t n)
{
	uint64_t v = REPLY_NUM(n);

	return mreply(fd, req->peer, req->peer_gen, req->request_id, REPLY_TYPE(n), &v,
		      sizeof(v));
}

/* Checks a SENDREC completion carrying the answer to number n from `server`. */
#define CHECK_ANSWER(cp, server, n)                                                       \
	do {                                                                              \
		uint64_t an_ = ~0ull;                                                     \
		CHECK_EQ((cp)->c.msg.flags, DVK_MSG_REPLY);                               \
		CHECK_EQ((cp)->c.msg.peer, server);                                       \
		CHECK_EQ((cp)->c.msg.type, REPLY_TYPE(n));                                \
		CHECK_EQ((cp)->c.msg.size, 8);                                            \
		if ((cp)->data && (cp)->c.msg.size == 8)                                  \
			memcpy(&an_, (cp)->data, 8);                                      \
		CHECK_EQ(an_, REPLY_NUM(n));                                              \
	} while (0)

/* A server: receives `count` numbered requests (blocking), then answers them. */
struct serve_arg {
	int fd;
	int count;
	bool reverse;		/* answer once all are in, last first; else each at once */
	int ids;		/* if >= 0: write each request id here, in the order received */
};

static void serve(void *p)
{
	struct serve_arg *a = p;
	struct dvk_msg *req = calloc(a->count, sizeof(*req));
	uint64_t *num = calloc(a->count, sizeof(*num));

	REQUIRE(req && num);
	for (int i = 0; i < a->count; i++) {
		CHECK_RC(recv_num(a->fd, DVK_ANY, 0, SOON, &num[i], &req[i]), 0);
		CHECK_EQ(req[i].flags, DVK_MSG_REQUEST);
		if (a->ids >= 0)
			put_u64(a->ids, req[i].request_id);
		if (!a->reverse)
			CHECK_RC(answer(a->fd, &req[i], num[i]), 0);
	}
	for (int i = a->count - 1; a->reverse && i >= 0; i--)
		CHECK_RC(answer(a->fd, &req[i], num[i]), 0);
	free(req);
	free(num);
}

/* A server that takes `count` requests, answers none, says 'R' and waits to be killed. */
struct hold_arg {
	int fd;
	int count;
	int ready;
};

static void hold_requests(void *p)
{
	struct hold_arg *a = p;

	for (int i = 0; i < a->count; i++) {
		struct dvk_msg m;

		CHECK_RC(recv_num(a->fd, DVK_ANY, 0, SOON, NULL, &m), 0);
		CHECK_EQ(m.flags, DVK_MSG_REQUEST);
	}
	put_byte(a->ready, 'R');
	linger();
}

/* A blocking caller: one numbered sendrec, and what its outcome must be. */
struct call_arg {
	int fd;
	uint32_t dst;
	uint64_t num;
	int want_rc;
	int32_t want_type;	/* with want_rc 0: the reply's type and number */
	uint64_t want_num;
	int ready;		/* if >= 0: 'C' is written here just before the call */
};

static void client_call(void *p)
{
	struct call_arg *a = p;
	uint64_t n = a->num, r = ~0ull;
	struct dvk_msg rep = { 0 };
	int rc;

	if (a->ready >= 0)
		put_byte(a->ready, 'C');
	rc = msendrec(a->fd, a->dst, (int32_t)n, &n, sizeof(n), &r, sizeof(r), SOON, &rep);
	CHECK_RC(rc, a->want_rc);
	if (rc == 0 && a->want_rc == 0) {
		CHECK_EQ(rep.flags, DVK_MSG_REPLY);
		CHECK_EQ(rep.peer, a->dst);
		CHECK_EQ(rep.type, a->want_type);
		CHECK_EQ(rep.size, sizeof(r));
		CHECK_EQ(r, a->want_num);
	}
}

/* A blocking call in a thread of the case's process. */
struct thread_call {
	pthread_t th;
	_Atomic pid_t tid;
	int fd;
	uint32_t peer;
	uint64_t num;
	int rc;
	uint64_t got;		/* receive: the number received */
	struct dvk_msg msg;
};

static void *thread_receive(void *p)
{
	struct thread_call *t = p;

	atomic_store(&t->tid, gettid_());
	t->rc = recv_num(t->fd, t->peer, 0, SOON, &t->got, &t->msg);
	return NULL;
}

static void *thread_send(void *p)
{
	struct thread_call *t = p;

	atomic_store(&t->tid, gettid_());
	t->rc = send_num(t->fd, t->peer, t->num, 0, SOON);
	return NULL;
}

/* Starts fn in a thread and waits until it sleeps in its call. */
static void thread_start(struct thread_call *t, void *(*fn)(void *))
{
	t->rc = 1;
	atomic_store(&t->tid, 0);
	REQUIRE(pthread_create(&t->th, NULL, fn, t) == 0);
	while (!atomic_load(&t->tid))
		sleep_ms(1);
	WAIT_SLEEPING(getpid(), atomic_load(&t->tid));
}

static int thread_join(struct thread_call *t)
{
	CHECK(pthread_join(t->th, NULL) == 0);
	return t->rc;
}

/* ====================================================================================== */
/* SUBMIT: tokens and argument checking                                                    */
/* ====================================================================================== */

static void t_tokens(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	uint64_t tok[16], n = 1;
	struct dvk_submit s;
	struct comp c[2];
	int nt = 0;

	/* The token is only written: garbage in it is ignored and replaced. */
	s = sub_msg(DVK_OP_SEND, 1, 0, 1, &n, sizeof(n));
	s.token = ~0ull;
	CHECK_RC(submit_rc(f, &s), 0);
	tok[nt++] = s.token;
	tok[nt++] = A_RECV(f, DVK_ANY, 0);		/* waits */
	tok[nt++] = A_SEND_NUM(f, 1, 2);		/* completes */
	tok[nt++] = A_SENDREC_NUM(f, 1, 3);		/* queued at x */
	tok[nt++] = A_RECV(f, 1, 0);			/* waits */
	REAP_N(f, c, 2);
	CHECK_COMP(&c[0], tok[0], DVK_OP_SEND, 0);
	CHECK_COMP(&c[1], tok[2], DVK_OP_SEND, 0);
	CHECK_RC(cancel_rc(f, tok[1]), 0);
	CHECK_RC(cancel_rc(f, tok[3]), 0);
	CHECK_RC(cancel_rc(f, tok[4]), 0);
	/* Tokens of reaped and cancelled calls are not handed out again. */
	for (int i = 0; i < 8; i++) {
		tok[nt++] = A_RECV(f, 3, 0);
		CHECK_RC(cancel_rc(f, tok[nt - 1]), 0);
	}
	for (int i = 0; i < nt; i++) {
		CHECKF(tok[i] != 0 && tok[i] != ~0ull, "token %d is %llu", i,
		       (unsigned long long)tok[i]);
		for (int j = 0; j < i; j++)
			CHECKF(tok[i] != tok[j], "calls %d and %d both got token %llu", j, i,
			       (unsigned long long)tok[i]);
	}
	EXPECT_NONE(f);
	/* x got the two sends; the cancelled request was withdrawn. */
	EXPECT_NUM(x, DVK_ANY, 1);
	EXPECT_NUM(x, DVK_ANY, 2);
	EXPECT_EMPTY(x);
	comps_free(c, 2);
}

/* After SUBMITs that failed, nothing was submitted: no call, no completion, no message. */
static void expect_nothing_submitted(int f, int x, uint32_t dc, long long calls)
{
	CHECK_EQ(stat_now("calls"), calls);
	EXPECT_NONE(f);
	EXPECT_EMPTY(x);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
}

/*
 * Ops are SEND, RECEIVE, SENDREC and NOTIFY (1..4); dvk_submit.flags takes DVK_CALL_NONBLOCK
 * on a SEND and nothing else: any other bit, or that one on another op, is EINVAL.
 */
static void t_submit_einval_op_flags(void)
{
	static const uint32_t bad_ops[] = { 0, 5, 6, 0x10, 0x100, 0x80000001u, 0xffffffffu };
	uint32_t dc = dc_new(4), gf;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls"), notes = stat_now("notes");
	uint64_t n = 5;
	const struct dvk_submit good[4] = {
		sub_msg(DVK_OP_SEND, 1, 0, 5, &n, sizeof(n)),
		sub_recv(DVK_ANY, 0),
		sub_msg(DVK_OP_SENDREC, 1, 0, 5, &n, sizeof(n)),
		sub_notify(1, 0, 0x3),
	};
	struct dvk_submit s;

	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		for (int g = 0; g < 4; g++) {
			s = good[g];
			s.op = bad_ops[i];
			CHECKF(submit_rc(f, &s) == -EINVAL, "op %u", bad_ops[i]);
		}
	}
	for (int g = 0; g < 4; g++) {
		for (int bit = 0; bit < 32; bit++) {
			s = good[g];
			s.flags = 1u << bit;
			if (s.op == DVK_OP_SEND && s.flags == DVK_CALL_NONBLOCK)
				continue;	/* the one valid flag: taken below */
			CHECKF(submit_rc(f, &s) == -EINVAL, "op %u flags 0x%x", s.op, s.flags);
		}
		s = good[g];
		s.reserved = 1;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u reserved 1", s.op);
		s.reserved = 1ull << 63;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u reserved 1 << 63", s.op);
	}
	/* NONBLOCK with anything else beside it is still EINVAL. */
	for (int bit = 1; bit < 32; bit++) {
		s = sub_flags(good[0], DVK_CALL_NONBLOCK | 1u << bit);
		CHECKF(submit_rc(f, &s) == -EINVAL, "SEND flags 0x%x", s.flags);
	}
	s = sub_flags(good[0], DVK_CALL_NONBLOCK);
	s.reserved = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	expect_nothing_submitted(f, x, dc, calls);
	CHECK_EQ(ep_get(dc, 1, "notes"), 0);
	CHECK_EQ(stat_now("notes"), notes);
	/* The file never submitted a call: a queued message still makes it readable. */
	SEND_NUM(x, 0, 9);
	CHECK(poll_now(f) & POLLIN);
	EXPECT_NUM(f, DVK_ANY, 9);
	/* The valid forms are taken: a SEND with NONBLOCK, and op 4 (NOTIFY). */
	EXPECT_DONE_NOW(f, SUBMIT_OK(f, sub_flags(good[0], DVK_CALL_NONBLOCK)), DVK_OP_SEND, 0);
	EXPECT_DONE_NOW(f, SUBMIT_OK(f, good[3]), DVK_OP_NOTIFY, 0);
	EXPECT_NOTE(x, 0, gf, 0x3);
	EXPECT_NUM(x, DVK_ANY, 5);
	EXPECT_EMPTY(x);
	CHECK_EQ(stat_now("calls"), calls);
}

static void t_submit_einval_send_fields(void)
{
	static const uint32_t ops[] = { DVK_OP_SEND, DVK_OP_SENDREC };
	static const uint32_t kflags[] = { DVK_MSG_REQUEST, DVK_MSG_NOTIFY, DVK_MSG_REPLY,
					   1u << 31 };
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	uint64_t n = 5;
	struct dvk_submit s;

	for (int o = 0; o < 2; o++) {
		const struct dvk_submit good = sub_msg(ops[o], 1, 0, 5, &n, sizeof(n));

		/* from and from_gen belong to RECEIVE. */
		s = good;
		s.from = 1;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u from 1", ops[o]);
		s.from = DVK_ANY;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u from DVK_ANY", ops[o]);
		s = good;
		s.from_gen = 1;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u from_gen 1", ops[o]);
		/* The kernel sets flags, request_id and bits of a message. */
		for (size_t i = 0; i < sizeof(kflags) / sizeof(kflags[0]); i++) {
			s = good;
			s.msg.flags = kflags[i];
			CHECKF(submit_rc(f, &s) == -EINVAL, "op %u msg.flags 0x%x", ops[o],
			       kflags[i]);
		}
		s = good;
		s.msg.request_id = 1;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u msg.request_id 1", ops[o]);
		s = good;
		s.msg.bits = 1;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u msg.bits 1", ops[o]);
		/* DVK_ANY is never a destination. */
		s = good;
		s.msg.peer = DVK_ANY;
		CHECKF(submit_rc(f, &s) == -EINVAL, "op %u to DVK_ANY", ops[o]);
	}
	expect_nothing_submitted(f, x, dc, calls);
}

static void t_submit_einval_receive_fields(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	uint64_t buf;
	struct dvk_submit s;
	uint64_t tok;

	/* msg must be all zero: RECEIVE takes no buffer, the record carries the message. */
	s = sub_recv(DVK_ANY, 0);
	s.msg.peer = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.peer_gen = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.type = -1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.flags = DVK_MSG_REQUEST;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.request_id = 7;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.payload = (uintptr_t)&buf;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.size = sizeof(buf);
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_recv(DVK_ANY, 0);
	s.msg.bits = 0x80000000u;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	/* A generation needs a source. */
	s = sub_recv(DVK_ANY, 1);
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	expect_nothing_submitted(f, x, dc, calls);
	/* A source with a generation that may still come is fine; cancelled, it leaves nothing. */
	tok = A_RECV(f, 1, 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	CHECK_RC(cancel_rc(f, tok), 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	CHECK_EQ(stat_now("calls"), calls);
}

/*
 * SUBMIT NOTIFY: bits non-zero, a destination other than DVK_ANY, and nothing else: a type,
 * message flags, a request id, a payload or size, a source filter, call flags or reserved
 * are EINVAL, and nothing is posted.
 */
static void t_submit_einval_notify_fields(void)
{
	static const uint32_t kflags[] = { DVK_MSG_REQUEST, DVK_MSG_NOTIFY, DVK_MSG_REPLY,
					   1u << 31 };
	uint32_t dc = dc_new(4), gf, gx;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, &gx);
	long long calls = stat_now("calls"), notes = stat_now("notes");
	const struct dvk_submit good = sub_notify(1, gx, 0x40);
	uint64_t buf = 0;
	struct dvk_submit s;

	s = good;
	s.msg.bits = 0;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.msg.peer = DVK_ANY;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s.msg.peer_gen = 0;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.msg.type = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s.msg.type = -1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	for (size_t i = 0; i < sizeof(kflags) / sizeof(kflags[0]); i++) {
		s = good;
		s.msg.flags = kflags[i];
		CHECKF(submit_rc(f, &s) == -EINVAL, "msg.flags 0x%x", kflags[i]);
	}
	s = good;
	s.msg.request_id = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.msg.payload = (uintptr_t)&buf;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.msg.size = sizeof(buf);
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s.msg.payload = (uintptr_t)&buf;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.from = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s.from = DVK_ANY;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.from_gen = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = sub_flags(good, DVK_CALL_NONBLOCK);
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	s = good;
	s.reserved = 1;
	CHECK_RC(submit_rc(f, &s), -EINVAL);
	expect_nothing_submitted(f, x, dc, calls);
	CHECK_EQ(ep_get(dc, 1, "notes"), 0);
	CHECK_EQ(stat_now("notes"), notes);
	/* The good form, and every bit: taken. */
	EXPECT_DONE_NOW(f, SUBMIT_OK(f, good), DVK_OP_NOTIFY, 0);
	EXPECT_DONE_NOW(f, SUBMIT_OK(f, sub_notify(1, 0, 0xffffffffu)), DVK_OP_NOTIFY, 0);
	EXPECT_NOTE(x, 0, gf, 0xffffffffu);
	EXPECT_EMPTY(x);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(stat_now("notes"), notes);
}

static void t_submit_emsgsize(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gf;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	unsigned char *big = pattern_new(max_payload + 1, 3), *reply = pattern_new(max_payload, 4);
	struct dvk_submit s;
	struct dvk_msg req;
	struct comp c;
	uint64_t tok;

	s = sub_msg(DVK_OP_SEND, 1, 0, 1, big, max_payload + 1);
	CHECK_RC(submit_rc(f, &s), -EMSGSIZE);
	s = sub_msg(DVK_OP_SENDREC, 1, 0, 1, big, max_payload + 1);
	CHECK_RC(submit_rc(f, &s), -EMSGSIZE);
	s = sub_msg(DVK_OP_SEND, 1, 0, 1, big, 0xffffffffu);
	CHECK_RC(submit_rc(f, &s), -EMSGSIZE);
	s = sub_msg(DVK_OP_SENDREC, 1, 0, 1, big, 0x80000000u);
	CHECK_RC(submit_rc(f, &s), -EMSGSIZE);
	expect_nothing_submitted(f, x, dc, calls);

	/* Exactly max_payload goes, both ways, byte-exact. */
	tok = A_SEND(f, 1, 0, 11, big, max_payload);
	EXPECT_DONE(f, tok, DVK_OP_SEND, 0);
	memset(big, 0, max_payload + 1);
	CHECK_RC(mrecv(x, DVK_ANY, 0, big, max_payload, 0, SOON, &req), 0);
	CHECK_EQ(req.size, max_payload);
	CHECK(is_pattern(big, max_payload, 3));
	pattern(big, max_payload, 5);
	tok = A_SENDREC(f, 1, 0, 12, big, max_payload);
	memset(big, 0, max_payload + 1);
	CHECK_RC(mrecv(x, DVK_ANY, 0, big, max_payload, 0, SOON, &req), 0);
	CHECK_EQ(req.size, max_payload);
	CHECK_EQ(req.flags, DVK_MSG_REQUEST);
	CHECK(is_pattern(big, max_payload, 5));
	CHECK_RC(mreply(x, req.peer, req.peer_gen, req.request_id, 13, reply, max_payload), 0);
	c = EXPECT_ONE(f, tok, DVK_OP_SENDREC, 0);
	CHECK_EQ(c.c.msg.size, max_payload);
	CHECK_EQ(c.c.msg.type, 13);
	CHECK_EQ(c.c.msg.request_id, req.request_id);
	CHECK(c.data && is_pattern(c.data, c.c.msg.size, 4));
	comps_free(&c, 1);
	CHECK_EQ(stat_now("calls"), calls);
	free(big);
	free(reply);
}

/* Bad payload pointers: SUBMIT fails with EFAULT and nothing is submitted or sent. */
static void t_submit_efault_payload(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls"), messages = stat_now("messages");
	void *bad[] = { NULL, bad_page(), KERNEL_ADDR, before_hole(8) };
	struct dvk_submit s;

	for (int op = DVK_OP_SEND; op <= DVK_OP_SENDREC; op += 2) {
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			s = sub_msg(op, 1, 0, 1, bad[b], 16);
			CHECKF(submit_rc(f, &s) == -EFAULT, "op %d payload %p", op, bad[b]);
		}
	}
	expect_nothing_submitted(f, x, dc, calls);
	CHECK_EQ(stat_now("messages"), messages);
}

/* Bad argument pointers for SUBMIT, REAP and CANCEL fail with EFAULT and change nothing. */
static void t_efault_arguments(void)
{
	static const unsigned long cmds[] = { DVK_IOC_SUBMIT, DVK_IOC_REAP, DVK_IOC_CANCEL };
	static const size_t sizes[] = { sizeof(struct dvk_submit), sizeof(struct dvk_reap),
					sizeof(struct dvk_cancel) };
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	void *none = bad_page();
	long long calls;
	uint64_t tok;

	SEND_NUM(x, 0, 1);
	tok = A_SEND_NUM(f, 1, 2);	/* a completion waits */
	calls = stat_now("calls");
	for (int i = 0; i < 3; i++) {
		/* The struct's last 4 bytes fall into an inaccessible page. */
		void *bad[] = { NULL, (void *)1, none, KERNEL_ADDR, before_hole(sizes[i] - 4) };

		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			int rc = dvk_ioctl(f, cmds[i], bad[b]);

			CHECKF(rc == -EFAULT, "cmd 0x%lx with %p: %s", cmds[i], bad[b], rcname(rc));
		}
	}
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);	/* no RECEIVE took it */
	CHECK_EQ(ep_get(dc, 1, "queued"), 1);
	EXPECT_DONE(f, tok, DVK_OP_SEND, 0);
	EXPECT_NONE(f);
	EXPECT_NUM(f, DVK_ANY, 1);
	EXPECT_NUM(x, DVK_ANY, 2);
}

static void t_enotconn(void)
{
	uint32_t dc = dc_new(4);
	int f = dev_open(), x = ep_open(dc, 1, NULL);
	uint64_t n = 1;
	struct dvk_submit s[3] = {
		sub_msg(DVK_OP_SEND, 1, 0, 1, &n, sizeof(n)),
		sub_recv(DVK_ANY, 0),
		sub_msg(DVK_OP_SENDREC, 1, 0, 1, &n, sizeof(n)),
	};

	for (int i = 0; i < 3; i++)
		CHECK_RC(submit_rc(f, &s[i]), -ENOTCONN);
	CHECK_RC(reap_rc(f, rbuf, rbuf_len, NULL), -ENOTCONN);
	CHECK_RC(cancel_rc(f, 1), -ENOTCONN);
	EXPECT_EMPTY(x);
	/* Once bound, the same calls work. */
	CHECK_RC(bind_rc(f, dc, 0, NULL), 0);
	EXPECT_DONE(f, SUBMIT_OK(f, s[0]), DVK_OP_SEND, 0);
	EXPECT_NUM(x, DVK_ANY, 1);
}

static void t_reserved_reap_cancel(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	struct dvk_reap r = { .buffer = (uintptr_t)rbuf, .size = rbuf_len, .reserved = 1 };
	struct dvk_cancel c = { .reserved = 1 };
	uint64_t done, waiting;

	done = A_SEND_NUM(f, 1, 1);
	waiting = A_RECV(f, DVK_ANY, 0);
	CHECK_RC(dvk_ioctl(f, DVK_IOC_REAP, &r), -EINVAL);
	r.reserved = 1ull << 63;
	CHECK_RC(dvk_ioctl(f, DVK_IOC_REAP, &r), -EINVAL);
	c.token = waiting;
	CHECK_RC(dvk_ioctl(f, DVK_IOC_CANCEL, &c), -EINVAL);
	c.token = done;
	CHECK_RC(dvk_ioctl(f, DVK_IOC_CANCEL, &c), -EINVAL);
	/* Neither was taken or cancelled: the receive still waits and gets the next message. */
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	EXPECT_DONE(f, done, DVK_OP_SEND, 0);
	SEND_NUM(x, 0, 2);
	EXPECT_RECV_NUM(f, waiting, 1, 2);
	EXPECT_NUM(x, DVK_ANY, 1);
}

/* ====================================================================================== */
/* Outcomes arrive as completions                                                          */
/* ====================================================================================== */

static void t_send_enoent(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);
	long long messages = stat_now("messages");
	uint64_t t1, t2, t3;

	t1 = A_SEND_NUM(f, 2, 1);					/* never bound */
	t2 = A_SEND(f, 1, gx + 1, 2, &(uint64_t){ 2 }, 8);		/* not that generation */
	t3 = A_SEND(f, 1, gx, 3, &(uint64_t){ 3 }, 8);			/* that one */
	EXPECT_DONE(f, t1, DVK_OP_SEND, -ENOENT);
	EXPECT_DONE(f, t2, DVK_OP_SEND, -ENOENT);
	EXPECT_DONE(f, t3, DVK_OP_SEND, 0);
	EXPECT_NUM(x, DVK_ANY, 3);
	EXPECT_EMPTY(x);
	CHECK_EQ(stat_now("messages"), messages);
}

static void t_send_completes(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gf;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, NULL);
	unsigned char *p = pattern_new(100, 8), buf[128];
	struct dvk_msg m;
	uint64_t t1, t2;

	t1 = A_SEND(f, 1, 0, -5, p, 100);
	/* Queued at once: its completion waits before SUBMIT returns. */
	CHECK_EQ(ep_get(dc, 1, "queued"), 1);
	EXPECT_DONE(f, t1, DVK_OP_SEND, 0);
	t2 = A_SEND(f, 1, 0, 6, NULL, 0);
	EXPECT_DONE(f, t2, DVK_OP_SEND, 0);
	memset(buf, 0, sizeof(buf));
	CHECK_RC(mrecv(x, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK_EQ(m.size, 100);
	CHECK_EQ(m.type, -5);
	CHECK_EQ(m.peer, 0);
	CHECK_EQ(m.peer_gen, gf);
	CHECK_EQ(m.flags, 0);
	CHECK(is_pattern(buf, 100, 8));
	CHECK_RC(mrecv(x, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK_EQ(m.size, 0);
	CHECK_EQ(m.type, 6);
	EXPECT_EMPTY(x);
	free(p);
}

/*
 * A NOTIFY to a local endpoint completes within SUBMIT, with 0 and no message (a record of a
 * header alone); its bits are pending there as DVK_IOC_NOTIFY's are, merged per source, and
 * a RECEIVE waiting there gets them at once.
 */
static void t_notify_local(void)
{
	uint32_t dc = dc_new(4), gf, gx;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, &gx), n = 0;
	long long calls = stat_now("calls"), notes = stat_now("notes");
	struct dvk_reap r;
	struct comp c;
	uint64_t t, rx;

	t = A_NOTIFY(f, 1, 0, 0x1);
	CHECK_EQ(ep_get(dc, 1, "notes"), 1);
	/* Complete already: CANCEL says so, and one REAP takes the record, no more. */
	CHECK_RC(cancel_rc(f, t), -EALREADY);
	CHECK(poll_now(f) & POLLIN);
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, rbuf_len, &c, &n, 1, &r), 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_COMP(&c, t, DVK_OP_NOTIFY, 0);
		CHECK_EQ(r.count, 1);
		CHECK_EQ(r.size, HDR);
		CHECKF(rbuf[HDR] == 0xa5, "a byte written after the record");
		comps_free(&c, 1);
	}
	CHECK_RC(cancel_rc(f, t), -ENOENT);
	/* With the destination's generation, then DVK_IOC_NOTIFY: one mask for the source. */
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, gx, 0x80000000u), DVK_OP_NOTIFY, 0);
	CHECK_RC(mnotify(f, 1, 0, 0x10), 0);
	CHECK_EQ(ep_get(dc, 1, "notes"), 1);
	CHECK_EQ(ep_get(dc, 0, "notified"), 3);
	EXPECT_NOTE(x, 0, gf, 0x80000011u);
	EXPECT_EMPTY(x);
	/* A RECEIVE waiting at the destination completes with them. */
	rx = A_RECV(x, 0, gf);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, 0, 0x6), DVK_OP_NOTIFY, 0);
	c = EXPECT_NOW(x, rx, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_NOTIFY);
	CHECK_EQ(c.c.msg.bits, 0x6);
	CHECK_EQ(c.c.msg.peer, 0);
	CHECK_EQ(c.c.msg.peer_gen, gf);
	comps_free(&c, 1);
	/* And to itself. */
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 0, gf, 0x2), DVK_OP_NOTIFY, 0);
	EXPECT_NOTE(f, 0, gf, 0x2);
	EXPECT_NONE(f);
	EXPECT_NONE(x);
	EXPECT_EMPTY(x);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(stat_now("notes"), notes);
}

/*
 * A NOTIFY to an endpoint not bound, or not that generation, completes within SUBMIT with
 * ENOENT (no message in the record), and posts nothing anywhere.
 */
static void t_notify_enoent(void)
{
	uint32_t dc = dc_new(4), gf, gx, gx2;
	int f = ep_open(dc, 0, &gf), x = ep_open(dc, 1, &gx);
	long long calls = stat_now("calls"), notes = stat_now("notes");

	EXPECT_DONE_NOW(f, A_NOTIFY(f, 2, 0, 0x1), DVK_OP_NOTIFY, -ENOENT);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, gx + 1, 0x2), DVK_OP_NOTIFY, -ENOENT);
	CHECK_EQ(ep_get(dc, 1, "notes"), 0);
	CHECK_EQ(ep_get(dc, 0, "notified"), 0);
	EXPECT_EMPTY(x);
	dev_close(x);
	WAIT_UNBOUND(dc, 1);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, gx, 0x4), DVK_OP_NOTIFY, -ENOENT);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, 0, 0x8), DVK_OP_NOTIFY, -ENOENT);
	/* The next incarnation: the old generation still names no one; 0 reaches it. */
	x = ep_open(dc, 1, &gx2);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, gx, 0x10), DVK_OP_NOTIFY, -ENOENT);
	EXPECT_DONE_NOW(f, A_NOTIFY(f, 1, 0, 0x20), DVK_OP_NOTIFY, 0);
	EXPECT_NOTE(x, 0, gf, 0x20);
	EXPECT_EMPTY(x);
	EXPECT_NONE(f);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(stat_now("notes"), notes);
}

/*
 * A SEND with DVK_CALL_NONBLOCK that finds the destination full completes within SUBMIT with
 * EAGAIN: nothing is queued or held, and it never arrives; a send without the flag is held,
 * and behind it NONBLOCK still fails at once.
 */
static void t_send_nonblock_full(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	long long calls, messages;
	uint64_t t, held;

	fill_queue(x, 1, 1);
	calls = stat_now("calls");
	messages = stat_now("messages");
	t = A_SEND_NUM_NB(f, 1, 100);
	CHECK_EQ(ep_get(dc, 1, "held"), 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), QLEN);
	CHECK_RC(cancel_rc(f, t), -EALREADY);
	EXPECT_DONE_NOW(f, t, DVK_OP_SEND, -EAGAIN);
	CHECK_EQ(stat_now("messages"), messages);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(ep_get(dc, 0, "sent"), 0);
	held = A_SEND_NUM(f, 1, 101);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 102), DVK_OP_SEND, -EAGAIN);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	/* Room for one: the held send takes it; the queue is full again. */
	EXPECT_NUM(d, DVK_ANY, 1);
	EXPECT_DONE(f, held, DVK_OP_SEND, 0);
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 103), DVK_OP_SEND, -EAGAIN);
	for (int i = 1; i < QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, 1 + i);
	EXPECT_NUM(d, DVK_ANY, 101);
	EXPECT_EMPTY(d);
	EXPECT_NONE(f);
	CHECK_EQ(ep_get(dc, 0, "sent"), 1);
	CHECK_EQ(stat_now("calls"), calls);
}

/* A SEND with DVK_CALL_NONBLOCK that fits completes within SUBMIT with 0, like any. */
static void t_send_nonblock_fits(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	uint64_t rx;

	for (int i = 0; i < QLEN; i++)
		EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 1 + i), DVK_OP_SEND, 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), QLEN);
	CHECK_EQ(ep_get(dc, 0, "sent"), QLEN);
	/* Now full. */
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 99), DVK_OP_SEND, -EAGAIN);
	for (int i = 0; i < QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, 1 + i);
	EXPECT_EMPTY(d);
	/* Handed to a waiting RECEIVE; and to no one: ENOENT, as for any send. */
	rx = A_RECV(d, DVK_ANY, 0);
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 7), DVK_OP_SEND, 0);
	EXPECT_RECV_NUM(d, rx, 0, 7);
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 3, 8), DVK_OP_SEND, -ENOENT);
	EXPECT_EMPTY(d);
	EXPECT_NONE(f);
	CHECK_EQ(stat_now("calls"), calls);
}

/*
 * NONBLOCK and held senders: where a message would fit (here by count and by bytes) but a
 * sender is held ahead of it (by queue_bytes), it would wait too: EAGAIN at once, from the
 * held sender's file and from another, and it does not overtake.
 */
static void t_send_nonblock_held(void)
{
	struct dvk_dc_config cfg = { .id = dc_id(), .slots = 4, .queue_length = QLEN,
				     .queue_bytes = 64 };
	unsigned char *a = pattern_new(48, 1), *b = pattern_new(48, 2), buf[64];
	uint32_t dc = cfg.id;
	int f, d, g;
	struct dvk_msg m;
	uint64_t held;

	dc_name_of(cfg.id, cfg.name);
	REQUIRE(dc_ioctl(DVK_IOC_DC_CREATE, &cfg) == 0);
	f = ep_open(dc, 0, NULL);
	d = ep_open(dc, 1, NULL);
	g = ep_open(dc, 2, NULL);
	CHECK_RC(msend(g, 1, 0, 1, a, 48, DVK_CALL_NONBLOCK, 0), 0);
	held = A_SEND(f, 1, 0, 2, b, 48);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	EXPECT_NONE(f);
	EXPECT_DONE_NOW(g, A_SEND_NUM_NB(g, 1, 3), DVK_OP_SEND, -EAGAIN);
	EXPECT_DONE_NOW(f, A_SEND_NUM_NB(f, 1, 4), DVK_OP_SEND, -EAGAIN);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	CHECK_EQ(ep_get(dc, 1, "queued"), 1);
	/* A receive makes room: the held send goes in, and then a NONBLOCK one fits. */
	CHECK_RC(mrecv(d, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK(m.type == 1 && m.size == 48 && is_pattern(buf, 48, 1));
	EXPECT_DONE(f, held, DVK_OP_SEND, 0);
	EXPECT_DONE_NOW(g, A_SEND_NUM_NB(g, 1, 5), DVK_OP_SEND, 0);
	CHECK_RC(mrecv(d, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK(m.type == 2 && m.size == 48 && is_pattern(buf, 48, 2));
	EXPECT_NUM(d, DVK_ANY, 5);
	EXPECT_EMPTY(d);
	EXPECT_NONE(f);
	EXPECT_NONE(g);
	free(a);
	free(b);
}

/* A RECEIVE that finds a message completes within SUBMIT: no waiting before the REAP. */
static void t_receive_at_once(void)
{
	uint32_t sizes[] = { 0, 1, 7, 8, 9, 63, 4093, 4096, max_payload - 1, max_payload };
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *p = pattern_new(sizes[i], 20 + i);
		struct dvk_reap r;
		struct comp c;
		uint64_t tok;
		int n = 0;

		CHECK_RC(msend(x, 0, 0, 100 + (int32_t)i, p, sizes[i], 0, SOON), 0);
		tok = A_RECV(f, DVK_ANY, 0);
		CHECK_RC(reap_once_at(__FILE__, __LINE__, f, rbuf_len, &c, &n, 1, &r), 0);
		if (n != 1)
			continue;
		CHECK_COMP(&c, tok, DVK_OP_RECEIVE, 0);
		CHECK_EQ(r.count, 1);
		CHECK_EQ(r.size, REC(sizes[i]));
		CHECK_EQ(c.c.msg.peer, 1);
		CHECK_EQ(c.c.msg.peer_gen, gx);
		CHECK_EQ(c.c.msg.type, 100 + (int32_t)i);
		CHECK_EQ(c.c.msg.flags, 0);
		CHECK_EQ(c.c.msg.request_id, 0);
		CHECK_EQ(c.c.msg.payload, 0);
		CHECK_EQ(c.c.msg.size, sizes[i]);
		CHECK_EQ(c.c.msg.bits, 0);
		CHECKF(is_pattern(rbuf + HDR, sizes[i], 20 + i), "payload of %u bytes", sizes[i]);
		/* Padding zero up to 8 (cq_record_check saw it too), and nothing written after. */
		for (uint32_t k = sizes[i]; k < REC(sizes[i]) - HDR; k++)
			CHECKF(rbuf[HDR + k] == 0, "padding byte %u of %u", k - sizes[i], sizes[i]);
		CHECKF(rbuf[REC(sizes[i])] == 0xa5, "a byte written after the record of %u",
		       sizes[i]);
		comps_free(&c, 1);
		free(p);
	}
	EXPECT_NONE(f);
	EXPECT_EMPTY(f);
}

struct sender_arg {
	int fd;
	uint32_t dst;
	uint64_t first, count;
	int go;		/* if >= 0: wait for a byte here first */
};

static void sender(void *p)
{
	struct sender_arg *a = p;

	if (a->go >= 0)
		EXPECT_BYTE(a->go, 'G');
	for (uint64_t i = 0; i < a->count; i++)
		CHECK_RC(send_num(a->fd, a->dst, a->first + i, 0, SOON), 0);
}

/* A RECEIVE submitted first waits, and a later send (from another process) completes it. */
static void t_receive_later(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), pfd[2];
	struct sender_arg a = { .fd = ep_open(dc, 1, NULL), .dst = 0, .first = 42, .count = 1 };
	uint64_t tok;
	pid_t pid;

	pipe_new(pfd);
	a.go = pfd[0];
	tok = A_RECV(f, DVK_ANY, 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	EXPECT_QUIET(f);
	pid = SPAWN(sender, &a, a.fd);
	dev_close(a.fd);
	put_byte(pfd[1], 'G');
	EXPECT_RECV_NUM(f, tok, 1, 42);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	EXPECT_NONE(f);
}

static void t_receive_notify(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);
	long long notes = stat_now("notes");
	struct comp c;
	uint64_t tok;

	/* A notification completes a waiting RECEIVE... */
	tok = A_RECV(f, DVK_ANY, 0);
	CHECK_RC(mnotify(x, 0, 0, 0x5), 0);
	c = EXPECT_ONE(f, tok, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_NOTIFY);
	CHECK_EQ(c.c.msg.bits, 0x5);
	CHECK_EQ(c.c.msg.peer, 1);
	CHECK_EQ(c.c.msg.peer_gen, gx);
	CHECK_EQ(c.c.msg.size, 0);
	comps_free(&c, 1);
	/* ...and pending ones, merged, come before a queued message. */
	SEND_NUM(x, 0, 7);
	CHECK_RC(mnotify(x, 0, 0, 0x10), 0);
	CHECK_RC(mnotify(x, 0, 0, 0x1), 0);
	tok = A_RECV(f, DVK_ANY, 0);
	c = EXPECT_ONE(f, tok, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_NOTIFY);
	CHECK_EQ(c.c.msg.bits, 0x11);
	comps_free(&c, 1);
	EXPECT_RECV_NUM(f, A_RECV(f, DVK_ANY, 0), 1, 7);
	CHECK_EQ(stat_now("notes"), notes);
}

/* A server in another process: says 'R' with the request id, waits for 'G', then replies. */
struct slow_server_arg {
	int fd, out, go;
	uint32_t request_len, reply_len;
};

static void slow_server(void *p)
{
	struct slow_server_arg *a = p;
	unsigned char *buf = malloc(max_payload), *reply = pattern_new(a->reply_len, 31);
	struct dvk_msg req;

	REQUIRE(buf);
	CHECK_RC(mrecv(a->fd, DVK_ANY, 0, buf, max_payload, 0, SOON, &req), 0);
	CHECK_EQ(req.flags, DVK_MSG_REQUEST);
	CHECK_EQ(req.size, a->request_len);
	CHECK(is_pattern(buf, req.size, 30));
	put_u64(a->out, req.request_id);
	EXPECT_BYTE(a->go, 'G');
	CHECK_RC(mreply(a->fd, req.peer, req.peer_gen, req.request_id, req.type + 1, reply,
			a->reply_len), 0);
	free(buf);
	free(reply);
}

static void t_sendrec_reply(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gs;
	int f = ep_open(dc, 0, NULL), out[2], go[2];
	struct slow_server_arg a = { .fd = ep_open(dc, 1, &gs), .request_len = 1000,
				     .reply_len = max_payload };
	unsigned char *req = pattern_new(1000, 30);
	long long calls = stat_now("calls");
	uint64_t tok, id;
	struct comp c;
	pid_t pid;

	pipe_new(out);
	pipe_new(go);
	a.out = out[1];
	a.go = go[0];
	pid = SPAWN(slow_server, &a, a.fd);
	dev_close(a.fd);
	tok = A_SENDREC(f, 1, 0, 70, req, 1000);
	CHECK_EQ(stat_now("calls"), calls + 1);
	id = get_u64(out[0]);
	/* The server holds the request: no completion yet. */
	CHECK_EQ(ep_get(dc, 0, "calls"), 1);
	EXPECT_QUIET(f);
	put_byte(go[1], 'G');
	c = EXPECT_ONE(f, tok, DVK_OP_SENDREC, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_REPLY);
	CHECK_EQ(c.c.msg.request_id, id);
	CHECK_EQ(c.c.msg.peer, 1);
	CHECK_EQ(c.c.msg.peer_gen, gs);
	CHECK_EQ(c.c.msg.type, 71);
	CHECK_EQ(c.c.msg.size, max_payload);
	CHECK(c.data && is_pattern(c.data, c.c.msg.size, 31));
	comps_free(&c, 1);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	CHECK_EQ(stat_now("calls"), calls);
	EXPECT_NONE(f);
	free(req);
}

/*
 * A SENDREC to an endpoint that is not bound fails with ENOENT. The header leaves open
 * whether SUBMIT fails with it (as the blocking SENDREC does) or the call completes with it
 * (as a submitted SEND does); either way nothing is left behind, and no request goes out.
 */
static void t_sendrec_enoent(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);
	long long calls = stat_now("calls");
	struct dvk_submit s[2] = {
		sub_msg(DVK_OP_SENDREC, 2, 0, 1, &(uint64_t){ 1 }, 8),
		sub_msg(DVK_OP_SENDREC, 1, gx + 1, 1, &(uint64_t){ 1 }, 8),
	};

	for (int i = 0; i < 2; i++) {
		int rc = submit_rc(f, &s[i]);

		if (rc == 0) {
			tap_diag("SENDREC to %u gen %u: SUBMIT took it; it completes with ENOENT",
				 s[i].msg.peer, s[i].msg.peer_gen);
			EXPECT_DONE(f, s[i].token, DVK_OP_SENDREC, -ENOENT);
		} else {
			if (i == 0)
				tap_diag("SENDREC to an unbound endpoint: SUBMIT fails with %s "
					 "(a SEND to it completes with ENOENT instead)", errname(-rc));
			CHECK_RC(rc, -ENOENT);
			EXPECT_NONE(f);
		}
		CHECK_EQ(stat_now("calls"), calls);
	}
	EXPECT_EMPTY(x);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
}

/* The server dies with one request received, QLEN queued and one held: all get ESRCH. */
static void t_sendrec_server_killed(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), ready[2];
	struct hold_arg a = { .fd = ep_open(dc, 1, NULL), .count = 1 };
	uint64_t tok[QLEN + 2];
	struct comp c[QLEN + 2];
	long long calls = stat_now("calls");
	pid_t pid;

	pipe_new(ready);
	a.ready = ready[1];
	pid = SPAWN(hold_requests, &a, a.fd);
	dev_close(a.fd);
	tok[0] = A_SENDREC_NUM(f, 1, 0);
	EXPECT_BYTE(ready[0], 'R');
	CHECK_EQ(ep_get(dc, 1, "owed"), 1);
	for (int i = 1; i < QLEN + 2; i++)
		tok[i] = A_SENDREC_NUM(f, 1, i);
	CHECK_EQ(ep_get(dc, 1, "queued"), QLEN);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	CHECK_EQ(ep_get(dc, 0, "calls"), QLEN + 2);
	EXPECT_QUIET(f);
	kill_child(pid);
	REAP_N(f, c, QLEN + 2);
	for (int i = 0; i < QLEN + 2; i++) {
		int k = 0;

		while (k < QLEN + 2 && c[k].c.token != tok[i])
			k++;
		if (k == QLEN + 2) {
			tap_fail("no completion for request %d", i);
			continue;
		}
		CHECK_COMP(&c[k], tok[i], DVK_OP_SENDREC, -ESRCH);
	}
	comps_free(c, QLEN + 2);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	CHECK_EQ(stat_now("calls"), calls);
	EXPECT_NONE(f);
}

/* Sends held at a destination that unbinds complete with ESRCH, and are never delivered. */
static void t_held_send_destination_gone(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	long long messages = stat_now("messages");
	uint64_t t1, t2;

	fill_queue(x, 1, 1);
	t1 = A_SEND_NUM(f, 1, 11);
	t2 = A_SEND_NUM(f, 1, 12);
	CHECK_EQ(ep_get(dc, 1, "held"), 2);
	EXPECT_QUIET(f);
	dev_close(d);
	EXPECT_DONE(f, t1, DVK_OP_SEND, -ESRCH);
	EXPECT_DONE(f, t2, DVK_OP_SEND, -ESRCH);
	CHECK_EQ(stat_now("messages"), messages);
	/* A new incarnation starts empty. */
	d = ep_open(dc, 1, NULL);
	EXPECT_EMPTY(d);
}

/* A RECEIVE from an exact incarnation that unbinds ends with ESRCH; one from a number waits. */
static void t_receive_from_gone_esrch(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);
	uint64_t exact, number;

	exact = A_RECV(f, 1, gx);
	number = A_RECV(f, 1, 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 2);
	EXPECT_QUIET(f);
	dev_close(x);
	EXPECT_DONE(f, exact, DVK_OP_RECEIVE, -ESRCH);
	EXPECT_QUIET(f);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	/* The number's next incarnation serves the other. */
	x = ep_open(dc, 1, NULL);
	SEND_NUM(x, 0, 5);
	EXPECT_RECV_NUM(f, number, 1, 5);
}

/* A RECEIVE from a gone incarnation gets what it left, then ENOENT at once. */
static void t_receive_from_gone_enoent(void)
{
	uint32_t dc = dc_new(8);
	uint32_t gx, gy;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx), y = ep_open(dc, 2, &gy);
	struct comp c;
	uint64_t tok;
	int n;

	SEND_NUM(x, 0, 1);
	dev_close(x);
	dev_close(y);
	WAIT_UNBOUND(dc, 1);
	EXPECT_RECV_NUM(f, A_RECV(f, 1, gx), 1, 1);
	/* Nothing is left from it: each of these completes before SUBMIT returns. */
	struct {
		uint32_t from, gen;
	} gone[] = { { 1, gx }, { 2, gy }, { 1, gx + 5 }, { 5, 1 }, { 7, 3 } };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		tok = A_RECV(f, gone[i].from, gone[i].gen);
		n = 0;
		CHECK_RC(reap_once_at(__FILE__, __LINE__, f, rbuf_len, &c, &n, 1, NULL), 0);
		if (n == 1)
			CHECK_COMP(&c, tok, DVK_OP_RECEIVE, -ENOENT);
		comps_free(&c, n);
	}
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	EXPECT_NONE(f);
}

/* ====================================================================================== */
/* Order                                                                                   */
/* ====================================================================================== */

/*
 * 64 SENDRECs in flight on one file against a server process, which takes them all (most
 * wait held behind its queue of QLEN) and answers them last first: every call completes
 * with its own answer, and completions come oldest first, so in the order of the answers.
 */
static void t_sendrec_64(void)
{
	enum { CALLS = 64 };
	uint32_t dc = dc_new(4);
	uint32_t gs;
	int f = ep_open(dc, 0, NULL), ids[2];
	struct serve_arg a = { .fd = ep_open(dc, 1, &gs), .count = CALLS, .reverse = true };
	uint64_t tok[CALLS], id[CALLS];
	struct comp *c = calloc(CALLS, sizeof(*c));
	pid_t pid;

	REQUIRE(c);
	pipe_new(ids);
	a.ids = ids[1];
	pid = SPAWN(serve, &a, a.fd);
	dev_close(a.fd);
	for (int i = 0; i < CALLS; i++)
		tok[i] = A_SENDREC_NUM(f, 1, 500 + i);
	/* The server takes them in submission order (their ids tell). */
	for (int i = 0; i < CALLS; i++)
		id[i] = get_u64(ids[0]);
	REAP_N(f, c, CALLS);
	for (int k = 0; k < CALLS; k++) {
		int i = CALLS - 1 - k;

		if (!CHECK_COMP(&c[k], tok[i], DVK_OP_SENDREC, 0))
			continue;
		CHECK_ANSWER(&c[k], 1, 500 + i);
		CHECK_EQ(c[k].c.msg.peer_gen, gs);
		CHECK_EQ(c[k].c.msg.request_id, id[i]);
	}
	comps_free(c, CALLS);
	free(c);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	EXPECT_NONE(f);
}

/*
 * SENDs submitted into a full queue wait held, in submission order; each message the
 * receiver takes admits exactly the next one, whose SEND then completes; they arrive in order.
 */
static void t_send_order_full_queue(void)
{
	enum { SENDS = 20 };
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	uint64_t tok[SENDS];

	fill_queue(x, 1, 1);
	for (int i = 0; i < SENDS; i++)
		tok[i] = A_SEND_NUM(f, 1, 100 + i);
	CHECK_EQ(ep_get(dc, 1, "held"), SENDS);
	EXPECT_QUIET(f);
	for (int i = 0; i < QLEN; i++) {
		EXPECT_NUM(d, DVK_ANY, 1 + i);
		EXPECT_DONE(f, tok[i], DVK_OP_SEND, 0);
		EXPECT_NONE(f);
	}
	for (int i = 0; i < SENDS; i++) {
		EXPECT_NUM(d, DVK_ANY, 100 + i);
		if (i + QLEN < SENDS) {
			EXPECT_DONE(f, tok[i + QLEN], DVK_OP_SEND, 0);
			EXPECT_NONE(f);
		}
	}
	EXPECT_EMPTY(d);
	CHECK_EQ(ep_get(dc, 1, "held"), 0);
}

/* RECEIVEs are served in submission order, each by the first message its filter takes. */
static void t_receive_order(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), y = ep_open(dc, 2, NULL);
	uint64_t tok[8];
	struct comp c[8];

	for (int i = 0; i < 4; i++)
		tok[i] = A_RECV(f, DVK_ANY, 0);
	tok[4] = A_RECV(f, 2, 0);	/* only y */
	tok[5] = A_RECV(f, DVK_ANY, 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 6);
	for (int i = 1; i <= 5; i++)
		SEND_NUM(x, 0, i);
	SEND_NUM(y, 0, 9);
	REAP_N(f, c, 6);
	for (int k = 0; k < 4; k++) {
		CHECK_COMP(&c[k], tok[k], DVK_OP_RECEIVE, 0);
		CHECK_EQ(comp_num(&c[k]), k + 1);
	}
	CHECK_COMP(&c[4], tok[5], DVK_OP_RECEIVE, 0);
	CHECK_EQ(comp_num(&c[4]), 5);
	CHECK_COMP(&c[5], tok[4], DVK_OP_RECEIVE, 0);
	CHECK_EQ(comp_num(&c[5]), 9);
	CHECK_EQ(c[5].c.msg.peer, 2);
	comps_free(c, 6);
	EXPECT_EMPTY(f);
}

/* Blocking and submitted receives on one file share one order: call order. */
static void t_mixed_receives(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	struct thread_call t = { .fd = f, .peer = DVK_ANY };
	uint64_t tok;

	/* A blocking receive waits first, a submitted one second. */
	thread_start(&t, thread_receive);
	WAIT_EP(dc, 0, "receivers", 1);
	tok = A_RECV(f, DVK_ANY, 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 2);
	SEND_NUM(x, 0, 1);
	SEND_NUM(x, 0, 2);
	SEND_NUM(x, 0, 3);
	CHECK_RC(thread_join(&t), 0);
	CHECK_EQ(t.got, 1);
	EXPECT_RECV_NUM(f, tok, 1, 2);
	/* The third waits queued; a submitted receive takes it at once. */
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	EXPECT_RECV_NUM(f, A_RECV(f, DVK_ANY, 0), 1, 3);

	/* Now the other way round: submitted first, blocking second. */
	tok = A_RECV(f, DVK_ANY, 0);
	thread_start(&t, thread_receive);
	WAIT_EP(dc, 0, "receivers", 2);
	SEND_NUM(x, 0, 4);
	SEND_NUM(x, 0, 5);
	CHECK_RC(thread_join(&t), 0);
	CHECK_EQ(t.got, 5);
	EXPECT_RECV_NUM(f, tok, 1, 4);
	EXPECT_NONE(f);
	EXPECT_EMPTY(f);
}

/* A blocking send from a file whose submitted sends are held waits behind them. */
static void t_mixed_sends(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	struct thread_call t = { .fd = f, .peer = 1, .num = 12 };
	uint64_t t11, t13;

	fill_queue(x, 1, 1);
	t11 = A_SEND_NUM(f, 1, 11);
	thread_start(&t, thread_send);
	WAIT_EP(dc, 1, "held", 2);
	t13 = A_SEND_NUM(f, 1, 13);
	CHECK_EQ(ep_get(dc, 1, "held"), 3);
	for (int i = 1; i <= QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, i);
	EXPECT_DONE(f, t11, DVK_OP_SEND, 0);
	CHECK_RC(thread_join(&t), 0);
	EXPECT_DONE(f, t13, DVK_OP_SEND, 0);
	EXPECT_NUM(d, DVK_ANY, 11);
	EXPECT_NUM(d, DVK_ANY, 12);
	EXPECT_NUM(d, DVK_ANY, 13);
	EXPECT_EMPTY(d);
	EXPECT_NONE(f);
}

/* A server that, holding the request, first sends the caller a plain message, then answers. */
static void message_then_answer(void *p)
{
	struct serve_arg *a = p;
	struct dvk_msg req;
	uint64_t n;

	CHECK_RC(recv_num(a->fd, DVK_ANY, 0, SOON, &n, &req), 0);
	CHECK_EQ(req.flags, DVK_MSG_REQUEST);
	CHECK_RC(send_num(a->fd, req.peer, 77, 0, SOON), 0);
	CHECK_RC(answer(a->fd, &req, n), 0);
}

/*
 * A blocking SENDREC on a file with a RECEIVE submitted: the reply goes to the blocking call,
 * a plain message meanwhile to the submitted receive.
 */
static void t_mixed_sendrec(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL);
	struct serve_arg a = { .fd = ep_open(dc, 1, NULL), .count = 1, .ids = -1 };
	uint64_t tok, r = ~0ull, n = 21;
	struct dvk_msg rep;
	pid_t pid;

	tok = A_RECV(f, DVK_ANY, 0);
	pid = SPAWN(message_then_answer, &a, a.fd);
	dev_close(a.fd);
	CHECK_RC(msendrec(f, 1, (int32_t)n, &n, sizeof(n), &r, sizeof(r), SOON, &rep), 0);
	CHECK_EQ(rep.flags, DVK_MSG_REPLY);
	CHECK_EQ(rep.type, REPLY_TYPE(21));
	CHECK_EQ(r, REPLY_NUM(21));
	CHECK_CHILD(pid);
	EXPECT_RECV_NUM(f, tok, 1, 77);
	EXPECT_QUIET(f);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
}

/* ====================================================================================== */
/* poll                                                                                    */
/* ====================================================================================== */

static void t_poll_readable(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	uint64_t tok;

	/* Before any SUBMIT, a queued message makes the file readable. */
	SEND_NUM(x, 0, 1);
	CHECK(poll_now(f) & POLLIN);
	EXPECT_NUM(f, DVK_ANY, 1);
	CHECK_EQ(poll_now(f), 0);
	/* A completion does. */
	tok = A_SEND_NUM(f, 1, 2);
	CHECK(poll_now(f) & POLLIN);
	CHECK(poll_now(f) & POLLIN);	/* polling takes nothing */
	EXPECT_DONE(f, tok, DVK_OP_SEND, 0);
	CHECK_EQ(poll_now(f), 0);
	/* Once the file has submitted, a queued message or notification alone does not. */
	SEND_NUM(x, 0, 3);
	CHECK_RC(mnotify(x, 0, 0, 1), 0);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	CHECK_EQ(poll_now(f), 0);
	/* A RECEIVE that takes it at once does; reaping clears it. */
	tok = A_RECV(f, DVK_ANY, 0);
	CHECK(poll_now(f) & POLLIN);
	EXPECT_DONE(f, tok, DVK_OP_RECEIVE, 0);	/* the notification */
	CHECK_EQ(poll_now(f), 0);
	tok = A_RECV(f, DVK_ANY, 0);
	EXPECT_RECV_NUM(f, tok, 1, 3);
	CHECK_EQ(poll_now(f), 0);
	/* A waiting RECEIVE does not; its completion does. Several, until all are reaped. */
	tok = A_RECV(f, DVK_ANY, 0);
	CHECK_EQ(poll_now(f), 0);
	SEND_NUM(x, 0, 4);
	CHECK(poll_now(f) & POLLIN);
	A_SEND_NUM(f, 1, 5);
	CHECK(poll_now(f) & POLLIN);
	{
		struct comp c[2];

		REAP_N(f, c, 2);
		CHECK_COMP(&c[0], tok, DVK_OP_RECEIVE, 0);
		comps_free(c, 2);
	}
	CHECK_EQ(poll_now(f), 0);
	EXPECT_NUM(x, DVK_ANY, 2);
	EXPECT_NUM(x, DVK_ANY, 5);
}

struct poll_thread {
	pthread_t th;
	_Atomic pid_t tid;
	int fd;
	int n;
	short revents;
	uint64_t took_ns;
};

static void *poll_in_thread(void *p)
{
	struct poll_thread *t = p;
	struct pollfd pf = { .fd = t->fd, .events = POLLIN };
	uint64_t t0 = now_ns();

	atomic_store(&t->tid, gettid_());
	t->n = poll(&pf, 1, 3 * LONG_MS);
	t->revents = pf.revents;
	t->took_ns = now_ns() - t0;
	return NULL;
}

/* A completion wakes a thread sleeping in poll() on the file. */
static void t_poll_wakes_thread(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), d = ep_open(dc, 2, NULL);
	struct poll_thread t = { .fd = f };
	uint64_t tok;

	/* By a message for a waiting RECEIVE... */
	tok = A_RECV(f, DVK_ANY, 0);
	REQUIRE(pthread_create(&t.th, NULL, poll_in_thread, &t) == 0);
	while (!atomic_load(&t.tid))
		sleep_ms(1);
	WAIT_SLEEPING(getpid(), atomic_load(&t.tid));
	SEND_NUM(x, 0, 1);
	CHECK(pthread_join(t.th, NULL) == 0);
	CHECK_EQ(t.n, 1);
	CHECK(t.revents & POLLIN);
	CHECK(t.took_ns < (uint64_t)LONG_MS * 1000000);
	EXPECT_RECV_NUM(f, tok, 1, 1);
	/* ...and by a held SEND that the receiver's drain admits. */
	fill_queue(x, 2, 10);
	tok = A_SEND_NUM(f, 2, 20);
	atomic_store(&t.tid, 0);
	REQUIRE(pthread_create(&t.th, NULL, poll_in_thread, &t) == 0);
	while (!atomic_load(&t.tid))
		sleep_ms(1);
	WAIT_SLEEPING(getpid(), atomic_load(&t.tid));
	EXPECT_NUM(d, DVK_ANY, 10);
	CHECK(pthread_join(t.th, NULL) == 0);
	CHECK_EQ(t.n, 1);
	CHECK(t.revents & POLLIN);
	EXPECT_DONE(f, tok, DVK_OP_SEND, 0);
}

/* ====================================================================================== */
/* REAP                                                                                    */
/* ====================================================================================== */

static void t_reap_eagain(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	uint64_t t0, tok;

	/* Never submitted; even without a buffer. */
	CHECK_RC(reap_rc(f, rbuf, rbuf_len, NULL), -EAGAIN);
	CHECK_RC(reap_rc(f, NULL, 0, NULL), -EAGAIN);
	/* Calls submitted but not complete: REAP does not wait for them. */
	tok = A_RECV(f, DVK_ANY, 0);
	fill_queue(x, 1, 1);
	A_SEND_NUM(f, 1, 9);
	t0 = now_ns();
	CHECK_RC(reap_rc(f, rbuf, rbuf_len, NULL), -EAGAIN);
	CHECK_RC(reap_rc(f, NULL, 0, NULL), -EAGAIN);
	CHECK(now_ns() - t0 < 500000000ull);
	SEND_NUM(x, 0, 1);
	EXPECT_RECV_NUM(f, tok, 1, 1);
	CHECK_RC(reap_rc(f, rbuf, rbuf_len, NULL), -EAGAIN);
}

/* Many completions of all kinds in one REAP: count and size right, records back to back. */
static void t_reap_many(void)
{
	enum { N = 60 };
	uint32_t dc = dc_new(4);
	uint32_t gx;
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, &gx);
	uint64_t tok[N];
	uint32_t len[N], total = 0;
	struct comp *c = calloc(N, sizeof(*c));
	struct dvk_reap r;
	int n = 0;

	REQUIRE(c);
	for (int i = 0; i < N; i++) {
		len[i] = 0;
		if (i % 5 == 4) {
			tok[i] = A_SEND_NUM(f, 3, i);		/* ENOENT */
		} else if (i % 5 == 3) {
			tok[i] = A_SEND_NUM(f, 1, i);		/* 0 */
			EXPECT_NUM(x, DVK_ANY, i);
		} else {
			unsigned char *p;

			len[i] = (uint32_t)(i * 37 % 301);
			p = pattern_new(len[i], i);
			CHECK_RC(msend(x, 0, 0, i, p, len[i], DVK_CALL_NONBLOCK, 0), 0);
			free(p);
			tok[i] = A_RECV(f, 1, gx);
		}
		total += REC(len[i]);
	}
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, rbuf_len, c, &n, N, &r), 0);
	CHECK_EQ(r.count, N);
	CHECK_EQ(r.size, total);
	CHECK_EQ(n, N);
	for (int i = 0; i < n; i++) {
		int want = i % 5 == 4 ? -ENOENT : 0;
		uint32_t op = i % 5 >= 3 ? DVK_OP_SEND : DVK_OP_RECEIVE;

		if (!CHECK_COMP(&c[i], tok[i], op, want) || op == DVK_OP_SEND)
			continue;
		CHECK_EQ(c[i].c.msg.type, i);
		CHECK_EQ(c[i].c.msg.size, len[i]);
		CHECKF(is_pattern(c[i].data, len[i], i), "payload of record %d", i);
	}
	comps_free(c, n);
	free(c);
	CHECK_RC(reap_rc(f, rbuf, rbuf_len, NULL), -EAGAIN);
}

/* Three completions with payloads of 100, 3 and 200 bytes, in that order. */
static void three_completions(int f, int x, uint64_t tok[3])
{
	static const uint32_t len[3] = { 100, 3, 200 };

	for (int i = 0; i < 3; i++) {
		unsigned char *p = pattern_new(len[i], 40 + i);

		CHECK_RC(msend(x, 0, 0, 40 + i, p, len[i], DVK_CALL_NONBLOCK, 0), 0);
		free(p);
		tok[i] = A_RECV(f, DVK_ANY, 0);
	}
}

static void check_three(const struct comp *c, int n, const uint64_t tok[3], int first)
{
	static const uint32_t len[3] = { 100, 3, 200 };

	for (int k = 0; k < n; k++) {
		int i = first + k;

		if (!CHECK_COMP(&c[k], tok[i], DVK_OP_RECEIVE, 0))
			continue;
		CHECK_EQ(c[k].c.msg.size, len[i]);
		CHECK_EQ(c[k].c.msg.type, 40 + i);
		CHECKF(is_pattern(c[k].data, len[i], 40 + i), "payload of completion %d", i);
	}
}

/* A buffer too small for the next record: EMSGSIZE with the size needed; nothing is lost. */
static void t_reap_emsgsize(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	uint64_t tok[3];
	struct dvk_reap r;
	struct comp c[3];
	int n = 0;

	three_completions(f, x, tok);
	CHECK_EQ(REC(100), HDR + 104);
	/* No room at all, without a buffer; one byte short; only the header's room. */
	CHECK_RC(reap_rc(f, NULL, 0, &r), -EMSGSIZE);
	CHECK_EQ(r.size, REC(100));
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, REC(100) - 1, c, &n, 3, &r), -EMSGSIZE);
	CHECK_EQ(r.size, REC(100));
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, HDR + 100, c, &n, 3, &r), -EMSGSIZE);
	CHECK_EQ(r.size, REC(100));
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, HDR, c, &n, 3, &r), -EMSGSIZE);
	CHECK_EQ(r.size, REC(100));
	CHECK_EQ(n, 0);
	CHECK(rbuf[0] == 0xa5);	/* nothing was written */
	/* Room for the first two but not the third: those two, and the third stays. */
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, REC(100) + REC(3) + REC(200) - 1, c, &n, 3,
			      &r), 0);
	CHECK_EQ(r.count, 2);
	CHECK_EQ(r.size, REC(100) + REC(3));
	CHECK_EQ(n, 2);
	check_three(c, n, tok, 0);
	comps_free(c, n);
	n = 0;
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, REC(200) - 8, c, &n, 3, &r), -EMSGSIZE);
	CHECK_EQ(r.size, REC(200));
	/* Exactly the size it asked for. */
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, REC(200), c, &n, 3, &r), 0);
	CHECK_EQ(r.count, 1);
	CHECK_EQ(r.size, REC(200));
	check_three(c, n, tok, 2);
	comps_free(c, n);
	EXPECT_NONE(f);
}

/* A request from a blocking caller in another process, received by a submitted RECEIVE. */
static pid_t request_into_completion(uint32_t dc, int f, int caller_fd, uint64_t num,
				     int want_rc, uint64_t *tok)
{
	struct call_arg a = { .fd = caller_fd, .dst = 0, .num = num, .want_rc = want_rc,
			      .want_type = REPLY_TYPE(num), .want_num = REPLY_NUM(num),
			      .ready = -1 };
	pid_t pid;

	*tok = A_RECV(f, DVK_ANY, 0);
	pid = SPAWN(client_call, &a, caller_fd);
	/* Taken: the receive leaves the waiting list and completes in one step. */
	WAIT_EP(dc, 0, "receivers", 0);
	return pid;
}

/*
 * A buffer the kernel cannot write: EFAULT, and nothing is lost; a later REAP gets every
 * completion, in order. A received request in a failed REAP is not owed yet.
 */
static void t_reap_efault(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), cfd = ep_open(dc, 2, NULL);
	uint64_t tok[3], rtok;
	void *ro = mmap(NULL, 1 << 16, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *edge = before_hole(REC(100) + 16);
	struct comp c[4];
	struct dvk_msg req;
	pid_t pid;

	REQUIRE(ro != MAP_FAILED);
	three_completions(f, x, tok);
	pid = request_into_completion(dc, f, cfd, 7, 0, &rtok);
	dev_close(cfd);
	{
		/* The last: room for the first record, then the hole. */
		void *bad[] = { NULL, bad_page(), KERNEL_ADDR, ro, edge };
		uint32_t size[] = { rbuf_len, rbuf_len, rbuf_len, 1 << 16, REC(100) + 4096 };

		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			int rc = reap_rc(f, bad[b], size[b], NULL);

			CHECKF(rc == -EFAULT, "REAP into %p: %s", bad[b], rcname(rc));
		}
	}
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
	CHECK(poll_now(f) & POLLIN);
	REAP_N(f, c, 4);
	check_three(c, 3, tok, 0);
	if (CHECK_COMP(&c[3], rtok, DVK_OP_RECEIVE, 0)) {
		req = c[3].c.msg;
		CHECK_EQ(req.flags, DVK_MSG_REQUEST);
		CHECK_EQ(comp_num(&c[3]), 7);
		/* Reaped now, it is owed: the caller gets the answer. */
		CHECK_EQ(ep_get(dc, 0, "owed"), 1);
		CHECK_RC(answer(f, &req, 7), 0);
	}
	comps_free(c, 4);
	CHECK_CHILD(pid);
	EXPECT_NONE(f);
}

/*
 * REAP with its struct dvk_reap in read-only memory fails with EFAULT (it cannot report what
 * it wrote); nothing may be lost by that either: a later REAP gets the completions, and a
 * request among them can still be answered.
 */
static void t_reap_struct_read_only(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), cfd = ep_open(dc, 2, NULL);
	struct dvk_reap r = { .buffer = (uintptr_t)rbuf, .size = rbuf_len };
	struct dvk_reap *ro = read_only_copy(&r, sizeof(r));
	uint64_t tsend, rtok;
	struct comp c[2];
	pid_t pid;
	int got;

	tsend = A_SEND_NUM(f, 1, 1);
	pid = request_into_completion(dc, f, cfd, 8, 0, &rtok);
	dev_close(cfd);
	CHECK_RC(dvk_ioctl(f, DVK_IOC_REAP, ro), -EFAULT);
	/* Both completions must still be there, at once. */
	got = 0;
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, rbuf_len, c, &got, 2, NULL), 0);
	if (got == 2) {
		CHECK_COMP(&c[0], tsend, DVK_OP_SEND, 0);
		CHECK_COMP(&c[1], rtok, DVK_OP_RECEIVE, 0);
		CHECK_RC(answer(f, &c[1].c.msg, 8), 0);
		CHECK_CHILD(pid);
	} else {
		tap_fail("the failed REAP consumed %d completion(s); the caller of the request "
			 "waits for a reply no one can give (owed %lld)", 2 - got,
			 ep_get(dc, 0, "owed"));
		kill_child(pid);
	}
	comps_free(c, got);
	EXPECT_NUM(x, DVK_ANY, 1);
}

/*
 * A request a submitted RECEIVE takes is owed once reaped: the server answers with
 * DVK_IOC_REPLY and the request id from the record, and the blocking caller gets the reply.
 * Before the REAP there is nothing to answer.
 */
static void t_reap_owed(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gc;
	int f = ep_open(dc, 0, NULL), cfd = ep_open(dc, 2, &gc);
	uint64_t tok, v = 1;
	struct comp c;
	pid_t pid;

	pid = request_into_completion(dc, f, cfd, 33, 0, &tok);
	dev_close(cfd);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
	CHECK_EQ(ep_get(dc, 0, "received"), 1);
	for (uint64_t id = 1; id < 4; id++)
		CHECK_RC(mreply(f, 2, gc, id, 0, &v, sizeof(v)), -EINVAL);
	c = EXPECT_ONE(f, tok, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_REQUEST);
	CHECK_EQ(c.c.msg.peer, 2);
	CHECK_EQ(c.c.msg.peer_gen, gc);
	CHECK(c.c.msg.request_id != 0);
	CHECK_EQ(comp_num(&c), 33);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_RC(answer(f, &c.c.msg, 33), 0);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
	/* Exactly once. */
	CHECK_RC(answer(f, &c.c.msg, 33), -EINVAL);
	comps_free(&c, 1);
	CHECK_CHILD(pid);
	EXPECT_NONE(f);
}

/* A file can call itself: SENDREC to its own endpoint, served by its own RECEIVE. */
static void t_sendrec_self(void)
{
	uint32_t dc = dc_new(4);
	uint32_t gf;
	int f = ep_open(dc, 0, &gf);
	uint64_t call, rtok;
	struct comp c[2];

	call = A_SENDREC_NUM(f, 0, 4);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	rtok = A_RECV(f, DVK_ANY, 0);
	REAP_N(f, c, 1);
	if (CHECK_COMP(&c[0], rtok, DVK_OP_RECEIVE, 0)) {
		CHECK_EQ(c[0].c.msg.flags, DVK_MSG_REQUEST);
		CHECK_EQ(c[0].c.msg.peer, 0);
		CHECK_EQ(c[0].c.msg.peer_gen, gf);
		CHECK_EQ(comp_num(&c[0]), 4);
		CHECK_RC(answer(f, &c[0].c.msg, 4), 0);
	}
	comps_free(c, 1);
	REAP_N(f, c, 1);
	if (CHECK_COMP(&c[0], call, DVK_OP_SENDREC, 0))
		CHECK_ANSWER(&c[0], 0, 4);
	comps_free(c, 1);
	EXPECT_NONE(f);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
}

/* ====================================================================================== */
/* CANCEL                                                                                  */
/* ====================================================================================== */

/* A cancelled RECEIVE never completes; the next message goes to the next receive. */
static void t_cancel_receive(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	uint64_t r1, r2, r3;

	r1 = A_RECV(f, DVK_ANY, 0);
	r2 = A_RECV(f, DVK_ANY, 0);
	r3 = A_RECV(f, 1, 0);
	CHECK_EQ(stat_now("calls"), calls + 3);
	CHECK_RC(cancel_rc(f, r1), 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 2);
	CHECK_EQ(stat_now("calls"), calls + 2);
	SEND_NUM(x, 0, 1);
	EXPECT_RECV_NUM(f, r2, 1, 1);
	CHECK_RC(cancel_rc(f, r3), 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	/* With none waiting, the next message is queued. */
	SEND_NUM(x, 0, 2);
	EXPECT_QUIET(f);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	EXPECT_NUM(f, DVK_ANY, 2);
	CHECK_RC(cancel_rc(f, r1), -ENOENT);
	CHECK_EQ(stat_now("calls"), calls);
}

/*
 * A cancelled SEND held on a full queue is never delivered; the sends around it keep their
 * order. Cancelling the first in line lets the next one go when room comes.
 */
static void t_cancel_held_send(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	long long messages = stat_now("messages"), calls = stat_now("calls");
	uint64_t tok[5];

	fill_queue(x, 1, 1);
	for (int i = 0; i < 5; i++)
		tok[i] = A_SEND_NUM(f, 1, 11 + i);
	CHECK_EQ(ep_get(dc, 1, "held"), 5);
	CHECK_RC(cancel_rc(f, tok[2]), 0);	/* in the middle */
	CHECK_RC(cancel_rc(f, tok[0]), 0);	/* the first in line */
	CHECK_EQ(ep_get(dc, 1, "held"), 3);
	CHECK_EQ(ep_get(dc, 1, "queued"), QLEN);
	CHECK_EQ(stat_now("messages"), messages + QLEN + 3);
	EXPECT_QUIET(f);
	EXPECT_NUM(d, DVK_ANY, 1);
	EXPECT_DONE(f, tok[1], DVK_OP_SEND, 0);
	for (int i = 2; i <= QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, i);
	EXPECT_NUM(d, DVK_ANY, 12);
	EXPECT_NUM(d, DVK_ANY, 14);
	EXPECT_NUM(d, DVK_ANY, 15);
	EXPECT_EMPTY(d);
	{
		struct comp c[2];

		REAP_N(f, c, 2);
		CHECK_COMP(&c[0], tok[3], DVK_OP_SEND, 0);
		CHECK_COMP(&c[1], tok[4], DVK_OP_SEND, 0);
		comps_free(c, 2);
	}
	EXPECT_NONE(f);
	CHECK_EQ(stat_now("messages"), messages);
	CHECK_EQ(stat_now("calls"), calls);
}

/* A SENDREC cancelled before the server received it (queued, or held) never reaches it. */
static void t_cancel_sendrec_unreceived(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	long long calls = stat_now("calls"), messages = stat_now("messages");
	uint64_t queued, held, later;

	queued = A_SENDREC_NUM(f, 1, 1);
	CHECK_EQ(ep_get(dc, 1, "queued"), 1);
	CHECK_RC(cancel_rc(f, queued), 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	EXPECT_EMPTY(s);
	/* Held behind a full queue. */
	fill_queue(x, 1, 100);
	held = A_SENDREC_NUM(f, 1, 2);
	later = A_SENDREC_NUM(f, 1, 3);
	CHECK_EQ(ep_get(dc, 1, "held"), 2);
	CHECK_RC(cancel_rc(f, held), 0);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	for (int i = 0; i < QLEN; i++)
		EXPECT_NUM(s, DVK_ANY, 100 + i);
	{
		struct dvk_msg req;
		uint64_t n;

		CHECK_RC(recv_num(s, DVK_ANY, 0, SOON, &n, &req), 0);
		CHECK_EQ(n, 3);
		CHECK_EQ(req.flags, DVK_MSG_REQUEST);
		CHECK_RC(answer(s, &req, 3), 0);
	}
	EXPECT_EMPTY(s);
	{
		struct comp c = EXPECT_ONE(f, later, DVK_OP_SENDREC, 0);

		CHECK_ANSWER(&c, 1, 3);
		comps_free(&c, 1);
	}
	EXPECT_QUIET(f);
	CHECK_EQ(ep_get(dc, 1, "replies_dropped"), 0);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(stat_now("messages"), messages);
}

/*
 * A SENDREC cancelled after the server received it: CANCEL returns 0, the server still owes
 * the reply, which is accepted and dropped; no completion comes.
 */
static void t_cancel_sendrec_received(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls"), messages = stat_now("messages");
	struct dvk_msg req;
	uint64_t tok, n;

	tok = A_SENDREC_NUM(f, 1, 5);
	CHECK_RC(recv_num(s, DVK_ANY, 0, SOON, &n, &req), 0);
	CHECK_EQ(n, 5);
	CHECK_EQ(ep_get(dc, 1, "owed"), 1);
	CHECK_RC(cancel_rc(f, tok), 0);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	CHECK_EQ(stat_now("calls"), calls);
	CHECK_EQ(ep_get(dc, 1, "owed"), 1);
	CHECK_RC(answer(s, &req, 5), 0);
	CHECK_EQ(ep_get(dc, 1, "owed"), 0);
	CHECK_EQ(ep_get(dc, 1, "replies_dropped"), 1);
	EXPECT_QUIET(f);
	EXPECT_EMPTY(f);
	CHECK_RC(cancel_rc(f, tok), -ENOENT);
	CHECK_EQ(stat_now("messages"), messages);
}

/*
 * The same with a server that receives through a submitted RECEIVE: the caller cancels while
 * the request waits in the server's completions; the server reaps it, answers (0), and the
 * reply is dropped.
 */
static void t_cancel_sendrec_in_completion(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	uint64_t call, rtok;
	struct comp c;

	rtok = A_RECV(s, DVK_ANY, 0);
	call = A_SENDREC_NUM(f, 1, 6);
	CHECK_EQ(ep_get(dc, 1, "receivers"), 0);
	CHECK_RC(cancel_rc(f, call), 0);
	c = EXPECT_ONE(s, rtok, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c.c.msg.flags, DVK_MSG_REQUEST);
	CHECK_EQ(comp_num(&c), 6);
	CHECK_RC(answer(s, &c.c.msg, 6), 0);
	CHECK_EQ(ep_get(dc, 1, "replies_dropped"), 1);
	comps_free(&c, 1);
	EXPECT_QUIET(f);
	CHECK_EQ(stat_now("calls"), calls);
}

/* CANCEL of a call that completed: EALREADY, and its completion is reaped as it was. */
static void t_cancel_completed(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), s = ep_open(dc, 2, NULL);
	uint64_t tsend, trecv, tcall, tfail;
	struct dvk_msg req;
	struct comp c[4];
	uint64_t n;

	tsend = A_SEND_NUM(f, 1, 1);
	SEND_NUM(x, 0, 2);
	trecv = A_RECV(f, DVK_ANY, 0);
	tcall = A_SENDREC_NUM(f, 2, 3);
	CHECK_RC(recv_num(s, DVK_ANY, 0, SOON, &n, &req), 0);
	CHECK_RC(answer(s, &req, 3), 0);
	tfail = A_SEND_NUM(f, 3, 4);
	for (int twice = 0; twice < 2; twice++) {
		CHECK_RC(cancel_rc(f, tsend), -EALREADY);
		CHECK_RC(cancel_rc(f, trecv), -EALREADY);
		CHECK_RC(cancel_rc(f, tcall), -EALREADY);
		CHECK_RC(cancel_rc(f, tfail), -EALREADY);
	}
	REAP_N(f, c, 4);
	CHECK_COMP(&c[0], tsend, DVK_OP_SEND, 0);
	if (CHECK_COMP(&c[1], trecv, DVK_OP_RECEIVE, 0))
		CHECK_EQ(comp_num(&c[1]), 2);
	if (CHECK_COMP(&c[2], tcall, DVK_OP_SENDREC, 0))
		CHECK_ANSWER(&c[2], 2, 3);
	CHECK_COMP(&c[3], tfail, DVK_OP_SEND, -ENOENT);
	comps_free(c, 4);
	/* Reaped, they are gone. */
	CHECK_RC(cancel_rc(f, tsend), -ENOENT);
	CHECK_RC(cancel_rc(f, tcall), -ENOENT);
	EXPECT_NUM(x, DVK_ANY, 1);
	EXPECT_EMPTY(f);
	CHECK_EQ(ep_get(dc, 2, "replies_dropped"), 0);
}

/* CANCEL of a token this file never gave, or no longer has: ENOENT. */
static void t_cancel_unknown(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), g = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	uint64_t reaped, gtok, live;

	CHECK_RC(cancel_rc(f, 0), -ENOENT);
	CHECK_RC(cancel_rc(f, 1), -ENOENT);
	CHECK_RC(cancel_rc(f, ~0ull), -ENOENT);
	reaped = A_SEND_NUM(f, 2, 1);
	EXPECT_DONE(f, reaped, DVK_OP_SEND, 0);
	CHECK_RC(cancel_rc(f, reaped), -ENOENT);
	/* Another file's waiting call is out of reach, whatever its token. */
	for (int i = 0; i < 3; i++)
		gtok = A_RECV(g, DVK_ANY, 0);
	live = A_RECV(f, 1, 0);
	CHECK(gtok != live);
	CHECK_RC(cancel_rc(f, gtok), -ENOENT);
	CHECK_RC(cancel_rc(f, live + 1000), -ENOENT);
	CHECK_EQ(ep_get(dc, 1, "receivers"), 3);
	CHECK_RC(cancel_rc(f, live), 0);
	CHECK_RC(cancel_rc(f, live), -ENOENT);
	CHECK_RC(cancel_rc(g, gtok), 0);
	CHECK_EQ(ep_get(dc, 1, "receivers"), 2);
	EXPECT_NUM(x, DVK_ANY, 1);
}

/* ====================================================================================== */
/* Remote endpoints: submitted calls through the node's proxy                              */
/* ====================================================================================== */

#define R_EP 5
#define R_GEN 7
#define R_NODE 2

/* Drains exactly one record (waiting for it); returns its header, its payload in *data. */
static struct dvk_proxy_msg drain_one_at(const char *file, int line, int px, void *data,
					 uint32_t cap)
{
	uint32_t len = (uint32_t)px_record_size(max_payload) * 2;
	unsigned char *buf = malloc(len);
	struct dvk_proxy_msg h = { 0 };
	struct dvk_proxy_batch b;
	char why[256];
	int rc;

	REQUIRE(buf);
	rc = px_drain(px, buf, len, 0, SOON, &b);
	if (rc || b.count != 1 || !px_record_check(buf, b.size, 0, max_payload, why, sizeof(why))) {
		tap_failed = 1;
		tap_diag_at(file, line, "drain: %s, %u records, %u bytes", rcname(rc), b.count,
			    b.size);
	} else {
		memcpy(&h, buf, sizeof(h));
		if (data)
			memcpy(data, buf + sizeof(h), h.size < cap ? h.size : cap);
	}
	free(buf);
	return h;
}

#define DRAIN_ONE(px, data, cap) drain_one_at(__FILE__, __LINE__, px, data, cap)

/* Injects one record; it must be taken. */
#define INJECT_ONE(px, h, payload) inject_one_at(__FILE__, __LINE__, px, h, payload)
static void inject_one_at(const char *file, int line, int px, struct dvk_proxy_msg h,
			  const void *payload)
{
	struct px_batch b = { 0 };
	struct dvk_proxy_batch r;
	int rc;

	px_batch_add(&b, &h, payload);
	rc = px_inject(px, b.buf, (uint32_t)b.len, &r);
	if (rc || r.count != 1 || r.error) {
		tap_failed = 1;
		tap_diag_at(file, line, "inject of kind %u: %s, count %u, error %s", h.kind,
			    rcname(rc), r.count, rcname(r.error));
	}
	px_batch_free(&b);
}

/*
 * Submitted calls to and from an endpoint of another node: a SEND completes once the node
 * holds it, a SENDREC with the reply or failure the proxy injects, a RECEIVE takes what the
 * proxy injects (a request reaped is answered back through the proxy); when the proxy goes,
 * the calls still waiting on the remote endpoint complete with EHOSTUNREACH.
 */
static void t_remote(void)
{
	uint32_t dc = dc_new(8), gf;
	int px = dev_open(), f;
	struct dvk_proxy_attach pa = { .node = 1 };
	struct dvk_remote ra = { .dc = dc, .endpoint = R_EP, .generation = R_GEN, .node = R_NODE };
	struct dvk_proxy_msg h;
	uint64_t tok, v, w;
	struct comp c[1];

	CHECK_RC(dvk_ioctl(px, DVK_IOC_PROXY_ATTACH, &pa), 0);
	CHECK_RC(dvk_ioctl(px, DVK_IOC_REMOTE_ADD, &ra), 0);
	f = ep_open(dc, 0, &gf);
	/* SEND: complete once queued for the proxy. */
	tok = A_SEND_NUM(f, R_EP, 1);
	EXPECT_DONE(f, tok, DVK_OP_SEND, 0);
	h = DRAIN_ONE(px, &v, 8);
	CHECK_EQ(h.kind, DVK_PROXY_MESSAGE);
	CHECK_EQ(h.src_gen, gf);
	CHECK_EQ(v, 1);
	/* SENDREC: complete with the injected reply... */
	tok = A_SENDREC_NUM(f, R_EP, 2);
	h = DRAIN_ONE(px, &v, 8);
	CHECK_EQ(h.kind, DVK_PROXY_REQUEST);
	CHECK_EQ(v, 2);
	EXPECT_QUIET(f);
	w = REPLY_NUM(2);
	INJECT_ONE(px, ((struct dvk_proxy_msg){ .kind = DVK_PROXY_REPLY, .dc = dc, .dst = 0,
						.dst_gen = gf, .src = R_EP, .src_gen = R_GEN,
						.type = REPLY_TYPE(2), .request_id = h.request_id,
						.size = 8 }), &w);
	c[0] = EXPECT_ONE(f, tok, DVK_OP_SENDREC, 0);
	CHECK_ANSWER(&c[0], R_EP, 2);
	CHECK_EQ(c[0].c.msg.peer_gen, R_GEN);
	CHECK_EQ(c[0].c.msg.request_id, h.request_id);
	comps_free(c, 1);
	/* ...or its injected failure. */
	tok = A_SENDREC_NUM(f, R_EP, 3);
	h = DRAIN_ONE(px, NULL, 0);
	INJECT_ONE(px, ((struct dvk_proxy_msg){ .kind = DVK_PROXY_FAIL, .dc = dc, .dst = 0,
						.dst_gen = gf, .src = R_EP, .src_gen = R_GEN,
						.request_id = h.request_id, .status = -ETIMEDOUT }),
		   NULL);
	EXPECT_DONE(f, tok, DVK_OP_SENDREC, -ETIMEDOUT);
	/* RECEIVE: an injected request, reaped and answered; the reply goes out. */
	tok = A_RECV(f, R_EP, R_GEN);
	v = 4;
	INJECT_ONE(px, ((struct dvk_proxy_msg){ .kind = DVK_PROXY_REQUEST, .dc = dc, .dst = 0,
						.src = R_EP, .src_gen = R_GEN, .type = 4,
						.request_id = 99, .size = 8 }), &v);
	c[0] = EXPECT_ONE(f, tok, DVK_OP_RECEIVE, 0);
	CHECK_EQ(c[0].c.msg.flags, DVK_MSG_REQUEST);
	CHECK_EQ(c[0].c.msg.request_id, 99);
	CHECK_EQ(comp_num(&c[0]), 4);
	CHECK_RC(answer(f, &c[0].c.msg, 4), 0);
	comps_free(c, 1);
	h = DRAIN_ONE(px, &v, 8);
	CHECK_EQ(h.kind, DVK_PROXY_REPLY);
	CHECK_EQ(h.request_id, 99);
	CHECK_EQ(v, REPLY_NUM(4));
	/* The proxy goes: a request it drained, one still queued, a RECEIVE from the remote. */
	{
		uint64_t want[3];
		struct comp e[3];

		want[0] = A_SENDREC_NUM(f, R_EP, 5);
		DRAIN_ONE(px, NULL, 0);
		want[1] = A_SENDREC_NUM(f, R_EP, 6);
		want[2] = A_RECV(f, R_EP, R_GEN);
		EXPECT_QUIET(f);
		dev_close(px);
		REAP_N(f, e, 3);
		for (int i = 0; i < 3; i++) {
			int k = 0;

			while (k < 3 && e[k].c.token != want[i])
				k++;
			if (k == 3)
				tap_fail("no completion for call %d", i);
			else
				CHECK_COMP(&e[k], want[i], i < 2 ? DVK_OP_SENDREC : DVK_OP_RECEIVE,
					   -EHOSTUNREACH);
		}
		comps_free(e, 3);
	}
	EXPECT_NONE(f);
}

/* ====================================================================================== */
/* Limits and teardown                                                                     */
/* ====================================================================================== */

/* DVK_ASYNC_MAX calls submitted and not reaped: SUBMIT fails with EAGAIN until room comes. */
static void t_async_max(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL);
	long long calls = stat_now("calls");
	struct dvk_submit s[3] = {
		sub_msg(DVK_OP_SEND, 1, 0, 1, &(uint64_t){ 1 }, 8),
		sub_recv(DVK_ANY, 0),
		sub_msg(DVK_OP_SENDREC, 1, 0, 1, &(uint64_t){ 1 }, 8),
	};
	struct comp *c = calloc(DVK_ASYNC_MAX, sizeof(*c));
	uint64_t first = 0, tok, waiting;
	struct dvk_reap r;
	int n = 0;

	REQUIRE(c);
	/* Completed calls count until reaped: sends to an endpoint that is not bound. */
	for (int i = 0; i < DVK_ASYNC_MAX - 1; i++) {
		struct dvk_submit e = sub_msg(DVK_OP_SEND, 3, 0, i, NULL, 0);
		int rc = submit_rc(f, &e);

		if (rc) {
			tap_fail("SUBMIT %d of %d: %s", i + 1, DVK_ASYNC_MAX, errname(-rc));
			break;
		}
		if (!first)
			first = e.token;
	}
	/* And calls still waiting. */
	waiting = A_RECV(f, 2, 0);
	CHECK_EQ(stat_now("calls"), calls + DVK_ASYNC_MAX);
	for (int i = 0; i < 3; i++)
		CHECKF(submit_rc(f, &s[i]) == -EAGAIN, "op %u beyond DVK_ASYNC_MAX", s[i].op);
	CHECK_EQ(stat_now("calls"), calls + DVK_ASYNC_MAX);
	EXPECT_EMPTY(x);
	/* Reaping one record makes room for one call. */
	CHECK_RC(reap_once_at(__FILE__, __LINE__, f, HDR, c, &n, 1, &r), 0);
	CHECK_EQ(r.count, 1);
	if (n == 1)
		CHECK_COMP(&c[0], first, DVK_OP_SEND, -ENOENT);
	comps_free(c, n);
	tok = SUBMIT_OK(f, s[2]);	/* a sendrec, queued at x */
	CHECK_RC(submit_rc(f, &s[1]), -EAGAIN);
	/* So does cancelling one. */
	CHECK_RC(cancel_rc(f, tok), 0);
	tok = SUBMIT_OK(f, s[0]);
	CHECK_RC(submit_rc(f, &s[0]), -EAGAIN);
	CHECK_RC(cancel_rc(f, waiting), 0);
	/* Reap them all (the last is the send to x): room again for everything. */
	n = 0;
	REAP_N(f, c, DVK_ASYNC_MAX - 1);
	for (int i = 0; i < DVK_ASYNC_MAX - 2; i++)
		if (!CHECK_COMP(&c[i], first + 1 + i, DVK_OP_SEND, -ENOENT))
			break;
	CHECK_COMP(&c[DVK_ASYNC_MAX - 2], tok, DVK_OP_SEND, 0);
	comps_free(c, DVK_ASYNC_MAX - 1);
	CHECK_EQ(stat_now("calls"), calls);
	for (int i = 0; i < 3; i++) {
		tok = SUBMIT_OK(f, s[i]);
		if (i == 1)
			CHECK_RC(cancel_rc(f, tok), 0);
	}
	free(c);
	EXPECT_NUM(x, DVK_ANY, 1);
}

/*
 * The file F holds every kind of call when it goes: SENDs held at D, RECEIVEs waiting, a
 * SENDREC the server S received and one queued at S, and unreaped completions: a send that
 * went to E, a send that failed, and a request from caller C taken by a RECEIVE. The holder
 * (a child) closes F, or is killed. Every peer gets a definite outcome: C gets ESRCH, D never
 * sees the held sends, S's queued request is withdrawn and its reply to the other is
 * dropped, E keeps what F sent; every counter goes back.
 */
enum { D_EP = 1, X_EP = 2, S_EP = 3, E_EP = 4, F_EP = 5, C_EP = 6 };

struct holder_arg {
	int f, to_holder, to_parent;
	bool kill;	/* wait to be killed instead of closing F */
};

static void holder(void *p)
{
	struct holder_arg *a = p;

	for (int i = 0; i < 3; i++)
		A_SEND_NUM(a->f, D_EP, 100 + i);	/* held: D's queue is full */
	A_SEND_NUM(a->f, E_EP, 200);			/* goes: a completion */
	A_SEND_NUM(a->f, 7, 300);			/* not bound: a completion */
	A_RECV(a->f, DVK_ANY, 0);			/* will take C's request */
	put_byte(a->to_parent, 'A');
	EXPECT_BYTE(a->to_holder, 'B');
	A_RECV(a->f, DVK_ANY, 0);			/* two waiting */
	A_RECV(a->f, E_EP, 0);
	A_SENDREC_NUM(a->f, S_EP, 400);			/* S will receive it */
	put_byte(a->to_parent, 'C');
	EXPECT_BYTE(a->to_holder, 'D');
	A_SENDREC_NUM(a->f, S_EP, 401);			/* queued at S */
	put_byte(a->to_parent, 'E');
	if (a->kill)
		linger();
	EXPECT_BYTE(a->to_holder, 'X');
	CHECK(close(a->f) == 0);
	put_byte(a->to_parent, 'Z');
	EXPECT_BYTE(a->to_holder, 'Q');
}

static void teardown_case(bool kill)
{
	uint32_t dc = dc_new(8);
	int d = ep_open(dc, D_EP, NULL), x = ep_open(dc, X_EP, NULL), s = ep_open(dc, S_EP, NULL);
	int e = ep_open(dc, E_EP, NULL), cfd = ep_open(dc, C_EP, NULL), to_h[2], to_p[2];
	struct holder_arg a = { .f = ep_open(dc, F_EP, NULL), .kill = kill };
	struct call_arg ca = { .fd = cfd, .dst = F_EP, .num = 500, .want_rc = -ESRCH,
			       .ready = -1 };
	long long calls = stat_now("calls"), messages;
	struct dvk_msg req;
	pid_t h, caller;
	uint64_t n;

	pipe_new(to_h);
	pipe_new(to_p);
	a.to_holder = to_h[0];
	a.to_parent = to_p[1];
	fill_queue(x, D_EP, 1);
	messages = stat_now("messages");
	h = SPAWN(holder, &a, a.f);
	dev_close(a.f);
	EXPECT_BYTE(to_p[0], 'A');
	CHECK_EQ(ep_get(dc, D_EP, "held"), 3);
	caller = SPAWN(client_call, &ca, cfd);
	dev_close(cfd);
	WAIT_EP(dc, F_EP, "receivers", 0);	/* C's request was taken */
	put_byte(to_h[1], 'B');
	EXPECT_BYTE(to_p[0], 'C');
	CHECK_RC(recv_num(s, DVK_ANY, 0, SOON, &n, &req), 0);
	CHECK_EQ(n, 400);
	put_byte(to_h[1], 'D');
	EXPECT_BYTE(to_p[0], 'E');
	CHECK_EQ(ep_get(dc, S_EP, "queued"), 1);
	CHECK_EQ(ep_get(dc, S_EP, "owed"), 1);
	CHECK_EQ(ep_get(dc, F_EP, "receivers"), 2);
	CHECK_EQ(ep_get(dc, F_EP, "calls"), 2);
	/* 3 held + 2 sent + 3 receives + 2 sendrecs, and C's blocking sendrec. */
	CHECK_EQ(stat_now("calls"), calls + 11);
	if (kill) {
		kill_child(h);
	} else {
		put_byte(to_h[1], 'X');
		EXPECT_BYTE(to_p[0], 'Z');
	}
	WAIT_UNBOUND(dc, F_EP);
	CHECK_CHILD(caller);
	WAIT_STAT("calls", calls);
	/* D: the held sends are gone, its own queue is as it was. */
	CHECK_EQ(ep_get(dc, D_EP, "held"), 0);
	for (int i = 0; i < QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, 1 + i);
	EXPECT_EMPTY(d);
	/* S: the queued request was withdrawn; the received one is answered and dropped. */
	CHECK_EQ(ep_get(dc, S_EP, "queued"), 0);
	EXPECT_EMPTY(s);
	CHECK_RC(answer(s, &req, 400), 0);
	CHECK_EQ(ep_get(dc, S_EP, "replies_dropped"), 1);
	CHECK_EQ(ep_get(dc, S_EP, "owed"), 0);
	/* E keeps what F sent before it went. */
	EXPECT_NUM(e, DVK_ANY, 200);
	EXPECT_EMPTY(e);
	CHECK_EQ(stat_now("messages"), messages - QLEN);
	if (!kill) {
		put_byte(to_h[1], 'Q');
		CHECK_CHILD(h);
	}
}

static void t_close_teardown(void)
{
	teardown_case(false);
}

static void t_kill_teardown(void)
{
	teardown_case(true);
}

/* Closing a copy of the file (a dup, a forked child's) leaves its calls alone. */
static void closer(void *p)
{
	CHECK(close(*(int *)p) == 0);
}

static void t_close_copy(void)
{
	uint32_t dc = dc_new(4);
	int f = ep_open(dc, 0, NULL), d = ep_open(dc, 1, NULL), x = ep_open(dc, 2, NULL);
	uint64_t r, sd, done;
	int copy;

	fill_queue(x, 1, 1);
	r = A_RECV(f, DVK_ANY, 0);
	sd = A_SEND_NUM(f, 1, 10);
	done = A_SEND_NUM(f, 2, 20);
	copy = dup(f);
	REQUIRE(copy >= 0);
	CHECK(close(copy) == 0);
	CHECK_CHILD(SPAWN(closer, &f, f));
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	EXPECT_DONE(f, done, DVK_OP_SEND, 0);
	SEND_NUM(x, 0, 30);
	EXPECT_RECV_NUM(f, r, 2, 30);
	CHECK_RC(cancel_rc(f, sd), 0);
	EXPECT_NUM(x, DVK_ANY, 20);
	for (int i = 0; i < QLEN; i++)
		EXPECT_NUM(d, DVK_ANY, 1 + i);
	EXPECT_EMPTY(d);
}

/*
 * Four threads submit, cancel and reap on one file at once. Every call ends exactly once:
 * cancelled (0) and never completed, or completed and reaped once (EALREADY, or ENOENT once
 * another thread reaped it). Every send that was not cancelled is received exactly once.
 */
#define TH_N 4
#define TH_ITERS 300
#define TH_CALLS (TH_N * TH_ITERS * 2 + 64)

enum { ST_NONE, ST_SUBMITTED, ST_CANCELLED, ST_ALREADY, ST_GONE };

struct th_shared {
	int f;
	_Atomic int state[TH_CALLS];	/* by token */
	_Atomic int reaped[TH_CALLS];	/* times reaped */
	_Atomic int is_send[TH_CALLS];
	_Atomic uint64_t send_of[TH_CALLS];	/* the number a send carried */
	_Atomic int received[TH_N * TH_ITERS + 1];	/* times each number was received */
	_Atomic int stop;
};

static struct th_shared *ths;

/* One REAP of up to 40 records, counted in ths; returns how many, or -errno. */
static int th_reap_batch(void)
{
	static __thread unsigned char *buf;
	struct dvk_reap r;
	uint32_t len = REC(8) * 40;
	size_t off = 0;
	char why[256];
	int rc;

	if (!buf)
		buf = malloc(len);
	REQUIRE(buf);
	rc = reap_rc(ths->f, buf, len, &r);
	if (rc)
		return rc;
	while (off < r.size) {
		size_t rec = cq_record_check(buf, r.size, off, max_payload, why, sizeof(why));
		struct dvk_completion c;

		if (!rec) {
			tap_fail("%s", why);
			return -EIO;
		}
		memcpy(&c, buf + off, sizeof(c));
		if (c.token >= TH_CALLS) {
			tap_fail("token %llu", (unsigned long long)c.token);
		} else {
			atomic_fetch_add(&ths->reaped[c.token], 1);
			if (c.op == DVK_OP_RECEIVE && c.result == 0 && c.msg.size == 8) {
				uint64_t v;

				memcpy(&v, buf + off + HDR, 8);
				if (v <= TH_N * TH_ITERS)
					atomic_fetch_add(&ths->received[v], 1);
			} else if (c.result != 0) {
				tap_fail("token %llu op %u: %s", (unsigned long long)c.token, c.op,
					 rcname(c.result));
			}
		}
		off += rec;
	}
	return (int)r.count;
}

/* Receives (blocking, without waiting) what this file queued to itself; counts it. */
static int th_drain_queue(void)
{
	int n = 0;
	uint64_t v;

	while (recv_num(ths->f, DVK_ANY, DVK_CALL_NONBLOCK, 0, &v, NULL) == 0) {
		if (v <= TH_N * TH_ITERS)
			atomic_fetch_add(&ths->received[v], 1);
		else
			tap_fail("received %llu", (unsigned long long)v);
		n++;
	}
	return n;
}

static void *th_worker(void *p)
{
	int id = (int)(intptr_t)p;
	uint64_t mine[16] = { 0 };
	unsigned seed = 12345u * (id + 1);

	for (int i = 0; i < TH_ITERS; i++) {
		uint64_t num = (uint64_t)id * TH_ITERS + i + 1;
		struct dvk_submit s = sub_msg(DVK_OP_SEND, 0, 0, (int32_t)num, &num, 8);
		struct dvk_submit r = sub_recv(DVK_ANY, 0);
		int rc;

		seed = seed * 1103515245u + 12345u;
		/* A send to this very file, and a receive, each maybe cancelled later. */
		rc = submit_rc(ths->f, &s);
		if (rc == 0 && s.token < TH_CALLS) {
			atomic_store(&ths->is_send[s.token], 1);
			atomic_store(&ths->send_of[s.token], num);
			atomic_store(&ths->state[s.token], ST_SUBMITTED);
			mine[i % 16] = s.token;
		} else if (rc != -EAGAIN) {
			tap_fail("SUBMIT SEND: %s, token %llu", rcname(rc),
				 (unsigned long long)s.token);
		}
		rc = submit_rc(ths->f, &r);
		if (rc == 0 && r.token < TH_CALLS) {
			atomic_store(&ths->state[r.token], ST_SUBMITTED);
			mine[(i + 8) % 16] = r.token;
		} else if (rc != -EAGAIN) {
			tap_fail("SUBMIT RECEIVE: %s", rcname(rc));
		}
		if ((seed >> 16) % 3 == 0) {
			uint64_t t = mine[(seed >> 8) % 16];

			rc = t ? cancel_rc(ths->f, t) : -ENOENT;
			if (t && rc == 0)
				atomic_store(&ths->state[t], ST_CANCELLED);
			else if (t && rc == -EALREADY)
				atomic_store(&ths->state[t], ST_ALREADY);
			else if (t && rc == -ENOENT && atomic_load(&ths->state[t]) == ST_SUBMITTED)
				atomic_store(&ths->state[t], ST_GONE);
			else if (t && rc != -ENOENT)
				tap_fail("CANCEL: %s", rcname(rc));
			if (t)
				mine[(seed >> 8) % 16] = 0;
		}
		if ((seed >> 20) % 2 == 0)
			th_reap_batch();
	}
	return NULL;
}

static void *th_reaper(void *p)
{
	(void)p;
	while (!atomic_load(&ths->stop)) {
		wait_readable(ths->f, 2);
		th_reap_batch();
	}
	return NULL;
}

static void t_threads(void)
{
	uint32_t dc = dc_new(4);
	pthread_t th[TH_N + 1];
	int bad = 0;

	ths = mmap(NULL, sizeof(*ths), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(ths != MAP_FAILED);
	ths->f = ep_open(dc, 0, NULL);
	REQUIRE(pthread_create(&th[TH_N], NULL, th_reaper, NULL) == 0);
	for (int i = 0; i < TH_N; i++)
		REQUIRE(pthread_create(&th[i], NULL, th_worker, (void *)(intptr_t)i) == 0);
	for (int i = 0; i < TH_N; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	/* End the receives still waiting; the sends they leave queued are received below. */
	for (uint64_t t = 1; t < TH_CALLS; t++) {
		int rc;

		if (atomic_load(&ths->state[t]) != ST_SUBMITTED || atomic_load(&ths->is_send[t]))
			continue;
		rc = cancel_rc(ths->f, t);
		if (rc == 0)
			atomic_store(&ths->state[t], ST_CANCELLED);
		else if (rc != -EALREADY && rc != -ENOENT)
			tap_fail("CANCEL %llu: %s", (unsigned long long)t, rcname(rc));
	}
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
	atomic_store(&ths->stop, 1);
	CHECK(pthread_join(th[TH_N], NULL) == 0);
	/* What is left: completions, and sends queued or held at this file. */
	for (int rounds = 0; rounds < 100000; rounds++) {
		int got = th_drain_queue(), rc;

		while ((rc = th_reap_batch()) > 0)
			got += rc;
		if (!got && ep_get(dc, 0, "held") == 0)
			break;
	}
	for (uint64_t t = 1; t < TH_CALLS && bad < 10; t++) {
		int st = atomic_load(&ths->state[t]), reaped = atomic_load(&ths->reaped[t]);

		if (st == ST_NONE)
			continue;
		if ((st == ST_CANCELLED && reaped) || (st != ST_CANCELLED && reaped != 1)) {
			tap_fail("token %llu: state %d, reaped %d times", (unsigned long long)t, st,
				 reaped);
			bad++;
		}
		if (atomic_load(&ths->is_send[t])) {
			uint64_t num = atomic_load(&ths->send_of[t]);
			int got = atomic_load(&ths->received[num]);

			if (got != (st == ST_CANCELLED ? 0 : 1)) {
				tap_fail("send %llu (token %llu, state %d) received %d times",
					 (unsigned long long)num, (unsigned long long)t, st, got);
				bad++;
			}
		}
	}
	EXPECT_NONE(ths->f);
}

/* ====================================================================================== */
/* The runner                                                                              */
/* ====================================================================================== */

static const struct test_case cases[] = {
	T(t_tokens, "SUBMIT returns a fresh token per call; completions name it"),
	T(t_submit_einval_op_flags, "SUBMIT: a bad op, flags (NONBLOCK but on a SEND) or reserved is EINVAL"),
	T(t_submit_einval_send_fields, "SUBMIT SEND/SENDREC: from, from_gen, kernel-set msg fields are EINVAL"),
	T(t_submit_einval_receive_fields, "SUBMIT RECEIVE: any msg field, or a generation without a source, is EINVAL"),
	T(t_submit_einval_notify_fields, "SUBMIT NOTIFY: bits 0, DVK_ANY, any other field or flag is EINVAL"),
	T(t_submit_emsgsize, "SUBMIT above max_payload fails with EMSGSIZE; max_payload goes both ways"),
	T(t_submit_efault_payload, "SUBMIT with a bad payload fails with EFAULT and submits nothing"),
	T(t_efault_arguments, "SUBMIT, REAP, CANCEL with bad argument pointers fail with EFAULT"),
	T(t_enotconn, "SUBMIT, REAP, CANCEL on an unbound file fail with ENOTCONN"),
	T(t_reserved_reap_cancel, "REAP and CANCEL with reserved set fail with EINVAL and change nothing"),
	T(t_send_enoent, "a SEND to an unbound endpoint or stale generation completes with ENOENT"),
	T(t_send_completes, "a SEND that fits completes with 0 at once; the message is delivered"),
	T(t_notify_local, "a NOTIFY to a local endpoint completes with 0 at once; the bits are pending"),
	T(t_notify_enoent, "a NOTIFY to an unbound endpoint or stale generation completes with ENOENT"),
	T(t_send_nonblock_full, "a NONBLOCK SEND to a full queue completes with EAGAIN at once, queues nothing"),
	T(t_send_nonblock_fits, "a NONBLOCK SEND that fits completes with 0 at once"),
	T(t_send_nonblock_held, "a NONBLOCK SEND behind held senders completes with EAGAIN at once"),
	T(t_receive_at_once, "a RECEIVE finding a message completes at once, payload byte-exact, padded"),
	T(t_receive_later, "a RECEIVE submitted first is completed by a later send"),
	T(t_receive_notify, "a RECEIVE completes with notifications, before queued messages"),
	T(t_sendrec_reply, "a SENDREC completes with the reply once a server process replies"),
	T(t_sendrec_enoent, "a SENDREC to an unbound endpoint fails with ENOENT, leaving nothing"),
	T(t_sendrec_server_killed, "the server killed: received, queued and held SENDRECs complete with ESRCH"),
	T(t_held_send_destination_gone, "SENDs held at a destination that unbinds complete with ESRCH"),
	T(t_receive_from_gone_esrch, "RECEIVE(from an incarnation) that unbinds completes with ESRCH"),
	T(t_receive_from_gone_enoent, "RECEIVE(from a gone incarnation) gets what it left, then ENOENT at once"),
	T(t_sendrec_64, "64 SENDRECs in flight on one file all complete with their own replies"),
	T(t_send_order_full_queue, "SENDs into a full queue complete in submission order and arrive in order"),
	T(t_receive_order, "RECEIVEs are served in submission order, by filter"),
	T(t_mixed_receives, "blocking and submitted RECEIVEs on one file are served in call order"),
	T(t_mixed_sends, "a blocking SEND waits behind the file's held submitted SENDs"),
	T(t_mixed_sendrec, "a blocking SENDREC gets its reply; a submitted RECEIVE the plain message"),
	T(t_poll_readable, "poll: once a file submitted, EPOLLIN exactly while completions wait"),
	T(t_poll_wakes_thread, "a completion wakes a thread sleeping in poll()"),
	T(t_reap_eagain, "REAP fails with EAGAIN at once when no completion waits"),
	T(t_reap_many, "one REAP takes many completions: count, size, records back to back"),
	T(t_reap_emsgsize, "REAP: EMSGSIZE with the size needed for the next record; nothing lost"),
	T(t_reap_efault, "REAP into a bad buffer fails with EFAULT; nothing is lost, order kept"),
	T(t_reap_struct_read_only, "REAP whose struct cannot be written back loses no completion"),
	T(t_reap_owed, "a request reaped is owed: REPLY with its id reaches the blocking caller"),
	T(t_sendrec_self, "a file SENDRECs itself and serves the request with its own RECEIVE"),
	T(t_cancel_receive, "CANCEL of a waiting RECEIVE: 0, no completion; the next receive gets the message"),
	T(t_cancel_held_send, "CANCEL of a held SEND: 0, never delivered; the others keep order"),
	T(t_cancel_sendrec_unreceived, "CANCEL of a SENDREC queued or held: 0; the server never sees it"),
	T(t_cancel_sendrec_received, "CANCEL of a SENDREC the server received: 0; its reply is dropped"),
	T(t_cancel_sendrec_in_completion, "CANCEL of a SENDREC in the server's completions: the reply is dropped"),
	T(t_cancel_completed, "CANCEL of a completed call: EALREADY; its completion is reaped as it was"),
	T(t_cancel_unknown, "CANCEL of an unknown, reaped, cancelled or another file's token: ENOENT"),
	T(t_remote, "submitted calls to and from a remote endpoint; the proxy closing ends them"),
	T(t_async_max, "DVK_ASYNC_MAX calls unreaped: SUBMIT fails with EAGAIN; REAP or CANCEL makes room"),
	T(t_close_teardown, "closing a file with every kind of call pending: peers get outcomes, nothing leaks"),
	T(t_kill_teardown, "SIGKILL of a process with every kind of call pending: the same"),
	T(t_close_copy, "closing a dup or a forked child's copy leaves the file's calls alone"),
	T(t_threads, "four threads submit, cancel and reap on one file: every call ends once", .timeout_s = 60),
};
#define N_CASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(int argc, char **argv)
{
	char header[200];
	struct dvk_version v;
	struct dvk_stats s;
	size_t len;

	if (!harness_probe(&v, &s))
		return 1;
	if (!(v.features & DVK_FEATURE_ASYNC)) {
		printf("Bail out! the module does not report DVK_FEATURE_ASYNC\n");
		return 1;
	}
	max_payload = v.max_payload;
	/* The reap buffer, with an inaccessible page right after it. */
	len = ((size_t)REC(max_payload) + (size_t)DVK_ASYNC_MAX * REC(8) + 4095) / 4096 * 4096;
	rbuf = mmap(NULL, len + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(rbuf != MAP_FAILED);
	REQUIRE(mprotect(rbuf + len, 4096, PROT_NONE) == 0);
	rbuf_len = (uint32_t)len;
	snprintf(header, sizeof(header), "max_payload %u, DVK_ASYNC_MAX %d, case queues of %d",
		 max_payload, DVK_ASYNC_MAX, QLEN);
	return run_cases(cases, N_CASES, argc, argv, header);
}
