// SPDX-License-Identifier: GPL-2.0
/*
 * proxy: TAP tests of the proxy role of /dev/dvk (DVK_IOC_PROXY_ATTACH, DVK_IOC_REMOTE_ADD,
 * DVK_IOC_REMOTE_DEL, DVK_IOC_PROXY_DRAIN, DVK_IOC_PROXY_INJECT) against "The proxy role" in
 * include/uapi/linux/dvk.h and docs/semantics.md.
 *
 *   proxy [SUBSTRING...]    run every case, or those whose name contains one of the arguments
 *
 * The test plays the node agent by hand: it attaches a file as the node's proxy, registers
 * remote endpoints (mostly endpoint R_EP of a DC, generation R_GEN, on node R_NODE), drives
 * local endpoints in forked processes, and drains and injects records itself.
 *
 * Like uapi.c, each case runs in a forked process of its own (its own process group, with a
 * watchdog), so a crash or hang fails that case only; helpers synchronise through pipes, by
 * polling /proc/dvk/endpoints and by waiting until a process sleeps in the kernel, never by
 * sleeping alone. After every case the runner kills what is left of it (which closes the
 * proxy file), destroys the DCs it used and checks that every counter in /proc/dvk/stats,
 * remotes included, is back to its value before the case.
 */

#include "harness.h"

#include <grp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* The loaded module's limits, read by the runner before it forks the cases. */
static uint32_t max_payload, queue_length, queue_bytes;

/* The DC ids a case may use: dc_base .. dc_base + DCS_PER_CASE - 1; the runner destroys them. */
#define DCS_PER_CASE 8
#define DC_FIRST 30000

const struct harness_config harness_config = {
	.dc_prefix = "proxy",
	.dc_first = DC_FIRST,
	.dcs_per_case = DCS_PER_CASE,
	.dc_queue_length = 0,
};

/* The remote endpoint most cases register, and the node ids. */
#define R_EP 5
#define R_GEN 7
#define R_NODE 2
#define MY_NODE 1

#define HDR ((uint32_t)sizeof(struct dvk_proxy_msg))
#define REC(len) ((uint32_t)px_record_size(len))

/* A buffer for drains: room for many records and for the largest one. */
static unsigned char *dbuf;
static uint32_t dbuf_len;

/* ====================================================================================== */
/* Local endpoints and their calls; each returns 0 or -errno.                              */
/* ====================================================================================== */

static int mreply(int fd, const struct dvk_msg *req, int32_t type, const void *p, uint32_t len)
{
	struct dvk_reply r = {
		.msg = { .peer = req->peer, .peer_gen = req->peer_gen, .type = type,
			 .request_id = req->request_id, .payload = (uintptr_t)p, .size = len },
	};

	return dvk_ioctl(fd, DVK_IOC_REPLY, &r);
}

/* Numbered messages: the number is both the type and an 8-byte payload. */
static int send_num(int fd, uint32_t dst, uint32_t gen, uint64_t n, uint32_t flags,
		    uint64_t deadline)
{
	return msend(fd, dst, gen, (int32_t)n, &n, sizeof(n), flags, deadline);
}

/* Expects nothing receivable right now. */
#define EXPECT_EMPTY(fd) CHECK_RC(mrecv(fd, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), \
				  -EAGAIN)

/* Receives one message and checks it came from (src, src_gen) with flags, type and pattern. */
#define EXPECT_MSG(fd, src, src_gen, flags, type, len, seed)                              \
	expect_msg_at(__FILE__, __LINE__, fd, src, src_gen, flags, type, len, seed, NULL)

static void expect_msg_at(const char *file, int line, int fd, uint32_t src, uint32_t src_gen,
			  uint32_t flags, int32_t type, uint32_t len, unsigned seed,
			  struct dvk_msg *out)
{
	unsigned char *buf = malloc(max_payload);
	struct dvk_msg m;
	int rc;

	REQUIRE(buf);
	rc = mrecv(fd, DVK_ANY, 0, buf, max_payload, 0, SOON, &m);
	if (rc) {
		tap_failed = 1;
		tap_diag_at(file, line, "receive: %s", errname(-rc));
	} else if (m.peer != src || m.peer_gen != src_gen || m.flags != flags || m.type != type ||
		   m.size != len || !is_pattern(buf, len, seed) || m.bits != 0 ||
		   (flags != DVK_MSG_REQUEST && m.request_id != 0)) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "received from %u gen %u flags 0x%x type %d size %u bits 0x%x id %llu "
			    "(payload %s); want from %u gen %u flags 0x%x type %d size %u",
			    m.peer, m.peer_gen, m.flags, m.type, m.size, m.bits,
			    (unsigned long long)m.request_id,
			    is_pattern(buf, m.size < len ? m.size : len, seed) ? "ok" : "wrong",
			    src, src_gen, flags, type, len);
	}
	if (out)
		*out = m;
	free(buf);
}

/* ====================================================================================== */
/* The proxy's calls                                                                       */
/* ====================================================================================== */

static int attach_rc(int fd, uint32_t node)
{
	struct dvk_proxy_attach a = { .node = node };

	return dvk_ioctl(fd, DVK_IOC_PROXY_ATTACH, &a);
}

/* Opens a file and attaches it as the proxy; the case ends if that fails. */
static int px_open(void)
{
	int fd = dev_open(), rc = attach_rc(fd, MY_NODE);

	if (rc) {
		tap_fail("attaching the proxy: %s", errname(-rc));
		_exit(1);
	}
	return fd;
}

static int remote_add(int px, uint32_t dc, uint32_t ep, uint32_t gen, uint32_t node)
{
	struct dvk_remote r = { .dc = dc, .endpoint = ep, .generation = gen, .node = node };

	return dvk_ioctl(px, DVK_IOC_REMOTE_ADD, &r);
}

static int remote_del(int px, uint32_t dc, uint32_t ep, uint32_t gen, uint32_t flags)
{
	struct dvk_remote r = { .dc = dc, .endpoint = ep, .generation = gen, .flags = flags };

	return dvk_ioctl(px, DVK_IOC_REMOTE_DEL, &r);
}

/* Registers (dc, R_EP) generation R_GEN on node R_NODE; the case ends if that fails. */
static void remote_std(int px, uint32_t dc)
{
	int rc = remote_add(px, dc, R_EP, R_GEN, R_NODE);

	if (rc) {
		tap_fail("registering dc %u endpoint %u as remote: %s", dc, R_EP, errname(-rc));
		_exit(1);
	}
}

/* poll() on a file with timeout 0: its revents. */
static short poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

/* ---- drained records ---- */

/* A drained record: its header, and a malloc'd copy of its payload. */
struct rec {
	struct dvk_proxy_msg h;
	unsigned char *data;
};

static void recs_free(struct rec *r, int n)
{
	for (int i = 0; i < n; i++) {
		free(r[i].data);
		r[i].data = NULL;
	}
}

/*
 * Checks a drained batch (buf holds b->size bytes of records the kernel wrote) and appends
 * copies of its records to out[*n..max); *n counts every record, even beyond max.
 */
#define PARSE(buf, b, out, n, max) parse_at(__FILE__, __LINE__, buf, b, out, n, max)
static void parse_at(const char *file, int line, const unsigned char *buf,
		     const struct dvk_proxy_batch *b, struct rec *out, int *n, int max)
{
	size_t off = 0;
	uint32_t count = 0;
	char why[300];

	while (off < b->size) {
		size_t len = px_record_check(buf, b->size, off, max_payload, why, sizeof(why));

		if (!len) {
			tap_failed = 1;
			tap_diag_at(file, line, "drained batch of %u bytes, %u records: %s", b->size,
				    b->count, why);
			return;
		}
		if (out && *n < max) {
			memcpy(&out[*n].h, buf + off, HDR);
			out[*n].data = malloc(out[*n].h.size ? out[*n].h.size : 1);
			REQUIRE(out[*n].data);
			memcpy(out[*n].data, buf + off + HDR, out[*n].h.size);
		}
		(*n)++;
		count++;
		off += len;
	}
	if (count != b->count || count == 0) {
		tap_failed = 1;
		tap_diag_at(file, line, "drain reported %u records in %u bytes; found %u", b->count,
			    b->size, count);
	}
}

/*
 * One drain into dbuf (first `len` bytes, prefilled so that padding left unwritten shows);
 * checks the batch and appends its records to out[*n..max). Returns 0 or -errno.
 */
static int drain_once(int px, uint32_t len, uint32_t flags, uint64_t deadline, struct rec *out,
		      int *n, int max, struct dvk_proxy_batch *res)
{
	struct dvk_proxy_batch b;
	int rc;

	memset(dbuf, 0xa5, len);
	rc = px_drain(px, dbuf, len, flags, deadline, &b);
	if (res)
		*res = b;
	if (rc == 0) {
		if (b.size > len) {
			tap_fail("drain wrote %u bytes into %u", b.size, len);
			return rc;
		}
		PARSE(dbuf, &b, out, n, max);
	}
	return rc;
}

/* Drains until `want` records have come, or LONG_MS passed; returns how many came. */
#define DRAIN_N(px, out, want) drain_n_at(__FILE__, __LINE__, px, out, want)
static int drain_n_at(const char *file, int line, int px, struct rec *out, int want)
{
	uint64_t end = SOON;
	int n = 0;

	while (n < want) {
		int rc = drain_once(px, dbuf_len, 0, end, out, &n, want, NULL);

		if (rc) {
			tap_failed = 1;
			tap_diag_at(file, line, "drain after %d of %d records: %s", n, want,
				    errname(-rc));
			break;
		}
	}
	if (n != want) {
		tap_failed = 1;
		tap_diag_at(file, line, "drained %d records, want %d", n, want);
	}
	return n < want ? n : want;
}

/* Expects nothing to drain: NONBLOCK fails with EAGAIN, and poll() says not readable. */
#define EXPECT_NO_DRAIN(px)                                                               \
	do {                                                                              \
		struct rec extra_[4];                                                     \
		int n_extra_ = 0;                                                         \
		CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, extra_, &n_extra_, \
				    4, NULL), -EAGAIN);                                   \
		if (n_extra_)                                                             \
			tap_fail("drained %d unexpected records, the first of kind %u "    \
				 "from %u type %d", n_extra_, extra_[0].h.kind,            \
				 extra_[0].h.src, extra_[0].h.type);                       \
		recs_free(extra_, n_extra_ < 4 ? n_extra_ : 4);                           \
		CHECK_EQ(poll_now(px), 0);                                                \
	} while (0)

/* Checks a drained record's header against the expected one, field by field. */
#define CHECK_REC(r, kind_, dc_, dst_, dst_gen_, src_, src_gen_, type_)                   \
	do {                                                                              \
		const struct dvk_proxy_msg *h_ = &(r)->h;                                 \
		CHECK_EQ(h_->kind, kind_);                                                \
		CHECK_EQ(h_->dc, dc_);                                                    \
		CHECK_EQ(h_->dst, dst_);                                                  \
		CHECK_EQ(h_->dst_gen, dst_gen_);                                          \
		CHECK_EQ(h_->src, src_);                                                  \
		CHECK_EQ(h_->src_gen, src_gen_);                                          \
		CHECK_EQ(h_->type, type_);                                                \
	} while (0)

/* ---- injected records ---- */

/* A record from (src, src_gen) in dc to (dst, dst_gen). */
static struct dvk_proxy_msg rec_hdr(uint32_t kind, uint32_t dc, uint32_t dst, uint32_t dst_gen,
				    uint32_t src, uint32_t src_gen)
{
	return (struct dvk_proxy_msg){ .kind = kind, .dc = dc, .dst = dst, .dst_gen = dst_gen,
				       .src = src, .src_gen = src_gen };
}

/* Appends a MESSAGE from the usual remote endpoint to (dst, dst_gen): type, pattern payload. */
static void add_msg(struct px_batch *b, uint32_t dc, uint32_t dst, uint32_t dst_gen,
		    int32_t type, uint32_t len, unsigned seed)
{
	struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_MESSAGE, dc, dst, dst_gen, R_EP, R_GEN);
	unsigned char *p = pattern_new(len, seed);

	h.type = type;
	h.size = len;
	px_batch_add(b, &h, p);
	free(p);
}

/* Injects all of b and expects every record taken. */
#define INJECT_ALL(px, b) inject_expect_at(__FILE__, __LINE__, px, b, 0, (b)->count, (b)->len, 0)
/* Injects b from byte `from` and expects it to stop after `count` records, `size` bytes. */
#define INJECT_STOPS(px, b, from, count, size, error)                                     \
	inject_expect_at(__FILE__, __LINE__, px, b, from, count, size, error)

static void inject_expect_at(const char *file, int line, int px, const struct px_batch *b,
			     size_t from, uint32_t count, size_t size, int error)
{
	struct dvk_proxy_batch r;
	int rc = px_inject(px, b->buf + from, (uint32_t)(b->len - from), &r);

	if (rc || r.count != count || r.size != size || r.error != error) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "inject of %zu bytes: rc %s, count %u, size %u, error %s; want rc 0, "
			    "count %u, size %zu, error %s", b->len - from, rcname(rc), r.count,
			    r.size, rcname(r.error), count, size, rcname(error));
	}
}

/* ====================================================================================== */
/* Helper processes                                                                        */
/* ====================================================================================== */

/* ---- pipes ---- */

/* A send in flight to another node waits killably (state D), other calls interruptibly. */
#define WAIT_SLEEPING(pid) wait_state_at(__FILE__, __LINE__, pid, 0, 'S')
#define WAIT_KILLABLE(pid) wait_state_at(__FILE__, __LINE__, pid, 0, 'D')

/* ---- counters ---- */

/* Checks that the object counters (all but dcs) are back to those in *before. */
#define CHECK_COUNTERS_BACK(before) counters_back_at(__FILE__, __LINE__, before)
static void counters_back_at(const char *file, int line, const struct dvk_stats *before)
{
	static const char *const names[] = { "endpoints", "files", "messages", "calls",
					     "notes", "bytes", "remotes" };
	uint64_t end = in_ms(3000);
	struct dvk_stats now;
	char why[512];
	bool same;

	do {
		size_t off = 0;

		REQUIRE(stats_read(&now) == 0);
		same = true;
		why[0] = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			long long a = stats_get(before, names[i]), b = stats_get(&now, names[i]);

			if (a == b)
				continue;
			same = false;
			if (off < sizeof(why))
				off += snprintf(why + off, sizeof(why) - off, "%s %lld (was %lld) ",
						names[i], b, a);
		}
		if (!same)
			sleep_ms(5);
	} while (!same && now_ns() < end);
	if (!same) {
		tap_failed = 1;
		tap_diag_at(file, line, "counters not back: %s", why);
	}
}

/* ---- helpers many cases share ---- */

/* One sendrec from a helper, and what its outcome must be. */
struct call_arg {
	int fd;
	uint32_t dst, dst_gen;
	int32_t type;
	uint32_t len;		/* request: `len` bytes of pattern(seed) */
	unsigned seed;
	int deadline_ms;	/* 0: LONG_MS */
	int want_rc;
	int32_t want_type;	/* with want_rc 0: the reply */
	uint32_t want_len;
	unsigned want_seed;
	uint32_t reply_gen;	/* the reply's source generation; 0: R_GEN */
	int done_w;		/* if > 0: write 'D' there once the call returned */
	int hold_r;		/* if > 0: wait for a byte there before the checks that follow */
	bool then_empty;	/* then: nothing receivable, not readable, no call left */
};

static void caller(void *p)
{
	struct call_arg *a = p;
	unsigned char *req = pattern_new(a->len, a->seed), *rep = malloc(max_payload);
	struct dvk_sendrec s;
	int rc;

	REQUIRE(rep);
	sendrec_init(&s, a->dst, a->dst_gen, a->type, req, a->len, rep, max_payload,
		     in_ms(a->deadline_ms ? a->deadline_ms : LONG_MS));
	rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s);
	CHECK_RC(rc, a->want_rc);
	if (rc == 0 && a->want_rc == 0) {
		CHECK_EQ(s.reply.flags, DVK_MSG_REPLY);
		CHECK_EQ(s.reply.peer, a->dst);
		CHECK_EQ(s.reply.peer_gen, a->reply_gen ? a->reply_gen : R_GEN);
		CHECK_EQ(s.reply.type, a->want_type);
		CHECK_EQ(s.reply.size, a->want_len);
		CHECK(s.reply.request_id != 0);
		CHECK(is_pattern(rep, a->want_len, a->want_seed));
	}
	CHECK_EQ(s.flags, 0);
	if (a->done_w > 0)
		put_byte(a->done_w, 'D');
	if (a->hold_r > 0)
		EXPECT_BYTE(a->hold_r, 'G');
	if (a->then_empty) {
		EXPECT_EMPTY(a->fd);
		CHECK_EQ(poll_now(a->fd), 0);
	}
	free(req);
	free(rep);
}

/* A send from a helper that must end with want_rc. */
struct send_arg {
	int fd;
	uint32_t dst, dst_gen;
	uint64_t num;
	int want_rc;
	int ready_w;		/* if > 0: write 'R' there just before the send */
};

static void sender(void *p)
{
	struct send_arg *a = p;

	if (a->ready_w > 0)
		put_byte(a->ready_w, 'R');
	CHECK_RC(send_num(a->fd, a->dst, a->dst_gen, a->num, 0, SOON), a->want_rc);
}

/* A receive from a helper that must end with want_rc (with 0: a message from `from`). */
struct recv_arg {
	int fd;
	uint32_t from, from_gen;
	int deadline_ms;
	int want_rc;
	int ready_w;
};

static void receiver(void *p)
{
	struct recv_arg *a = p;
	unsigned char *buf = malloc(max_payload);
	struct dvk_msg m;
	int rc;

	REQUIRE(buf);
	if (a->ready_w > 0)
		put_byte(a->ready_w, 'R');
	rc = mrecv(a->fd, a->from, a->from_gen, buf, max_payload, 0,
		   in_ms(a->deadline_ms ? a->deadline_ms : LONG_MS), &m);
	CHECK_RC(rc, a->want_rc);
	if (rc == 0)
		CHECK_EQ(m.peer, a->from);
	free(buf);
}

/* Fills the remote endpoint's queue (dc, R_EP) from `fd` with queue_length numbered messages. */
static void fill_remote(int fd, uint32_t dc, uint64_t first)
{
	for (uint32_t i = 0; i < queue_length; i++)
		CHECK_RC(send_num(fd, R_EP, 0, first + i, DVK_CALL_NONBLOCK, 0), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
	CHECK_RC(send_num(fd, R_EP, 0, first + queue_length, DVK_CALL_NONBLOCK, 0), -EAGAIN);
}

/* Checks drained numbered messages: kind MESSAGE and numbers first, first + 1, ... */
static void check_numbers(const struct rec *r, int n, uint64_t first)
{
	for (int i = 0; i < n; i++) {
		uint64_t v = ~0ull;

		if (r[i].h.size == sizeof(v))
			memcpy(&v, r[i].data, sizeof(v));
		if (r[i].h.kind != DVK_PROXY_MESSAGE || v != first + i ||
		    r[i].h.type != (int32_t)(first + i)) {
			tap_fail("record %d: kind %u, type %d, number %llu; want message %llu", i,
				 r[i].h.kind, r[i].h.type, (unsigned long long)v,
				 (unsigned long long)(first + i));
			return;
		}
	}
}

/* ====================================================================================== */
/* Attaching                                                                               */
/* ====================================================================================== */

static void t_version(void)
{
	int fd = dev_open();
	struct dvk_version v;

	CHECK_RC(dvk_ioctl(fd, DVK_IOC_VERSION, &v), 0);
	CHECK(v.features & DVK_FEATURE_PROXY);
	CHECK(v.features & DVK_FEATURE_IPC);
	CHECK(v.features & DVK_FEATURE_CLAIMS);
	CHECK(v.features & DVK_FEATURE_VERDICTS);
	CHECK_EQ(sizeof(struct dvk_proxy_msg), 64);
}

/*
 * ABI 3: a record is 64 bytes, flags at 56 and reserved at 60 after timeout_ns; the drain
 * writes both (zero without verdicts), and the payload follows at 64.
 */
static void t_record_layout(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl), n = 0;
	struct dvk_proxy_batch b;
	struct rec r[2];
	uint64_t v = 0;

	CHECK_EQ(sizeof(struct dvk_proxy_msg), 64);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, request_id), 32);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, size), 40);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, status), 44);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, timeout_ns), 48);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, flags), 56);
	CHECK_EQ(offsetof(struct dvk_proxy_msg, reserved), 60);
	remote_std(px, dc);
	CHECK_RC(mnotify(l, R_EP, 0, 3), 0);
	CHECK_RC(send_num(l, R_EP, 0, 77, 0, SOON), 0);
	/* drain_once fills the buffer with 0xa5 first: every byte below was written. */
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 2, &b), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(b.size, REC(0) + REC(8));
	if (n != 2)
		return;
	CHECK_REC(&r[0], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
	CHECK_EQ(r[0].h.request_id, 0);
	CHECK_REC(&r[1], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 0, gl, 77);
	for (uint32_t i = 0, off = 0; i < 2; i++, off += REC(0)) {
		for (uint32_t k = 56; k < 64; k++)
			CHECKF(dbuf[off + k] == 0, "record at %u: byte %u is 0x%02x", off, k,
			       dbuf[off + k]);
	}
	memcpy(&v, dbuf + REC(0) + 64, sizeof(v));
	CHECK_EQ(v, 77);
	recs_free(r, 2);
	EXPECT_NO_DRAIN(px);
}

struct unpriv_arg {
	int fd, bound;
	uint32_t dc;
};

static void unprivileged(void *p)
{
	struct unpriv_arg *a = p;
	struct dvk_remote r = { .dc = a->dc, .endpoint = R_EP, .generation = R_GEN };
	struct dvk_proxy_batch b = { .flags = DVK_CALL_NONBLOCK };

	drop_privileges();
	CHECK_RC(attach_rc(a->fd, MY_NODE), -EPERM);
	CHECK_RC(attach_rc(a->bound, MY_NODE), -EPERM);
	/* Not attached: the proxy calls are refused too. */
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_REMOTE_ADD, &r), -EPERM);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_PROXY_DRAIN, &b), -EPERM);
	/* The file is still an ordinary one: it binds, and sends. */
	CHECK_RC(bind_rc(a->fd, a->dc, 1, NULL), 0);
	CHECK_RC(send_num(a->fd, 1, 0, 3, 0, SOON), 0);
}

static void t_attach_eperm(void)
{
	uint32_t dc = dc_new(8);
	struct unpriv_arg a = { .fd = dev_open(), .bound = ep_open(dc, 0, NULL), .dc = dc };
	pid_t pid = SPAWN(unprivileged, &a, a.fd, a.bound);
	int px;

	CHECK_CHILD(pid);
	/* Nothing was attached or registered: a privileged attach works, the slot is free. */
	px = dev_open();
	CHECK_RC(attach_rc(px, MY_NODE), 0);
	CHECK_EQ(ep_get(dc, R_EP, "endpoint"), -1);
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN, R_NODE), 0);
}

static void t_attach_ebusy(void)
{
	uint32_t dc = dc_new(8);
	int a = px_open(), b = dev_open(), c = dev_open(), rc;

	CHECK_RC(attach_rc(b, MY_NODE), -EBUSY);
	CHECK_RC(attach_rc(c, 99), -EBUSY);
	/* The proxy file itself cannot attach again (as a second proxy, or as attached). */
	rc = attach_rc(a, MY_NODE);
	CHECKF(rc == -EISCONN || rc == -EBUSY, "attaching the proxy file again: %s", rcname(rc));
	/* The refused files are ordinary: b binds, c may attach once a is closed. */
	CHECK_RC(bind_rc(b, dc, 0, NULL), 0);
	CHECK_RC(remote_add(a, dc, R_EP, R_GEN, R_NODE), 0);
	CHECK_RC(remote_add(b, dc, 6, R_GEN, R_NODE), -EPERM);
	dev_close(a);
	CHECK_RC(attach_rc(c, MY_NODE), 0);
	CHECK_RC(attach_rc(b, MY_NODE), -EISCONN);
}

static void t_attach_eisconn(void)
{
	uint32_t dc = dc_new(8), gen = 0;
	int bound = ep_open(dc, 0, &gen), px;
	struct dvk_bind by_name = { .endpoint = 2, .flags = DVK_BIND_BY_NAME };
	uint64_t n = 1;

	CHECK_RC(attach_rc(bound, MY_NODE), -EISCONN);
	/* Still an endpoint, and no proxy was made: another file attaches. */
	CHECK_RC(send_num(bound, 0, 0, 4, 0, SOON), 0);
	CHECK_RC(mrecv(bound, DVK_ANY, 0, &n, sizeof(n), 0, SOON, NULL), 0);
	CHECK_EQ(n, 4);
	CHECK_EQ(ep_get(dc, 0, "generation"), gen);
	px = px_open();
	/* The proxy file cannot bind, by number or by name. */
	CHECK_RC(bind_rc(px, dc, 1, NULL), -EISCONN);
	snprintf(by_name.dc_name, sizeof(by_name.dc_name), "proxy-%u", dc);
	CHECK_RC(dvk_ioctl(px, DVK_IOC_BIND, &by_name), -EISCONN);
	CHECK_EQ(ep_get(dc, 1, "endpoint"), -1);
	CHECK_EQ(ep_get(dc, 2, "endpoint"), -1);
	/* It is not an endpoint: endpoint calls fail with ENOTCONN. */
	CHECK_RC(send_num(px, 0, 0, 1, DVK_CALL_NONBLOCK, 0), -ENOTCONN);
	CHECK_RC(mrecv(px, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), -ENOTCONN);
	CHECK_RC(mnotify(px, 0, 0, 1), -ENOTCONN);
	/* And it goes on working as the proxy. */
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN, R_NODE), 0);
	CHECK_RC(send_num(bound, R_EP, 0, 9, 0, SOON), 0);
	{
		struct rec r[1];

		CHECK_EQ(DRAIN_N(px, r, 1), 1);
		check_numbers(r, 1, 9);
		recs_free(r, 1);
	}
}

static void t_attach_einval(void)
{
	uint32_t dc = dc_new(4);
	int fd = dev_open(), other = dev_open();
	struct dvk_proxy_attach bad[] = {
		{ .node = 1, .flags = 4 },
		{ .node = 1, .flags = 1u << 31 },
		{ .node = 1, .reserved = { 1, 0 } },
		{ .node = 1, .reserved = { 0, 1ull << 63 } },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECKF(dvk_ioctl(fd, DVK_IOC_PROXY_ATTACH, &bad[i]) == -EINVAL, "attach #%zu", i);
	/* None of them made a proxy. */
	CHECK_RC(attach_rc(other, MY_NODE), 0);
	CHECK_RC(attach_rc(fd, MY_NODE), -EBUSY);
	CHECK_RC(bind_rc(fd, dc, 0, NULL), 0);
}

/* Proxy calls on a file that is not the proxy fail with EPERM, and change nothing. */
static void t_proxy_calls_eperm(void)
{
	uint32_t dc = dc_new(8);
	int unbound = dev_open(), bound = ep_open(dc, 0, NULL), px = -1;
	static const unsigned long cmds[] = { DVK_IOC_REMOTE_ADD, DVK_IOC_REMOTE_DEL,
					      DVK_IOC_PROXY_DRAIN, DVK_IOC_PROXY_INJECT };
	struct dvk_remote r = { .dc = dc, .endpoint = R_EP, .generation = R_GEN };
	struct dvk_proxy_batch b = { .buffer = (uintptr_t)dbuf, .size = dbuf_len,
				     .flags = DVK_CALL_NONBLOCK };
	struct rec got[1];

	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: no proxy on the node; pass 1: another file is the proxy. */
		int files[2] = { unbound, bound };

		for (int f = 0; f < 2; f++) {
			for (size_t i = 0; i < 4; i++) {
				void *arg = i < 2 ? (void *)&r : (void *)&b;
				int rc = dvk_ioctl(files[f], cmds[i], arg);

				CHECKF(rc == -EPERM, "pass %d, cmd %zu on the %s file: %s", pass, i,
				       f ? "bound" : "unbound", rcname(rc));
			}
		}
		if (pass == 0) {
			px = px_open();
			CHECK_EQ(ep_get(dc, R_EP, "endpoint"), -1);
			remote_std(px, dc);
			CHECK_RC(send_num(bound, R_EP, 0, 1, 0, SOON), 0);
		}
	}
	/* The refused drains took nothing, the refused DELs removed nothing. */
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	CHECK_EQ(DRAIN_N(px, got, 1), 1);
	check_numbers(got, 1, 1);
	recs_free(got, 1);
	CHECK_EQ(ep_get(dc, 0, "node"), -1);
}

static void t_proxy_efault(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), fresh = dev_open(), l = ep_open(dc, 0, NULL);
	static const struct { unsigned long cmd; size_t size; const char *name; } cmds[] = {
		{ DVK_IOC_REMOTE_ADD, sizeof(struct dvk_remote), "REMOTE_ADD" },
		{ DVK_IOC_REMOTE_DEL, sizeof(struct dvk_remote), "REMOTE_DEL" },
		{ DVK_IOC_PROXY_DRAIN, sizeof(struct dvk_proxy_batch), "PROXY_DRAIN" },
		{ DVK_IOC_PROXY_INJECT, sizeof(struct dvk_proxy_batch), "PROXY_INJECT" },
	};
	void *none = bad_page();
	struct rec got[1];

	CHECK_RC(dvk_ioctl(fresh, DVK_IOC_PROXY_ATTACH, NULL), -EFAULT);
	CHECK_RC(dvk_ioctl(fresh, DVK_IOC_PROXY_ATTACH, none), -EFAULT);
	CHECK_RC(dvk_ioctl(fresh, DVK_IOC_PROXY_ATTACH,
			   before_hole(sizeof(struct dvk_proxy_attach) - 4)), -EFAULT);
	remote_std(px, dc);
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	for (size_t i = 0; i < 4; i++) {
		void *bad[] = { NULL, none, KERNEL_ADDR, before_hole(cmds[i].size - 4) };

		for (size_t k = 0; k < 4; k++) {
			int rc = dvk_ioctl(px, cmds[i].cmd, bad[k]);

			CHECKF(rc == -EFAULT, "%s(%p): %s", cmds[i].name, bad[k], rcname(rc));
		}
	}
	/* Nothing changed: the remote is there, its message too, and fresh is no proxy. */
	CHECK_EQ(ep_get(dc, R_EP, "generation"), R_GEN);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	CHECK_EQ(DRAIN_N(px, got, 1), 1);
	recs_free(got, 1);
	CHECK_RC(bind_rc(fresh, dc, 1, NULL), 0);
}

/* Near misses of the proxy commands (direction, size, number) are unknown: ENOTTY. */
static void t_proxy_enotty(void)
{
	static const unsigned long cmds[] = {
		_IO(DVK_IOC_MAGIC, 0x20),
		_IOWR(DVK_IOC_MAGIC, 0x20, struct dvk_proxy_attach),
		_IOW(DVK_IOC_MAGIC, 0x20, __u32),
		_IOR(DVK_IOC_MAGIC, 0x21, struct dvk_remote),
		_IOWR(DVK_IOC_MAGIC, 0x21, struct dvk_remote),
		_IOW(DVK_IOC_MAGIC, 0x21, struct dvk_proxy_batch),
		_IOW(DVK_IOC_MAGIC, 0x22, __u64),
		_IOWR(DVK_IOC_MAGIC, 0x22, struct dvk_remote),
		_IOW(DVK_IOC_MAGIC, 0x23, struct dvk_proxy_batch),
		_IOR(DVK_IOC_MAGIC, 0x23, struct dvk_proxy_batch),
		_IOWR(DVK_IOC_MAGIC, 0x23, struct dvk_remote),
		_IOW(DVK_IOC_MAGIC, 0x24, struct dvk_proxy_batch),
		_IOWR(DVK_IOC_MAGIC, 0x24, __u64),
		_IOWR(DVK_IOC_MAGIC, 0x25, struct dvk_proxy_batch),
		_IOW(DVK_IOC_MAGIC, 0x25, struct dvk_remote),
		_IOWR(DVK_IOC_MAGIC, 0x2f, struct dvk_proxy_batch),
		_IOWR(DVK_IOC_MAGIC + 1, 0x23, struct dvk_proxy_batch),
	};
	uint32_t dc = dc_new(8);
	int files[3] = { px_open(), dev_open(), ep_open(dc, 0, NULL) };
	static const char *const names[] = { "proxy", "unbound", "bound" };
	static unsigned char buf[4096];

	remote_std(files[0], dc);
	for (int f = 0; f < 3; f++) {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			int rc;

			memset(buf, 0, sizeof(buf));
			rc = dvk_ioctl(files[f], cmds[i], buf);
			CHECKF(rc == -ENOTTY, "cmd 0x%lx on the %s file: %s", cmds[i], names[f],
			       rcname(rc));
		}
	}
	CHECK_EQ(ep_get(dc, R_EP, "generation"), R_GEN);
	EXPECT_NO_DRAIN(files[0]);
}

static void t_attach_close_reattach(void)
{
	uint32_t dc = dc_new(8);
	long long remotes = stat_now("remotes");
	int a = px_open(), b;

	remote_std(a, dc);
	CHECK_RC(remote_add(a, dc, 6, 1, 3), 0);
	CHECK_EQ(stat_now("remotes"), remotes + 2);
	dev_close(a);
	/* The proxy's remote endpoints went with it. */
	CHECK_EQ(stat_now("remotes"), remotes);
	CHECK_EQ(ep_get(dc, R_EP, "endpoint"), -1);
	CHECK_EQ(ep_get(dc, 6, "endpoint"), -1);
	b = px_open();
	CHECK_RC(remote_del(b, dc, R_EP, R_GEN, 0), -ENOENT);
	CHECK_RC(remote_add(b, dc, R_EP, R_GEN, R_NODE), 0);
	dev_close(b);
	/* Attach and close, again and again. */
	for (int i = 0; i < 50; i++) {
		int fd = dev_open();

		CHECKF(attach_rc(fd, (uint32_t)i) == 0, "attach #%d", i);
		CHECKF(remote_add(fd, dc, (uint32_t)i % 8, 1 + i, 4) == 0, "add #%d", i);
		dev_close(fd);
	}
	CHECK_EQ(stat_now("remotes"), remotes);
}

/* ====================================================================================== */
/* Registering remote endpoints                                                            */
/* ====================================================================================== */

static void t_remote_add(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	struct dvk_stats before, during;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	struct rec r[4];
	uint64_t n = 0;

	CHECK_RC(stats_read(&before), 0);
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN, R_NODE), 0);
	CHECK_RC(stats_read(&during), 0);
	CHECK_EQ(stats_get(&during, "remotes"), stats_get(&before, "remotes") + 1);
	CHECK_EQ(stats_get(&during, "endpoints"), stats_get(&before, "endpoints"));
	CHECK_EQ(stats_get(&during, "files"), stats_get(&before, "files"));
	/* /proc shows it: its generation, no process, its node; local ones show node -1. */
	CHECK_EQ(ep_get(dc, R_EP, "generation"), R_GEN);
	CHECK_EQ(ep_get(dc, R_EP, "pid"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "node"), R_NODE);
	CHECK_EQ(ep_get(dc, 0, "node"), -1);
	/* Local endpoints address it like any endpoint, generation and all. */
	CHECK_RC(send_num(l, R_EP, R_GEN, 1, 0, SOON), 0);
	CHECK_RC(send_num(l, R_EP, 0, 2, 0, SOON), 0);
	CHECK_RC(send_num(l, R_EP, R_GEN + 1, 3, 0, SOON), -ENOENT);
	CHECK_RC(send_num(l, R_EP, R_GEN - 1, 3, 0, SOON), -ENOENT);
	CHECK_RC(mnotify(l, R_EP, R_GEN + 1, 1), -ENOENT);
	CHECK_EQ(DRAIN_N(px, r, 2), 2);
	check_numbers(r, 2, 1);
	recs_free(r, 2);
	/* Gone after DEL: sends fail with ENOENT, the counters are back. */
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	CHECK_EQ(ep_get(dc, R_EP, "endpoint"), -1);
	CHECK_RC(send_num(l, R_EP, 0, 4, 0, SOON), -ENOENT);
	CHECK_RC(mrecv(l, R_EP, R_GEN, &n, sizeof(n), DVK_CALL_NONBLOCK, 0, NULL), -ENOENT);
	CHECK_COUNTERS_BACK(&before);
	EXPECT_NO_DRAIN(px);
}

static void t_remote_add_eaddrinuse(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 3, NULL), other = dev_open();

	CHECK_RC(remote_add(px, dc, 3, R_GEN, R_NODE), -EADDRINUSE);
	CHECK_EQ(ep_get(dc, 3, "node"), -1);
	CHECK_RC(send_num(l, 3, 0, 1, 0, SOON), 0); /* the local one is untouched */
	remote_std(px, dc);
	CHECK_RC(bind_rc(other, dc, R_EP, NULL), -EADDRINUSE);
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN + 2, R_NODE), -EADDRINUSE);
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN, R_NODE), -EADDRINUSE);
	CHECK_EQ(ep_get(dc, R_EP, "generation"), R_GEN);
	/* The refused bind left the file unbound. */
	CHECK_RC(bind_rc(other, dc, 4, NULL), 0);
}

static void t_remote_add_einval(void)
{
	uint32_t dc = dc_new(8), unknown = dc_id();
	int px = px_open();
	long long remotes = stat_now("remotes");
	struct dvk_remote bad[] = {
		{ .dc = dc, .endpoint = R_EP, .generation = 0, .node = R_NODE },
		{ .dc = dc, .endpoint = 8, .generation = R_GEN, .node = R_NODE },
		{ .dc = dc, .endpoint = 1000, .generation = R_GEN, .node = R_NODE },
		{ .dc = dc, .endpoint = DVK_ANY, .generation = R_GEN, .node = R_NODE },
		{ .dc = dc, .endpoint = R_EP, .generation = R_GEN, .node = R_NODE, .flags = 1 },
		{ .dc = dc, .endpoint = R_EP, .generation = R_GEN, .node = R_NODE,
		  .flags = DVK_REMOTE_NODE_DOWN << 3 },
		{ .dc = dc, .endpoint = R_EP, .generation = R_GEN, .node = R_NODE,
		  .flags = 1u << 31 },
		{ .dc = dc, .endpoint = R_EP, .generation = R_GEN, .node = R_NODE, .reserved = 1 },
	};

	CHECK_RC(remote_add(px, unknown, R_EP, R_GEN, R_NODE), -ENOENT);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = dvk_ioctl(px, DVK_IOC_REMOTE_ADD, &bad[i]);

		CHECKF(rc == -EINVAL, "REMOTE_ADD #%zu (endpoint %u, generation %u, flags 0x%x): %s",
		       i, bad[i].endpoint, bad[i].generation, bad[i].flags, rcname(rc));
	}
	CHECK_EQ(stat_now("remotes"), remotes);
	for (uint32_t e = 0; e < 8; e++)
		CHECK_EQ(ep_get(dc, e, "endpoint"), -1);
	CHECK_RC(remote_add(px, dc, 7, 1, R_NODE), 0); /* the last slot is fine */
}

static void t_remote_del(void)
{
	uint32_t dc = dc_new(8), other = dc_new(8);
	int px = px_open(), l = ep_open(dc, 3, NULL);
	long long remotes = stat_now("remotes");

	remote_std(px, dc);
	CHECK_RC(remote_del(px, dc, 6, R_GEN, 0), -ENOENT);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN + 1, 0), -ENOENT);
	CHECK_RC(remote_del(px, other, R_EP, R_GEN, 0), -ENOENT);
	CHECK_RC(remote_del(px, dc_base + DCS_PER_CASE - 1, R_EP, R_GEN, 0), -ENOENT);
	CHECK_RC(remote_del(px, dc, 3, 0, 0), -ENOENT); /* a local endpoint is not a remote */
	CHECK_RC(remote_del(px, dc, DVK_ANY, R_GEN, 0), -EINVAL);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 2), -EINVAL);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 1u << 31), -EINVAL);
	{
		struct dvk_remote r = { .dc = dc, .endpoint = R_EP, .generation = R_GEN,
					.reserved = 5 };

		CHECK_RC(dvk_ioctl(px, DVK_IOC_REMOTE_DEL, &r), -EINVAL);
	}
	CHECK_EQ(ep_get(dc, R_EP, "generation"), R_GEN);
	CHECK_EQ(ep_get(dc, 3, "node"), -1);
	CHECK_RC(send_num(l, 3, 0, 1, 0, SOON), 0);
	/* DEL ignores node; then the endpoint is gone, and a second DEL finds nothing. */
	{
		struct dvk_remote r = { .dc = dc, .endpoint = R_EP, .generation = R_GEN,
					.node = 12345 };

		CHECK_RC(dvk_ioctl(px, DVK_IOC_REMOTE_DEL, &r), 0);
	}
	CHECK_EQ(stat_now("remotes"), remotes);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), -ENOENT);
	/* A DEL with NODE_DOWN of an idle endpoint works the same. */
	remote_std(px, dc);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, DVK_REMOTE_NODE_DOWN), 0);
	CHECK_EQ(ep_get(dc, R_EP, "endpoint"), -1);
	CHECK_EQ(stat_now("remotes"), remotes);
}

static void t_remote_generation(void)
{
	uint32_t dc = dc_new(8), gen = 0;
	int px = px_open(), fd;

	for (uint32_t i = 1; i <= 3; i++) {
		fd = ep_open(dc, R_EP, &gen);
		CHECK_EQ(gen, i);
		dev_close(fd);
	}
	remote_std(px, dc);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	fd = ep_open(dc, R_EP, &gen);
	CHECKF(gen > R_GEN, "local bind after remote generation %u got %u", R_GEN, gen);
	dev_close(fd);
	/* A remote below what the number had does not take it back. */
	CHECK_RC(remote_add(px, dc, R_EP, 2, R_NODE), 0);
	CHECK_EQ(ep_get(dc, R_EP, "generation"), 2);
	CHECK_RC(remote_del(px, dc, R_EP, 2, 0), 0);
	{
		uint32_t last = gen;

		fd = ep_open(dc, R_EP, &gen);
		CHECKF(gen > last, "local bind after generation %u got %u", last, gen);
		dev_close(fd);
	}
	/* A fresh number, a high remote generation; also with the proxy closed instead of DEL. */
	CHECK_RC(remote_add(px, dc, 6, 1000, R_NODE), 0);
	dev_close(px);
	fd = ep_open(dc, 6, &gen);
	CHECKF(gen > 1000, "local bind after remote generation 1000 got %u", gen);
}

static void t_remote_dc_ebusy(void)
{
	uint32_t dc = dc_new(8), dc2 = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL);
	struct rec r[1];

	remote_std(px, dc);
	CHECK_RC(dc_destroy(dc), -EBUSY);
	/* Still working. */
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	CHECK_EQ(DRAIN_N(px, r, 1), 1);
	recs_free(r, 1);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	dev_close(l);
	CHECK_RC(dc_destroy(dc), 0);
	/* And with the proxy closed instead. */
	remote_std(px, dc2);
	CHECK_RC(dc_destroy(dc2), -EBUSY);
	dev_close(px);
	CHECK_RC(dc_destroy(dc2), 0);
}

/* ====================================================================================== */
/* Draining what local endpoints send to remote ones                                       */
/* ====================================================================================== */

/* Local sends to the remote endpoint come out byte-exact, with every header field. */
static void t_drain_message(void)
{
	static const uint32_t sizes[] = { 0, 1, 7, 8, 13, 64, 4095 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	static const int32_t types[N] = { -1, INT32_MIN, INT32_MAX, 0, 42, -42, 7 };
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 3, &gl);
	struct dvk_proxy_batch b;
	struct rec r[N];
	uint32_t total = 0;
	int n = 0;

	remote_std(px, dc);
	for (int i = 0; i < N; i++) {
		unsigned char *p = pattern_new(sizes[i], 100 + i);

		CHECK_RC(msend(l, R_EP, i % 2 ? R_GEN : 0, types[i], p, sizes[i], 0, SOON), 0);
		free(p);
		total += REC(sizes[i]);
	}
	CHECK_EQ(ep_get(dc, R_EP, "queued"), N);
	CHECK(poll_now(px) & POLLIN);
	/* One drain takes them all, in order, and says how many bytes it wrote. */
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, N, &b), 0);
	CHECK_EQ(n, N);
	CHECK_EQ(b.count, N);
	CHECK_EQ(b.size, total);
	for (int i = 0; i < N && i < n; i++) {
		CHECK_REC(&r[i], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 3, gl, types[i]);
		CHECK_EQ(r[i].h.size, sizes[i]);
		CHECK_EQ(r[i].h.bits, 0);
		CHECK_EQ(r[i].h.request_id, 0);
		CHECK_EQ(r[i].h.status, 0);
		CHECKF(is_pattern(r[i].data, sizes[i], 100 + i), "payload of record %d", i);
	}
	recs_free(r, n < N ? n : N);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	CHECK_EQ(ep_get(dc, 3, "sent"), N);
	EXPECT_NO_DRAIN(px);
}

/* max_payload bytes: a buffer of exactly one largest record is enough. */
static void t_drain_max_payload(void)
{
	uint32_t dc = dc_new(8), gl = 0, exact = REC(max_payload);
	int px = px_open(), l = ep_open(dc, 0, &gl);
	unsigned char *p = pattern_new(max_payload, 9), *q = pattern_new(max_payload, 10);
	struct dvk_proxy_batch b;
	struct rec r[2];
	int n = 0;

	remote_std(px, dc);
	CHECK_RC(msend(l, R_EP, 0, 1, p, max_payload, 0, SOON), 0);
	CHECK_RC(msend(l, R_EP, 0, 2, q, max_payload, 0, SOON), 0);
	CHECK_RC(msend(l, R_EP, 0, 3, p, max_payload + 1, 0, SOON), -EMSGSIZE);
	CHECK_RC(drain_once(px, exact, 0, SOON, r, &n, 2, &b), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(b.size, exact);
	CHECK_RC(drain_once(px, exact, 0, SOON, r, &n, 2, &b), 0);
	CHECK_EQ(n, 2);
	for (int i = 0; i < n && i < 2; i++) {
		CHECK_REC(&r[i], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 0, gl, i + 1);
		CHECK_EQ(r[i].h.size, max_payload);
		CHECKF(is_pattern(r[i].data, max_payload, 9 + i), "payload %d", i);
	}
	recs_free(r, n < 2 ? n : 2);
	EXPECT_NO_DRAIN(px);
	free(p);
	free(q);
}

/* A sender of numbered messages: type = its id, payload = (id, sequence). */
struct numbered_arg {
	int fd;
	uint32_t dst, id, count;
};

static void numbered_sender(void *p)
{
	struct numbered_arg *a = p;

	for (uint32_t i = 0; i < a->count; i++) {
		uint32_t v[2] = { a->id, i };
		int rc = msend(a->fd, a->dst, 0, (int32_t)a->id, v, sizeof(v), 0, SOON);

		if (rc) {
			tap_fail("sender %u, message %u: %s", a->id, i, errname(-rc));
			return;
		}
	}
}

/* 1000 sends from 4 processes: many records per drain, each sender's order kept. */
static void t_drain_many(void)
{
	enum { SENDERS = 4, EACH = 250, TOTAL = SENDERS * EACH };
	uint32_t dc = dc_new(16), gens[SENDERS], next[SENDERS] = { 0 };
	int px = px_open(), n = 0, drains = 0, first_count = 0;
	struct rec *r = calloc(TOTAL, sizeof(*r));
	pid_t pids[SENDERS];
	uint64_t end = SOON;

	REQUIRE(r);
	remote_std(px, dc);
	for (uint32_t s = 0; s < SENDERS; s++) {
		struct numbered_arg a = { .fd = ep_open(dc, s, &gens[s]), .dst = R_EP, .id = s,
					  .count = EACH };

		pids[s] = SPAWN(numbered_sender, &a, a.fd);
		dev_close(a.fd);
	}
	/* Let the queue fill and senders wait: the first drain takes a full queue at once. */
	WAIT_EP(dc, R_EP, "queued", queue_length);
	while (n < TOTAL && now_ns() < end) {
		int before = n, rc = drain_once(px, dbuf_len, 0, end, r, &n, TOTAL, NULL);

		if (rc) {
			tap_fail("drain after %d records: %s", n, errname(-rc));
			break;
		}
		if (drains++ == 0)
			first_count = n - before;
	}
	CHECK_EQ(n, TOTAL);
	CHECKF(first_count >= (int)queue_length, "the first drain took %d records", first_count);
	for (int i = 0; i < n && i < TOTAL; i++) {
		uint32_t v[2] = { ~0u, ~0u };

		if (r[i].h.size == sizeof(v))
			memcpy(v, r[i].data, sizeof(v));
		if (r[i].h.kind != DVK_PROXY_MESSAGE || v[0] >= SENDERS || r[i].h.src != v[0] ||
		    r[i].h.src_gen != gens[v[0]] || r[i].h.type != (int32_t)v[0] ||
		    v[1] != next[v[0]]) {
			tap_fail("record %d: kind %u src %u gen %u type %d payload (%u, %u)", i,
				 r[i].h.kind, r[i].h.src, r[i].h.src_gen, r[i].h.type, v[0], v[1]);
			break;
		}
		next[v[0]]++;
	}
	tap_diag("%d drains for %d records", drains, n);
	for (int s = 0; s < SENDERS; s++)
		CHECK_CHILD(pids[s]);
	recs_free(r, n < TOTAL ? n : TOTAL);
	free(r);
	EXPECT_NO_DRAIN(px);
}

static void t_drain_nonblock(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL);
	uint64_t t0;
	struct rec r[1];
	int n = 0;

	/* No remote endpoint at all, then one with nothing queued. */
	CHECK_RC(px_drain(px, dbuf, dbuf_len, DVK_CALL_NONBLOCK, 0, NULL), -EAGAIN);
	remote_std(px, dc);
	t0 = now_ns();
	CHECK_RC(px_drain(px, dbuf, dbuf_len, DVK_CALL_NONBLOCK, in_ms(2000), NULL), -EAGAIN);
	CHECK_RC(px_drain(px, dbuf, dbuf_len, 0, 1, NULL), -ETIMEDOUT);
	CHECK_RC(px_drain(px, dbuf, dbuf_len, 0, now_ns() - 1000000, NULL), -ETIMEDOUT);
	CHECKF(now_ns() - t0 < 500000000ull, "took %llu ms",
	       (unsigned long long)((now_ns() - t0) / 1000000));
	/* Something queued: NONBLOCK and a past deadline both take it. */
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 1, NULL), 0);
	CHECK_RC(send_num(l, R_EP, 0, 2, 0, SOON), 0);
	CHECK_RC(drain_once(px, dbuf_len, 0, 1, r, &n, 1, NULL), 0);
	CHECK_EQ(n, 2);
	recs_free(r, 1);
}

static void t_drain_deadline(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open();
	uint64_t t0, took;

	remote_std(px, dc);
	t0 = now_ns();
	CHECK_RC(px_drain(px, dbuf, dbuf_len, 0, t0 + 50000000ull, NULL), -ETIMEDOUT);
	took = now_ns() - t0;
	CHECKF(took >= 50000000ull && took < 1000000000ull, "took %llu us",
	       (unsigned long long)(took / 1000));
}

static void t_drain_einval(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL);
	struct dvk_proxy_batch bad[] = {
		{ .flags = 2 },
		{ .flags = DVK_CALL_NONBLOCK | (1u << 31) },
		{ .flags = DVK_CALL_NONBLOCK, .reserved = 1 },
		{ .deadline_ns = 1ull << 63 },
		{ .deadline_ns = ~0ull },
	};
	struct rec r[1];

	remote_std(px, dc);
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;

		bad[i].buffer = (uintptr_t)dbuf;
		bad[i].size = dbuf_len;
		rc = dvk_ioctl(px, DVK_IOC_PROXY_DRAIN, &bad[i]);
		CHECKF(rc == -EINVAL, "drain #%zu: %s", i, rcname(rc));
	}
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	/* count and error are only written: leftovers from an earlier call are ignored. */
	{
		struct dvk_proxy_batch reused = { .buffer = (uintptr_t)dbuf, .size = dbuf_len,
						  .flags = DVK_CALL_NONBLOCK, .count = 7,
						  .error = -1 };

		CHECK_RC(dvk_ioctl(px, DVK_IOC_PROXY_DRAIN, &reused), 0);
		CHECK_EQ(reused.count, 1);
	}
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	(void)r;
}

/* A sender that waits until its parent sleeps in a call, then sends or notifies. */
struct wake_arg {
	int fd, go_r;
	pid_t sleeper;
	uint32_t dst;
	bool notify;
};

static void wake_sender(void *p)
{
	struct wake_arg *a = p;

	for (int round = 0; round < 2; round++) {
		EXPECT_BYTE(a->go_r, 'G');
		WAIT_SLEEPING(a->sleeper);
		sleep_ms(20);
		if (round == 0)
			CHECK_RC(send_num(a->fd, a->dst, 0, 77, 0, SOON), 0);
		else
			CHECK_RC(mnotify(a->fd, a->dst, 0, 0x10), 0);
	}
}

/* A drain that waits, without a deadline, is woken by a send and by a notification. */
static void t_drain_wakes(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), go[2];
	struct wake_arg a = { .fd = ep_open(dc, 0, &gl), .sleeper = getpid(), .dst = R_EP };
	struct rec r[2];
	pid_t pid;
	int n = 0;

	remote_std(px, dc);
	pipe_new(go);
	a.go_r = go[0];
	pid = SPAWN(wake_sender, &a, a.fd);
	dev_close(a.fd);
	for (int round = 0; round < 2; round++) {
		uint64_t t0 = now_ns();

		put_byte(go[1], 'G');
		CHECK_RC(drain_once(px, dbuf_len, 0, 0, r, &n, 2, NULL), 0);
		CHECK_EQ(n, round + 1);
		CHECKF(now_ns() - t0 >= 20000000ull, "round %d: the drain returned after %llu us",
		       round, (unsigned long long)((now_ns() - t0) / 1000));
	}
	if (n == 2) {
		check_numbers(r, 1, 77);
		CHECK_REC(&r[1], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
		CHECK_EQ(r[1].h.bits, 0x10);
	}
	recs_free(r, n < 2 ? n : 2);
	CHECK_CHILD(pid);
}

/* poll() in a helper until the proxy file is readable. */
struct poller_arg {
	int fd, ready_w;
};

static void poller(void *p)
{
	struct poller_arg *a = p;
	struct pollfd pf = { .fd = a->fd, .events = POLLIN };

	put_byte(a->ready_w, 'P');
	CHECK_EQ(poll(&pf, 1, LONG_MS), 1);
	CHECK(pf.revents & POLLIN);
}

/* The proxy file is readable exactly while something waits to be drained. */
static void t_drain_poll(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open(), l = ep_open(dc, 0, NULL), ready[2];
	struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 5, .len = 8,
			       .seed = 1, .want_type = 6, .want_len = 0 };
	struct poller_arg pa;
	struct rec r[1];
	struct px_batch b = { 0 };
	pid_t pid;

	CHECK_EQ(poll_now(px), 0);
	remote_std(px, dc);
	CHECK_EQ(poll_now(px), 0);
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	CHECK_EQ(poll_now(px), POLLIN);
	CHECK_EQ(DRAIN_N(px, r, 1), 1);
	recs_free(r, 1);
	CHECK_EQ(poll_now(px), 0);
	CHECK_RC(mnotify(l, R_EP, 0, 3), 0);
	CHECK_EQ(poll_now(px), POLLIN);
	CHECK_EQ(DRAIN_N(px, r, 1), 1);
	recs_free(r, 1);
	CHECK_EQ(poll_now(px), 0);

	/* A request is readable until drained; waiting for its reply is not. */
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	WAIT_EP(dc, R_EP, "queued", 1);
	CHECK_EQ(poll_now(px), POLLIN);
	CHECK_EQ(DRAIN_N(px, r, 1), 1);
	CHECK_EQ(poll_now(px), 0);
	{
		struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN);

		h.type = 6;
		h.request_id = r[0].h.request_id;
		px_batch_add(&b, &h, NULL);
	}
	INJECT_ALL(px, &b);
	recs_free(r, 1);
	CHECK_CHILD(pid);
	CHECK_EQ(poll_now(px), 0);

	/* poll() waiting in another process wakes on a send. */
	pipe_new(ready);
	pa = (struct poller_arg){ .fd = px, .ready_w = ready[1] };
	pid = SPAWN(poller, &pa, px);
	EXPECT_BYTE(ready[0], 'P');
	WAIT_SLEEPING(pid);
	CHECK_RC(send_num(l, R_EP, 0, 2, 0, SOON), 0);
	CHECK_CHILD(pid);
	/* Removing the remote endpoint discards what waited: not readable any more. */
	CHECK_RC(remote_del(px, dc, R_EP, 0, 0), 0);
	CHECK_EQ(poll_now(px), 0);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* A buffer too small for the next record: EMSGSIZE with the size needed, nothing lost. */
static void t_drain_emsgsize(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	unsigned char *p100 = pattern_new(100, 1), *p200 = pattern_new(200, 2);
	struct dvk_proxy_batch b;
	struct rec r[3];
	int n = 0;

	remote_std(px, dc);
	CHECK_RC(msend(l, R_EP, 0, 1, p100, 100, 0, SOON), 0);
	CHECK_RC(msend(l, R_EP, 0, 2, p200, 200, 0, SOON), 0);
	for (uint32_t size = 0; size < REC(100); size += REC(100) - 1) {
		CHECK_RC(px_drain(px, dbuf, size, DVK_CALL_NONBLOCK, 0, &b), -EMSGSIZE);
		CHECK_EQ(b.size, REC(100));
		CHECK_EQ(b.count, 0);
	}
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 2);
	/* Room for the first but not both: the first comes alone. */
	CHECK_RC(drain_once(px, REC(100) + REC(200) - 1, 0, SOON, r, &n, 3, &b), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(b.size, REC(100));
	CHECK_RC(px_drain(px, dbuf, REC(200) - 1, 0, SOON, &b), -EMSGSIZE);
	CHECK_EQ(b.size, REC(200));
	CHECK_RC(drain_once(px, REC(200), 0, SOON, r, &n, 3, &b), 0);
	CHECK_EQ(n, 2);
	/* A notification record needs the header alone. */
	CHECK_RC(mnotify(l, R_EP, 0, 1), 0);
	CHECK_RC(px_drain(px, dbuf, HDR - 1, 0, SOON, &b), -EMSGSIZE);
	CHECK_EQ(b.size, HDR);
	CHECK_RC(drain_once(px, HDR, 0, SOON, r, &n, 3, &b), 0);
	CHECK_EQ(n, 3);
	if (n == 3) {
		CHECK_REC(&r[0], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 0, gl, 1);
		CHECK(r[0].h.size == 100 && is_pattern(r[0].data, 100, 1));
		CHECK_REC(&r[1], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 0, gl, 2);
		CHECK(r[1].h.size == 200 && is_pattern(r[1].data, 200, 2));
		CHECK_REC(&r[2], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
	}
	recs_free(r, n < 3 ? n : 3);
	EXPECT_NO_DRAIN(px);
	free(p100);
	free(p200);
}

/*
 * With two remote endpoints whose next records differ in size, the size EMSGSIZE reports
 * is what the next drain needs: a drain of that size takes a record.
 */
static void t_drain_emsgsize_next(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL);
	unsigned char *p = pattern_new(2000, 3);
	struct dvk_proxy_batch b;
	struct rec r[2];
	int n = 0;

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	CHECK_RC(msend(l, R_EP, 0, 1, p, 1000, 0, SOON), 0);
	CHECK_RC(msend(l, 6, 0, 2, p, 2000, 0, SOON), 0);
	CHECK_RC(px_drain(px, dbuf, 8, DVK_CALL_NONBLOCK, 0, &b), -EMSGSIZE);
	CHECKF(b.size == REC(1000) || b.size == REC(2000), "needed %u", b.size);
	{
		uint32_t needed = b.size;
		int rc = drain_once(px, needed, DVK_CALL_NONBLOCK, 0, r, &n, 2, &b);

		CHECKF(rc == 0, "a drain of the %u bytes EMSGSIZE reported: %s (now needs %u)",
		       needed, rcname(rc), b.size);
	}
	while (n < 2 && drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 2, NULL) == 0)
		;
	CHECK_EQ(n, 2);
	recs_free(r, n < 2 ? n : 2);
	free(p);
}

/* A drain into memory it cannot write fails with EFAULT and loses nothing. */
static void t_drain_efault(void)
{
	enum { N = 10 };
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl), n = 0;
	void *ro = mmap(NULL, 4096 * 4, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Room for 3 records of 100 bytes, then a hole. */
	unsigned char *straddle = before_hole(3 * REC(100));
	void *bad[] = { NULL, bad_page(), KERNEL_ADDR, ro };
	struct dvk_proxy_batch b;
	struct rec r[N + 1];

	REQUIRE(ro != MAP_FAILED);
	remote_std(px, dc);
	CHECK_RC(mnotify(l, R_EP, 0, 5), 0);
	for (uint32_t i = 0; i < N; i++) {
		unsigned char p[100];

		pattern(p, sizeof(p), i);
		CHECK_RC(msend(l, R_EP, 0, (int32_t)i, p, sizeof(p), 0, SOON), 0);
	}
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = px_drain(px, bad[k], 16384, DVK_CALL_NONBLOCK, 0, NULL);

		CHECKF(rc == -EFAULT, "drain into %p: %s", bad[k], rcname(rc));
		CHECK_EQ(ep_get(dc, R_EP, "queued"), N);
		CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	}
	/* Partly writable: EFAULT with nothing taken, or the records that fit. */
	{
		int rc = px_drain(px, straddle, HDR + (N + 1) * REC(100), DVK_CALL_NONBLOCK, 0, &b);

		if (rc == 0)
			PARSE(straddle, &b, r, &n, N + 1);
		else
			CHECK_RC(rc, -EFAULT);
		CHECKF(n <= 4, "took %d records into a buffer with room for 3", n);
	}
	while (n < N + 1 && drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, N + 1, NULL) == 0)
		;
	CHECK_EQ(n, N + 1);
	/* The notification and every message, each once and in order. */
	if (n == N + 1) {
		CHECK_REC(&r[0], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
		CHECK_EQ(r[0].h.bits, 5);
		for (int i = 1; i <= N; i++) {
			CHECK_REC(&r[i], DVK_PROXY_MESSAGE, dc, R_EP, R_GEN, 0, gl, i - 1);
			CHECKF(r[i].h.size == 100 && is_pattern(r[i].data, 100, i - 1),
			       "record %d", i);
		}
	}
	recs_free(r, n < N + 1 ? n : N + 1);
	EXPECT_NO_DRAIN(px);
}

/* Notifications to a remote endpoint coalesce per source and come out as NOTIFY records. */
static void t_drain_notify(void)
{
	uint32_t dc = dc_new(8), g0 = 0, g1 = 0;
	int px = px_open(), a = ep_open(dc, 0, &g0), b = ep_open(dc, 1, &g1), n = 0;
	struct rec r[4];

	remote_std(px, dc);
	CHECK_RC(mnotify(a, R_EP, 0, 1), 0);
	CHECK_RC(mnotify(a, R_EP, R_GEN, 4), 0);
	CHECK_RC(mnotify(b, R_EP, 0, 2), 0);
	CHECK_RC(mnotify(a, R_EP, 0, 0x80000000u), 0);
	CHECK_RC(mnotify(b, R_EP, 0, 2), 0);
	CHECK_RC(mnotify(a, R_EP, R_GEN + 1, 8), -ENOENT);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 2);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 4, NULL), 0);
	CHECK_EQ(n, 2);
	for (int i = 0; i < n && i < 2; i++) {
		bool from_a = r[i].h.src == 0;

		CHECK_REC(&r[i], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, from_a ? 0u : 1u,
			  from_a ? g0 : g1, 0);
		CHECK_EQ(r[i].h.bits, from_a ? 0x80000005u : 2u);
		CHECK_EQ(r[i].h.size, 0);
	}
	CHECK(n != 2 || r[0].h.src != r[1].h.src);
	recs_free(r, n < 4 ? n : 4);
	/* After the drain, a new notification is a new record. */
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 0);
	n = 0;
	CHECK_RC(mnotify(a, R_EP, 0, 1), 0);
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 4, NULL), 0);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_EQ(r[0].h.bits, 1);
	recs_free(r, 1);
	EXPECT_NO_DRAIN(px);
}

/* queue_length sends fill the remote endpoint's queue; a blocking send waits for a drain. */
static void t_drain_backpressure(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL), n = 0;
	struct send_arg sa = { .fd = ep_open(dc, 1, NULL), .dst = R_EP, .num = 1000 };
	struct rec *r = calloc(queue_length + 2, sizeof(*r));
	uint64_t t0;
	pid_t pid;

	REQUIRE(r);
	remote_std(px, dc);
	fill_remote(l, dc, 0);
	t0 = now_ns();
	CHECK_RC(send_num(l, R_EP, 0, 5000, 0, in_ms(50)), -ETIMEDOUT);
	CHECK(now_ns() - t0 >= 50000000ull);
	pid = SPAWN(sender, &sa, sa.fd);
	dev_close(sa.fd);
	WAIT_EP(dc, R_EP, "held", 1);
	/* A drain with room for 10 records makes room: the held sender goes in. */
	CHECK_RC(drain_once(px, 10 * REC(8), 0, SOON, r, &n, queue_length + 2, NULL), 0);
	CHECK_EQ(n, queue_length < 10 ? queue_length : 10);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	while (n < (int)queue_length + 1 &&
	       drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, queue_length + 2, NULL) == 0)
		;
	CHECK_EQ(n, queue_length + 1);
	if (n == (int)queue_length + 1) {
		check_numbers(r, queue_length, 0);
		check_numbers(r + queue_length, 1, 1000); /* the timed-out 5000 never came */
	}
	recs_free(r, n < (int)queue_length + 2 ? n : (int)queue_length + 2);
	free(r);
	EXPECT_NO_DRAIN(px);
}

/* Two remote endpoints with full queues and a small buffer: each drain serves the other. */
static void t_drain_fair(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL), n = 0;
	struct rec r[20];
	bool saw[2] = { false, false };

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	for (uint32_t i = 0; i < queue_length; i++) {
		CHECK_RC(send_num(l, R_EP, 0, i, DVK_CALL_NONBLOCK, 0), 0);
		CHECK_RC(send_num(l, 6, 0, i, DVK_CALL_NONBLOCK, 0), 0);
	}
	for (int d = 0; d < 2; d++)
		CHECK_RC(drain_once(px, 4 * REC(8), 0, SOON, r, &n, 20, NULL), 0);
	for (int i = 0; i < n && i < 20; i++)
		saw[r[i].h.dst == 6] = true;
	CHECKF(saw[0] && saw[1], "two drains of 4 records served only endpoint %d",
	       saw[0] ? R_EP : 6);
	recs_free(r, n < 20 ? n : 20);
}

/* ====================================================================================== */
/* sendrec to a remote endpoint: the request out by drain, the answer in by inject          */
/* ====================================================================================== */

/* Drains one record and checks it is the request (src, src_gen, type, pattern). */
#define DRAIN_REQUEST(px, dc, src, src_gen, type, len, seed)                              \
	drain_request_at(__FILE__, __LINE__, px, dc, src, src_gen, type, len, seed)

static struct rec drain_request_at(const char *file, int line, int px, uint32_t dc,
				   uint32_t src, uint32_t src_gen, int32_t type, uint32_t len,
				   unsigned seed)
{
	struct rec r = { 0 };

	if (drain_n_at(file, line, px, &r, 1) != 1)
		return r;
	if (r.h.kind != DVK_PROXY_REQUEST || r.h.dc != dc || r.h.dst != R_EP ||
	    r.h.dst_gen != R_GEN || r.h.src != src || r.h.src_gen != src_gen || r.h.type != type ||
	    r.h.size != len || !r.h.request_id || r.h.bits || r.h.status ||
	    !is_pattern(r.data, len, seed)) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "drained kind %u dc %u dst %u/%u src %u/%u type %d size %u id %llu; "
			    "want a request from %u/%u type %d size %u", r.h.kind, r.h.dc, r.h.dst,
			    r.h.dst_gen, r.h.src, r.h.src_gen, r.h.type, r.h.size,
			    (unsigned long long)r.h.request_id, src, src_gen, type, len);
	}
	return r;
}

/* Appends a REPLY from (src, src_gen) to caller (dst, dst_gen) for request `id`. */
static void add_answer(struct px_batch *b, uint32_t kind, uint32_t dc, uint32_t dst,
		       uint32_t dst_gen, uint32_t src, uint32_t src_gen, uint64_t id, int32_t type,
		       uint32_t len, unsigned seed, int32_t status)
{
	struct dvk_proxy_msg h = rec_hdr(kind, dc, dst, dst_gen, src, src_gen);
	unsigned char *p = pattern_new(len, seed);

	h.request_id = id;
	h.type = type;
	h.size = len;
	h.status = status;
	px_batch_add(b, &h, p);
	free(p);
}

static void inject_reply(int px, uint32_t dc, uint32_t dst, uint32_t dst_gen, uint64_t id,
			 int32_t type, uint32_t len, unsigned seed)
{
	struct px_batch b = { 0 };

	add_answer(&b, DVK_PROXY_REPLY, dc, dst, dst_gen, R_EP, R_GEN, id, type, len, seed, 0);
	INJECT_ALL(px, &b);
	px_batch_free(&b);
}

static void inject_fail(int px, uint32_t dc, uint32_t dst, uint32_t dst_gen, uint64_t id,
			int32_t status)
{
	struct px_batch b = { 0 };

	add_answer(&b, DVK_PROXY_FAIL, dc, dst, dst_gen, R_EP, R_GEN, id, 0, 0, 0, status);
	INJECT_ALL(px, &b);
	px_batch_free(&b);
}

/* The request comes out as a REQUEST record; the injected REPLY completes the sendrec. */
static void t_sendrec_reply(void)
{
	const struct { uint32_t req, rep; } sizes[] = {
		{ 100, 50 }, { 0, max_payload }, { max_payload, 0 }, { 13, 13 },
	};
	uint32_t dc = dc_new(8);
	int px = px_open();

	remote_std(px, dc);
	for (int i = 0; i < 4; i++) {
		uint32_t gc = 0;
		struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 20 + i,
				       .len = sizes[i].req, .seed = i, .want_type = -30 - i,
				       .want_len = sizes[i].rep, .want_seed = 50 + i,
				       .then_empty = true };
		pid_t pid = SPAWN(caller, &ca, ca.fd);
		struct rec r;

		dev_close(ca.fd);
		r = DRAIN_REQUEST(px, dc, 1, gc, 20 + i, sizes[i].req, i);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
		CHECK_EQ(ep_get(dc, 1, "calls"), 1);
		inject_reply(px, dc, 1, gc, r.h.request_id, -30 - i, sizes[i].rep, 50 + i);
		CHECK_CHILD(pid);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
		recs_free(&r, 1);
	}
	EXPECT_NO_DRAIN(px);
}

/* An injected FAIL ends the sendrec with its status. */
static void t_sendrec_fail(void)
{
	static const int statuses[] = { -ESRCH, -EHOSTUNREACH, -ECONNRESET };
	uint32_t dc = dc_new(8);
	int px = px_open();

	remote_std(px, dc);
	for (int i = 0; i < 3; i++) {
		uint32_t gc = 0;
		struct call_arg ca = { .fd = ep_open(dc, 2, &gc), .dst = R_EP, .type = 1, .len = 8,
				       .seed = i, .want_rc = statuses[i], .then_empty = true };
		pid_t pid = SPAWN(caller, &ca, ca.fd);
		struct rec r;

		dev_close(ca.fd);
		r = DRAIN_REQUEST(px, dc, 2, gc, 1, 8, i);
		inject_fail(px, dc, 2, gc, r.h.request_id, statuses[i]);
		CHECK_CHILD(pid);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
		recs_free(&r, 1);
	}
	EXPECT_NO_DRAIN(px);
}

/* A sendrec whose outcome must be a failure, and never a kernel-internal restart code. */
struct fail_caller_arg {
	int fd;
};

static void fail_caller(void *p)
{
	struct fail_caller_arg *a = p;
	uint64_t n = 1, rep;
	struct dvk_sendrec s;
	int rc;

	sendrec_init(&s, R_EP, 0, 1, &n, 8, &rep, 8, SOON);
	rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s);
	CHECKF(rc < 0 && rc > -512, "sendrec: %s", rcname(rc));
	CHECK_EQ(s.flags, 0);
}

/*
 * The kernel's restart codes (ERESTARTSYS 512 .. ERESTART_RESTARTBLOCK 516) are not errnos a
 * process may see: an injected FAIL with one is refused, or at least does not reach the
 * caller as that code. (If it did, a pending signal would restart the sendrec and send the
 * request again.)
 */
static void t_sendrec_fail_restart_code(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open();

	remote_std(px, dc);
	for (int32_t code = 512; code <= 516; code++) {
		uint32_t gc = 0;
		struct fail_caller_arg a = { .fd = ep_open(dc, 1, &gc) };
		pid_t pid = SPAWN(fail_caller, &a, a.fd);
		struct px_batch b = { 0 };
		struct dvk_proxy_batch res;
		struct rec r;

		dev_close(a.fd);
		CHECK_EQ(DRAIN_N(px, &r, 1), 1);
		add_answer(&b, DVK_PROXY_FAIL, dc, 1, gc, R_EP, R_GEN, r.h.request_id, 0, 0, 0,
			   -code);
		CHECK_RC(px_inject(px, b.buf, (uint32_t)b.len, &res), 0);
		CHECKF(res.error == 0 || res.error == -EINVAL, "FAIL with status %d: error %s",
		       -code, rcname(res.error));
		if (res.error)
			inject_fail(px, dc, 1, gc, r.h.request_id, -ESRCH);
		CHECK_CHILD(pid);
		recs_free(&r, 1);
		px_batch_free(&b);
	}
}

/* A reply injected after the caller timed out is accepted and dropped. */
static void t_sendrec_late_reply(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open(), done[2], hold[2];
	struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 3, .len = 8,
			       .seed = 3, .deadline_ms = 300, .want_rc = -ETIMEDOUT,
			       .then_empty = true };
	struct rec r;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(done);
	pipe_new(hold);
	ca.done_w = done[1];
	ca.hold_r = hold[0];
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	r = DRAIN_REQUEST(px, dc, 1, gc, 3, 8, 3);
	EXPECT_BYTE(done[0], 'D');
	CHECK_EQ(ep_get(dc, 1, "calls"), 0);
	/* Without DVK_PROXY_VERDICTS no withdrawal is asked: the answer stays owed. */
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	EXPECT_NO_DRAIN(px);
	inject_reply(px, dc, 1, gc, r.h.request_id, 4, 8, 4);
	inject_fail(px, dc, 1, gc, r.h.request_id, -ESRCH);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	put_byte(hold[1], 'G');
	CHECK_CHILD(pid);
	recs_free(&r, 1);
	EXPECT_NO_DRAIN(px);
}

/* Two sendrecs in a row; each must get its own reply. */
struct two_calls_arg {
	int fd;
};

static void two_calls(void *p)
{
	struct two_calls_arg *a = p;

	for (int i = 0; i < 2; i++) {
		struct call_arg ca = { .fd = a->fd, .dst = R_EP, .type = 10 + i, .len = 8,
				       .seed = i, .want_type = 100 + i, .want_len = 16,
				       .want_seed = 200 + i };

		caller(&ca);
	}
	EXPECT_EMPTY(a->fd);
}

/* A duplicate reply, or one for a request already answered, reaches no one. */
static void t_sendrec_duplicate_reply(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open();
	struct two_calls_arg a = { .fd = ep_open(dc, 1, &gc) };
	struct px_batch b = { 0 };
	struct rec r1, r2;
	pid_t pid;

	remote_std(px, dc);
	pid = SPAWN(two_calls, &a, a.fd);
	dev_close(a.fd);
	r1 = DRAIN_REQUEST(px, dc, 1, gc, 10, 8, 0);
	/* The reply and its duplicate in one batch: both taken, one delivered. */
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, r1.h.request_id, 100, 16, 200, 0);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, r1.h.request_id, 666, 16, 9, 0);
	INJECT_ALL(px, &b);
	r2 = DRAIN_REQUEST(px, dc, 1, gc, 11, 8, 1);
	CHECK(r2.h.request_id != r1.h.request_id);
	/* The first call's reply again, now that the second waits: it must not complete it. */
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, r1.h.request_id, 666, 16, 9, 0);
	add_answer(&b, DVK_PROXY_FAIL, dc, 1, gc, R_EP, R_GEN, r1.h.request_id, 0, 0, 0, -EIO);
	INJECT_ALL(px, &b);
	sleep_ms(20);
	CHECK_EQ(ep_get(dc, 1, "calls"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, r2.h.request_id, 101, 16, 201, 0);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, r2.h.request_id, 666, 16, 9, 0);
	INJECT_ALL(px, &b);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	recs_free(&r1, 1);
	recs_free(&r2, 1);
	px_batch_free(&b);
}

/* Replies that do not match the waiting call exactly are taken and reach no one. */
static void t_sendrec_reply_mismatch(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open(), other = ep_open(dc, 2, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 1, .len = 8,
			       .seed = 1, .want_type = 2, .want_len = 8, .want_seed = 2,
			       .then_empty = true };
	struct px_batch b = { 0 };
	struct dvk_proxy_batch res;
	struct rec r;
	pid_t pid;
	uint64_t id;

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	WAIT_EP(dc, R_EP, "queued", 1);
	/* Before the drain took the request, even a reply with the right id reaches no one. */
	for (uint64_t guess = 1; guess <= 3; guess++)
		add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, guess, 9, 8, 9, 0);
	INJECT_ALL(px, &b);
	r = DRAIN_REQUEST(px, dc, 1, gc, 1, 8, 1);
	id = r.h.request_id;
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc + 1, R_EP, R_GEN, id, 9, 8, 9, 0);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN, id + 1, 9, 8, 9, 0);
	add_answer(&b, DVK_PROXY_REPLY, dc, 2, 1, R_EP, R_GEN, id, 9, 8, 9, 0);
	add_answer(&b, DVK_PROXY_REPLY, dc, 3, 1, R_EP, R_GEN, id, 9, 8, 9, 0); /* unbound */
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, gc, 6, 3, id, 9, 8, 9, 0); /* another remote */
	add_answer(&b, DVK_PROXY_FAIL, dc, 1, gc + 1, R_EP, R_GEN, id, 0, 0, 0, -EIO);
	INJECT_ALL(px, &b);
	sleep_ms(20);
	CHECK_EQ(ep_get(dc, 1, "calls"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	EXPECT_EMPTY(other);
	/* A REPLY or FAIL must name the caller's generation. */
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_REPLY, dc, 1, 0, R_EP, R_GEN, id, 9, 8, 9, 0);
	CHECK_RC(px_inject(px, b.buf, (uint32_t)b.len, &res), 0);
	CHECK_EQ(res.error, -EINVAL);
	CHECK_EQ(res.count, 0);
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_FAIL, dc, 1, 0, R_EP, R_GEN, id, 0, 0, 0, -EIO);
	CHECK_RC(px_inject(px, b.buf, (uint32_t)b.len, &res), 0);
	CHECK_EQ(res.error, -EINVAL);
	CHECK_EQ(ep_get(dc, 1, "calls"), 1);
	inject_reply(px, dc, 1, gc, id, 2, 8, 2);
	CHECK_CHILD(pid);
	recs_free(&r, 1);
	px_batch_free(&b);
}

/* A sendrec that times out before the drain took its request never comes out. */
static void t_sendrec_timeout_undrained(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), l = ep_open(dc, 0, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = R_EP, .type = 1, .len = 8,
			       .seed = 1, .deadline_ms = 100, .want_rc = -ETIMEDOUT,
			       .then_empty = true };
	struct rec *r = calloc(queue_length + 1, sizeof(*r));
	pid_t pid;

	REQUIRE(r);
	remote_std(px, dc);
	/* Queued at the remote endpoint. */
	pid = SPAWN(caller, &ca, ca.fd);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	/* Held behind a full queue. */
	fill_remote(l, dc, 0);
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	CHECK_EQ(DRAIN_N(px, r, queue_length), queue_length);
	check_numbers(r, queue_length, 0);
	recs_free(r, queue_length);
	free(r);
	EXPECT_NO_DRAIN(px);
}

/* A sendrec to a remote endpoint interrupted by a signal (SA_RESTART or not). */
struct intr_arg {
	int fd, sig_w, out_w;
	bool restart;
};

static void intr_caller(void *p)
{
	struct intr_arg *a = p;
	uint64_t n, rep = 0;
	struct dvk_sendrec s;
	int rc;

	pattern(&n, sizeof(n), 5);
	sig_pipe_w = a->sig_w;
	catch_signal(SIGUSR1, a->restart);
	sendrec_init(&s, R_EP, 0, 5, &n, 8, &rep, 8, SOON);
	put_byte(a->out_w, 'C');
	rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s);
	if (a->restart) {
		/* Restarted after the drain took it: the same call goes on and gets the reply. */
		CHECK_RC(rc, 0);
		CHECK_EQ(rep, ~(uint64_t)5);
		CHECK_EQ(s.reply.type, 6);
		CHECK_EQ(s.flags & DVK_CALL_RESUME, 0);
	} else {
		/* Interrupted before the drain: undone. */
		CHECK_RC(rc, -EINTR);
		CHECK_EQ(s.flags & DVK_CALL_RESUME, 0);
		put_byte(a->out_w, 'E');
	}
	CHECK_EQ(sig_count, 1);
}

static void t_sendrec_restart(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open(), sig[2], out[2];
	struct intr_arg a = { .fd = ep_open(dc, 1, &gc), .restart = true };
	struct px_batch b = { 0 };
	uint64_t answer = ~(uint64_t)5;
	struct rec r;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(sig);
	pipe_new(out);
	a.sig_w = sig[1];
	a.out_w = out[1];
	pid = SPAWN(intr_caller, &a, a.fd);
	dev_close(a.fd);
	EXPECT_BYTE(out[0], 'C');
	r = DRAIN_REQUEST(px, dc, 1, gc, 5, 8, 5);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(sig[0], 'S');
	WAIT_SLEEPING(pid);
	/* The restart did not send the request again. */
	EXPECT_NO_DRAIN(px);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	{
		struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_REPLY, dc, 1, gc, R_EP, R_GEN);

		h.type = 6;
		h.request_id = r.h.request_id;
		h.size = 8;
		px_batch_add(&b, &h, &answer);
	}
	INJECT_ALL(px, &b);
	CHECK_CHILD(pid);
	recs_free(&r, 1);
	px_batch_free(&b);
}

static void t_sendrec_eintr(void)
{
	uint32_t dc = dc_new(8);
	int px = px_open(), sig[2], out[2];
	struct intr_arg a = { .fd = ep_open(dc, 1, NULL), .restart = false };
	pid_t pid;

	remote_std(px, dc);
	pipe_new(sig);
	pipe_new(out);
	a.sig_w = sig[1];
	a.out_w = out[1];
	pid = SPAWN(intr_caller, &a, a.fd);
	dev_close(a.fd);
	EXPECT_BYTE(out[0], 'C');
	WAIT_EP(dc, R_EP, "queued", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(out[0], 'E');
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	CHECK_CHILD(pid);
}

/* Several local callers against a remote endpoint the test serves, batch by batch. */
struct many_calls_arg {
	int fd;
	uint32_t id, count;
};

static void many_calls(void *p)
{
	struct many_calls_arg *a = p;

	for (uint32_t i = 0; i < a->count; i++) {
		unsigned char req[16], rep[32];
		struct dvk_sendrec s;
		int rc;

		pattern(req, sizeof(req), a->id * 1000 + i);
		sendrec_init(&s, R_EP, R_GEN, (int32_t)(a->id * 1000 + i), req, sizeof(req), rep,
			     sizeof(rep), SOON);
		rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s);
		if (rc || s.reply.type != (int32_t)(a->id * 1000 + i + 1) ||
		    s.reply.size != sizeof(req) || memcmp(rep, req, sizeof(req)) ||
		    s.reply.peer != R_EP || s.reply.peer_gen != R_GEN) {
			tap_fail("caller %u, call %u: %s, type %d, size %u", a->id, i, rcname(rc),
				 s.reply.type, s.reply.size);
			return;
		}
	}
}

static void t_sendrec_many(void)
{
	enum { CALLERS = 4, EACH = 100, TOTAL = CALLERS * EACH };
	uint32_t dc = dc_new(8), gens[CALLERS];
	int px = px_open(), served = 0, drains = 0;
	struct rec *r = calloc(TOTAL, sizeof(*r));
	struct px_batch b = { 0 };
	pid_t pids[CALLERS];
	uint64_t end = SOON;

	REQUIRE(r);
	remote_std(px, dc);
	for (uint32_t c = 0; c < CALLERS; c++) {
		struct many_calls_arg a = { .fd = ep_open(dc, c, &gens[c]), .id = c, .count = EACH };

		pids[c] = SPAWN(many_calls, &a, a.fd);
		dev_close(a.fd);
	}
	while (served < TOTAL && now_ns() < end) {
		int n = 0, rc = drain_once(px, dbuf_len, 0, end, r, &n, TOTAL, NULL);

		if (rc) {
			tap_fail("drain after %d served: %s", served, errname(-rc));
			break;
		}
		drains++;
		px_batch_reset(&b);
		for (int i = 0; i < n && i < TOTAL; i++) {
			struct dvk_proxy_msg h;

			if (r[i].h.kind != DVK_PROXY_REQUEST || r[i].h.src >= CALLERS ||
			    r[i].h.src_gen != gens[r[i].h.src]) {
				tap_fail("record kind %u from %u", r[i].h.kind, r[i].h.src);
				continue;
			}
			h = rec_hdr(DVK_PROXY_REPLY, dc, r[i].h.src, r[i].h.src_gen, R_EP, R_GEN);
			h.request_id = r[i].h.request_id;
			h.type = r[i].h.type + 1;
			h.size = r[i].h.size;
			px_batch_add(&b, &h, r[i].data);
		}
		recs_free(r, n < TOTAL ? n : TOTAL);
		INJECT_ALL(px, &b);
		served += n;
	}
	CHECK_EQ(served, TOTAL);
	for (int c = 0; c < CALLERS; c++)
		CHECK_CHILD(pids[c]);
	tap_diag("%d requests served in %d drains", served, drains);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	free(r);
	px_batch_free(&b);
}

/* A reply too large for the caller's buffer is kept for a resumed call, as a local one is. */
struct small_caller_arg {
	int fd, done_w;
};

static void small_caller(void *p)
{
	struct small_caller_arg *a = p;
	unsigned char *rep = malloc(1000);
	struct dvk_sendrec s;
	uint64_t n;

	REQUIRE(rep);
	pattern(&n, sizeof(n), 0);
	sendrec_init(&s, R_EP, 0, 1, &n, 8, rep, 10, SOON);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), -EMSGSIZE);
	CHECK_EQ(s.reply.size, 1000);
	CHECK(s.flags & DVK_CALL_RESUME);
	CHECK(s.call != 0);
	s.reply.size = 1000;
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), 0);
	CHECK_EQ(s.reply.size, 1000);
	CHECK_EQ(s.reply.type, 2);
	CHECK(is_pattern(rep, 1000, 7));
	CHECK_EQ(s.flags, 0);
	CHECK_EQ(s.call, 0);
	free(rep);
}

static void t_sendrec_reply_too_big(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = px_open();
	struct small_caller_arg a = { .fd = ep_open(dc, 1, &gc) };
	pid_t pid;
	struct rec r;

	remote_std(px, dc);
	pid = SPAWN(small_caller, &a, a.fd);
	dev_close(a.fd);
	r = DRAIN_REQUEST(px, dc, 1, gc, 1, 8, 0);
	inject_reply(px, dc, 1, gc, r.h.request_id, 2, 1000, 7);
	CHECK_CHILD(pid);
	recs_free(&r, 1);
	EXPECT_NO_DRAIN(px);
}

/* ====================================================================================== */
/* Injecting what remote endpoints send to local ones                                      */
/* ====================================================================================== */

/* Injected messages reach local receives with the remote endpoint as their source. */
static void t_inject_message(void)
{
	static const uint32_t sizes[] = { 0, 1, 13, 64 };
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl), ready[2];
	struct px_batch b = { 0 };
	struct recv_arg ra = { .fd = ep_open(dc, 1, NULL), .from = R_EP, .want_rc = 0 };
	pid_t pid;

	remote_std(px, dc);
	for (int i = 0; i < 4; i++)
		add_msg(&b, dc, 0, i % 2 ? gl : 0, -5 - i, sizes[i], i);
	add_msg(&b, dc, 0, gl, INT32_MIN, max_payload, 9);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "queued"), 5);
	CHECK(poll_now(l) & POLLIN);
	for (int i = 0; i < 4; i++)
		EXPECT_MSG(l, R_EP, R_GEN, 0, -5 - i, sizes[i], i);
	EXPECT_MSG(l, R_EP, R_GEN, 0, INT32_MIN, max_payload, 9);
	EXPECT_EMPTY(l);
	/* receive(from the remote endpoint) matches its number and generation. */
	px_batch_reset(&b);
	add_msg(&b, dc, 0, gl, 1, 8, 1);
	INJECT_ALL(px, &b);
	{
		uint64_t v;

		CHECK_RC(mrecv(l, R_EP, R_GEN + 1, &v, 8, DVK_CALL_NONBLOCK, 0, NULL), -ENOENT);
		CHECK_RC(mrecv(l, 4, 0, &v, 8, DVK_CALL_NONBLOCK, 0, NULL), -EAGAIN);
		CHECK_RC(mrecv(l, R_EP, R_GEN, &v, 8, DVK_CALL_NONBLOCK, 0, NULL), 0);
	}
	/* An injected message wakes a waiting receive. */
	pipe_new(ready);
	ra.ready_w = ready[1];
	pid = SPAWN(receiver, &ra, ra.fd);
	dev_close(ra.fd);
	EXPECT_BYTE(ready[0], 'R');
	WAIT_EP(dc, 1, "receivers", 1);
	px_batch_reset(&b);
	add_msg(&b, dc, 1, 0, 2, 8, 2);
	INJECT_ALL(px, &b);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "received"), 6);
	px_batch_free(&b);
}

/* A receiver of numbered injected messages: 'count' in order, then nothing. */
struct seq_arg {
	int fd, count;
};

static void seq_receiver(void *p)
{
	struct seq_arg *a = p;

	for (int i = 0; i < a->count; i++) {
		unsigned char buf[64];
		struct dvk_msg m;
		int rc = mrecv(a->fd, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m);

		if (rc || m.type != i || m.size != (uint32_t)(i % 64) ||
		    !is_pattern(buf, m.size, i) || m.peer != R_EP || m.peer_gen != R_GEN) {
			tap_fail("message %d: %s, type %d, size %u", i, rcname(rc), m.type, m.size);
			return;
		}
	}
	EXPECT_EMPTY(a->fd);
}

/* 1000 records in one inject call, to 10 local endpoints: all taken, each in order. */
static void t_inject_many(void)
{
	enum { DESTS = 10, EACH = 100 };
	uint32_t dc = dc_new(16), gens[DESTS];
	int px = px_open(), fds[DESTS];
	struct px_batch b = { 0 };
	pid_t pids[DESTS];

	if (2 * queue_length < EACH) {
		tap_diag("queue_length %u is too small for this case: skipped", queue_length);
		return;
	}
	remote_std(px, dc);
	/* Endpoints 0..DESTS, R_EP left out. */
	for (int d = 0; d < DESTS; d++)
		fds[d] = ep_open(dc, d + (d >= R_EP), &gens[d]);
	for (int i = 0; i < EACH; i++)
		for (int d = 0; d < DESTS; d++)
			add_msg(&b, dc, d + (d >= R_EP), gens[d], i, i % 64, i);
	INJECT_ALL(px, &b);
	for (int d = 0; d < DESTS; d++) {
		struct seq_arg a = { .fd = fds[d], .count = EACH };

		pids[d] = SPAWN(seq_receiver, &a, fds[d]);
		dev_close(fds[d]);
	}
	for (int d = 0; d < DESTS; d++)
		CHECK_CHILD(pids[d]);
	px_batch_free(&b);
}

/* A local server: answers requests from the remote endpoint, by REPLY_RECEIVE, then REPLY. */
struct server_arg {
	int fd, count;
	uint32_t req_len[4], rep_len[4];
};

static void server(void *p)
{
	struct server_arg *a = p;
	unsigned char *buf = malloc(max_payload), *out = malloc(max_payload);
	struct dvk_reply_receive rr;
	struct dvk_msg m;

	REQUIRE(buf && out);
	CHECK_RC(mrecv(a->fd, DVK_ANY, 0, buf, max_payload, 0, SOON, &m), 0);
	for (int i = 0; i < a->count; i++) {
		CHECK_EQ(m.flags, DVK_MSG_REQUEST);
		CHECK_EQ(m.peer, R_EP);
		CHECK_EQ(m.peer_gen, R_GEN);
		CHECK_EQ(m.request_id, 1000 + i);
		CHECK_EQ(m.type, 40 + i);
		CHECK_EQ(m.size, a->req_len[i]);
		CHECK(is_pattern(buf, m.size, 40 + i));
		pattern(out, a->rep_len[i], 60 + i);
		if (i + 1 < a->count) {
			memset(&rr, 0, sizeof(rr));
			rr.reply.msg = (struct dvk_msg){ .peer = m.peer, .peer_gen = m.peer_gen,
							 .type = 60 + i, .request_id = m.request_id,
							 .payload = (uintptr_t)out,
							 .size = a->rep_len[i] };
			rr.receive = (struct dvk_receive){ .from = DVK_ANY, .deadline_ns = SOON,
				.msg = { .payload = (uintptr_t)buf, .size = max_payload } };
			CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_REPLY_RECEIVE, &rr), 0);
			m = rr.receive.msg;
		} else {
			CHECK_RC(mreply(a->fd, &m, 60 + i, out, a->rep_len[i]), 0);
		}
	}
	free(buf);
	free(out);
}

/* Injected requests reach a local server; its replies come out as REPLY records. */
static void t_inject_request(void)
{
	struct server_arg sa = { .count = 3, .req_len = { 8, max_payload, 0 },
				 .rep_len = { 16, 0, max_payload } };
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open();
	struct px_batch b = { 0 };
	struct rec r[3];
	pid_t pid;

	remote_std(px, dc);
	sa.fd = ep_open(dc, 0, &gs);
	for (int i = 0; i < sa.count; i++) {
		struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_REQUEST, dc, 0, i ? gs : 0, R_EP, R_GEN);
		unsigned char *pl = pattern_new(sa.req_len[i], 40 + i);

		h.request_id = 1000 + i;
		h.type = 40 + i;
		h.size = sa.req_len[i];
		px_batch_add(&b, &h, pl);
		free(pl);
	}
	INJECT_ALL(px, &b);
	pid = SPAWN(server, &sa, sa.fd);
	dev_close(sa.fd);
	CHECK_EQ(DRAIN_N(px, r, 3), 3);
	for (int i = 0; i < 3; i++) {
		CHECK_REC(&r[i], DVK_PROXY_REPLY, dc, R_EP, R_GEN, 0, gs, 60 + i);
		CHECK_EQ(r[i].h.request_id, 1000 + i);
		CHECK_EQ(r[i].h.size, sa.rep_len[i]);
		CHECK(is_pattern(r[i].data, r[i].h.size, 60 + i));
	}
	recs_free(r, 3);
	CHECK_CHILD(pid);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * A receive that cannot copy an injected request out (a bad buffer: EFAULT) leaves it queued:
 * its remote caller still gets the reply of the receive that can.
 */
static void t_inject_request_efault(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open(), s;
	struct px_batch b = { 0 };
	struct dvk_proxy_msg h;
	struct dvk_msg m;
	uint64_t n = 77, got = 0;
	struct rec r;

	remote_std(px, dc);
	s = ep_open(dc, 0, &gs);
	h = rec_hdr(DVK_PROXY_REQUEST, dc, 0, gs, R_EP, R_GEN);
	h.request_id = 900;
	h.size = sizeof(n);
	px_batch_add(&b, &h, &n);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(s, DVK_ANY, 0, bad_page(), sizeof(got), DVK_CALL_NONBLOCK, 0, NULL),
		 -EFAULT);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &got, sizeof(got), DVK_CALL_NONBLOCK, 0, &m), 0);
	CHECK_EQ(got, 77);
	CHECK_EQ(m.request_id, 900);
	CHECK_RC(mreply(s, &m, 5, NULL, 0), 0);
	if (DRAIN_N(px, &r, 1) == 1) {
		CHECK_REC(&r, DVK_PROXY_REPLY, dc, R_EP, R_GEN, 0, gs, 5);
		CHECK_EQ(r.h.request_id, 900);
		recs_free(&r, 1);
	}
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* A reply to a remote caller never waits, even when the remote endpoint's queue is full. */
static void t_inject_reply_full_remote(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open(), l = ep_open(dc, 0, NULL), s = ep_open(dc, 1, &gs);
	struct rec *r = calloc(queue_length + 1, sizeof(*r));
	struct px_batch b = { 0 };
	struct dvk_msg m;
	uint64_t v;

	REQUIRE(r);
	remote_std(px, dc);
	fill_remote(l, dc, 0);
	add_answer(&b, DVK_PROXY_REQUEST, dc, 1, gs, R_EP, R_GEN, 9, 1, 8, 1, 0);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_RC(mreply(s, &m, 2, &v, 8), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length + 1);
	CHECK_EQ(DRAIN_N(px, r, queue_length + 1), queue_length + 1);
	check_numbers(r, queue_length, 0);
	CHECK_REC(&r[queue_length], DVK_PROXY_REPLY, dc, R_EP, R_GEN, 1, gs, 2);
	CHECK_EQ(r[queue_length].h.request_id, 9);
	recs_free(r, queue_length + 1);
	free(r);
	px_batch_free(&b);
}

/* A server that receives one request, then waits to be killed. */
struct holder_arg {
	int fd, out_w;
};

static void holder(void *p)
{
	struct holder_arg *a = p;
	unsigned char buf[64];
	struct dvk_msg m;

	CHECK_RC(mrecv(a->fd, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK_EQ(m.flags, DVK_MSG_REQUEST);
	put_byte(a->out_w, tap_failed ? 'F' : 'H');
	pause();
}

/*
 * A local server killed with injected requests received (owed), queued, and held behind its
 * full queue: each comes out of the drain as a FAIL record with status -ESRCH; plain
 * messages do not.
 */
static void t_inject_request_server_dies(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open(), out[2];
	struct holder_arg ha = { .fd = ep_open(dc, 0, &gs) };
	struct px_batch b = { 0 };
	struct rec r[4];
	int n = 0;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(out);
	ha.out_w = out[1];
	add_answer(&b, DVK_PROXY_REQUEST, dc, 0, gs, R_EP, R_GEN, 71, 33, 8, 1, 0);
	INJECT_ALL(px, &b);
	pid = SPAWN(holder, &ha, ha.fd);
	dev_close(ha.fd);
	EXPECT_BYTE(out[0], 'H');
	px_batch_reset(&b);
	add_answer(&b, DVK_PROXY_REQUEST, dc, 0, gs, R_EP, R_GEN, 72, 34, 20, 2, 0);
	for (uint32_t i = 1; i < queue_length; i++)
		add_msg(&b, dc, 0, gs, 35, 8, 3);
	add_answer(&b, DVK_PROXY_REQUEST, dc, 0, gs, R_EP, R_GEN, 73, 36, 8, 4, 0);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	EXPECT_NO_DRAIN(px);
	kill_child(pid);
	WAIT_UNBOUND(dc, 0);
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 4, NULL), 0);
	CHECK_EQ(n, 3);
	for (int i = 0; i < n && i < 3; i++) {
		const char *which = r[i].h.request_id == 71 ? "received" :
				    r[i].h.request_id == 72 ? "queued" : "held";

		CHECKF(r[i].h.request_id >= 71 && r[i].h.request_id <= 73, "request_id %llu",
		       (unsigned long long)r[i].h.request_id);
		CHECK_EQ(r[i].h.kind, DVK_PROXY_FAIL);
		CHECK_EQ(r[i].h.dc, dc);
		CHECK_EQ(r[i].h.dst, R_EP);
		CHECK_EQ(r[i].h.dst_gen, R_GEN);
		CHECK_EQ(r[i].h.src, 0);
		CHECK_EQ(r[i].h.src_gen, gs);
		CHECK_EQ(r[i].h.status, -ESRCH);
		CHECK_EQ(r[i].h.size, 0);
		CHECK_EQ(r[i].h.bits, 0);
		/* As an inject requires of FAIL records, so that one can be forwarded as is. */
		CHECKF(r[i].h.type == 0, "the FAIL record of the %s request has type %d", which,
		       r[i].h.type);
	}
	CHECK(n != 3 || (r[0].h.request_id != r[1].h.request_id &&
			 r[1].h.request_id != r[2].h.request_id &&
			 r[0].h.request_id != r[2].h.request_id));
	recs_free(r, n < 4 ? n : 4);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* Injected notifications coalesce per source and are received before messages. */
static void t_inject_notify(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl), ready[2];
	struct recv_arg ra = { .fd = ep_open(dc, 1, NULL), .from = 6, .want_rc = 0 };
	struct px_batch b = { 0 };
	struct dvk_proxy_msg h;
	struct dvk_msg m;
	pid_t pid;

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	h = rec_hdr(DVK_PROXY_NOTIFY, dc, 0, gl, R_EP, R_GEN);
	h.bits = 1;
	px_batch_add(&b, &h, NULL);
	add_msg(&b, dc, 0, gl, 1, 8, 1);
	h.bits = 6;
	h.dst_gen = 0;
	px_batch_add(&b, &h, NULL);
	h = rec_hdr(DVK_PROXY_NOTIFY, dc, 0, gl, 6, 3);
	h.bits = 0x80000000u;
	px_batch_add(&b, &h, NULL);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "notes"), 2);
	for (int i = 0; i < 2; i++) {
		CHECK_RC(mrecv(l, DVK_ANY, 0, NULL, 0, 0, SOON, &m), 0);
		CHECK_EQ(m.flags, DVK_MSG_NOTIFY);
		CHECK_EQ(m.peer, i ? 6 : R_EP);
		CHECK_EQ(m.peer_gen, i ? 3 : R_GEN);
		CHECK_EQ(m.bits, i ? 0x80000000u : 7u);
		CHECK_EQ(m.size, 0);
		CHECK_EQ(m.type, 0);
	}
	EXPECT_MSG(l, R_EP, R_GEN, 0, 1, 8, 1);
	EXPECT_EMPTY(l);
	/* A notification wakes a receive waiting for its source. */
	pipe_new(ready);
	ra.ready_w = ready[1];
	pid = SPAWN(receiver, &ra, ra.fd);
	dev_close(ra.fd);
	EXPECT_BYTE(ready[0], 'R');
	WAIT_EP(dc, 1, "receivers", 1);
	px_batch_reset(&b);
	h = rec_hdr(DVK_PROXY_NOTIFY, dc, 1, 0, 6, 3);
	h.bits = 2;
	px_batch_add(&b, &h, NULL);
	INJECT_ALL(px, &b);
	CHECK_CHILD(pid);
	px_batch_free(&b);
}

/*
 * An inject stops at the first record it cannot take: count and size say what it took,
 * error why it stopped. The records before were delivered, those from the bad one on not.
 */
static void t_inject_errors(void)
{
	uint32_t dc = dc_new(8), dc2 = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl), l2 = ep_open(dc2, 0, NULL);
	struct px_batch b = { 0 };
	unsigned char *big = pattern_new(max_payload + 8, 0);
	struct dvk_proxy_msg base = rec_hdr(DVK_PROXY_MESSAGE, dc, 0, gl, R_EP, R_GEN);
	struct {
		const char *what;
		struct dvk_proxy_msg h;
		int error;
	} bad[] = {
		{ "source not registered", base, -EADDRNOTAVAIL },
		{ "source generation not registered", base, -EADDRNOTAVAIL },
		{ "source in another DC", base, -EADDRNOTAVAIL },
		{ "unknown DC", base, -EADDRNOTAVAIL },
		{ "destination not bound", base, -ENOENT },
		{ "destination stale generation", base, -ENOENT },
		{ "destination a remote endpoint", base, -ENOENT },
		{ "destination another remote endpoint", base, -ENOENT },
		{ "destination beyond the slots", base, -ENOENT },
		{ "destination DVK_ANY", base, -EINVAL },
		{ "kind 0", base, -EINVAL },
		{ "kind 6", base, -EINVAL },
		{ "kind ~0", base, -EINVAL },
		{ "message with status", base, -EINVAL },
		{ "message with bits", base, -EINVAL },
		{ "message with request_id", base, -EINVAL },
		{ "request with status", base, -EINVAL },
		{ "notify with bits 0", base, -EINVAL },
		{ "notify with a payload", base, -EINVAL },
		{ "notify with a type", base, -EINVAL },
		{ "fail with status 0", base, -EINVAL },
		{ "fail with a positive status", base, -EINVAL },
		{ "fail with a payload", base, -EINVAL },
		{ "source generation 0", base, -EINVAL },
		{ "payload above max_payload", base, -EMSGSIZE },
	};
	enum { NBAD = sizeof(bad) / sizeof(bad[0]) };

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	bad[0].h.src = 4;
	bad[1].h.src_gen = R_GEN + 1;
	bad[2].h.dc = dc2;
	bad[3].h.dc = dc_base + DCS_PER_CASE - 1;
	bad[4].h.dst = 3;
	bad[5].h.dst_gen = gl + 1;
	bad[6].h.dst = R_EP;
	bad[6].h.dst_gen = 0;
	bad[7].h.dst = 6;
	bad[7].h.dst_gen = 3;
	bad[8].h.dst = 100;
	bad[8].h.dst_gen = 0;
	bad[9].h.dst = DVK_ANY;
	bad[10].h.kind = 0;
	bad[11].h.kind = 6;
	bad[12].h.kind = ~0u;
	bad[13].h.status = -EIO;
	bad[14].h.bits = 1;
	bad[15].h.request_id = 3;
	bad[16].h.kind = DVK_PROXY_REQUEST;
	bad[16].h.request_id = 3;
	bad[16].h.status = -EIO;
	bad[17].h.kind = DVK_PROXY_NOTIFY;
	bad[18].h.kind = DVK_PROXY_NOTIFY;
	bad[18].h.bits = 1;
	bad[18].h.size = 8;
	bad[19].h.kind = DVK_PROXY_NOTIFY;
	bad[19].h.bits = 1;
	bad[19].h.type = 1;
	for (int i = 20; i <= 22; i++) {
		bad[i].h.kind = DVK_PROXY_FAIL;
		bad[i].h.request_id = 1;
		bad[i].h.status = -ESRCH;
	}
	bad[20].h.status = 0;
	bad[21].h.status = ESRCH;
	bad[22].h.size = 8;
	bad[23].h.src_gen = 0;
	bad[24].h.size = max_payload + 1;

	for (int i = 0; i < NBAD; i++) {
		struct dvk_proxy_batch res;
		int rc;

		px_batch_reset(&b);
		add_msg(&b, dc, 0, gl, 2 * i, 8, 2 * i);
		px_batch_add(&b, &bad[i].h, big);
		add_msg(&b, dc, 0, gl, 2 * i + 1, 8, 2 * i + 1);
		rc = px_inject(px, b.buf, (uint32_t)b.len, &res);
		CHECKF(rc == 0 && res.count == 1 && res.size == REC(8) && res.error == bad[i].error,
		       "%s: rc %s, count %u, size %u, error %s; want count 1, size %u, error %s",
		       bad[i].what, rcname(rc), res.count, res.size, rcname(res.error), REC(8),
		       rcname(bad[i].error));
		EXPECT_MSG(l, R_EP, R_GEN, 0, 2 * i, 8, 2 * i);
		EXPECT_EMPTY(l);
	}
	EXPECT_EMPTY(l2);

	/* Truncated records at the end of the batch: a header cut short, a payload cut short. */
	for (int cut = 0; cut < 3; cut++) {
		struct dvk_proxy_msg h = base;
		unsigned char raw[HDR + 16];

		px_batch_reset(&b);
		add_msg(&b, dc, 0, gl, 100 + cut, 8, 100 + cut);
		h.type = 200;
		h.size = cut == 2 ? 5 : 16;
		memcpy(raw, &h, HDR);
		pattern(raw + HDR, 16, 200);
		/* cut 0: 20 bytes of the header; 1: 8 of 16 payload bytes; 2: no padding after 5 */
		px_batch_raw(&b, raw, cut == 0 ? 20 : cut == 1 ? HDR + 8 : HDR + 5);
		INJECT_STOPS(px, &b, 0, 1, REC(8), -EINVAL);
		EXPECT_MSG(l, R_EP, R_GEN, 0, 100 + cut, 8, 100 + cut);
		EXPECT_EMPTY(l);
	}
	/* Continuing from where an inject stopped takes the rest. */
	px_batch_reset(&b);
	add_msg(&b, dc, 0, gl, 1, 8, 1);
	add_msg(&b, dc, 3, 0, 2, 8, 2);
	add_msg(&b, dc, 0, gl, 3, 8, 3);
	INJECT_STOPS(px, &b, 0, 1, REC(8), -ENOENT);
	{
		uint32_t g3 = 0;
		int l3 = ep_open(dc, 3, &g3);

		INJECT_STOPS(px, &b, REC(8), 2, 2 * REC(8), 0);
		EXPECT_MSG(l3, R_EP, R_GEN, 0, 2, 8, 2);
	}
	EXPECT_MSG(l, R_EP, R_GEN, 0, 1, 8, 1);
	EXPECT_MSG(l, R_EP, R_GEN, 0, 3, 8, 3);
	EXPECT_EMPTY(l);
	free(big);
	px_batch_free(&b);
}

static void t_inject_args(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };
	struct dvk_proxy_batch bad[] = {
		{ .flags = 1 },
		{ .flags = DVK_CALL_NONBLOCK << 5 },
		{ .reserved = 1 },
		{ .deadline_ns = 1 },
	};
	struct dvk_proxy_batch res;
	unsigned char *hole;
	int rc;

	remote_std(px, dc);
	add_msg(&b, dc, 0, gl, 1, 8, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bad[i].buffer = (uintptr_t)b.buf;
		bad[i].size = (uint32_t)b.len;
		rc = dvk_ioctl(px, DVK_IOC_PROXY_INJECT, &bad[i]);
		CHECKF(rc == -EINVAL, "inject #%zu: %s", i, rcname(rc));
	}
	EXPECT_EMPTY(l);
	/* An empty batch takes nothing, and that is no error. */
	CHECK_RC(px_inject(px, b.buf, 0, &res), 0);
	CHECK(res.count == 0 && res.size == 0 && res.error == 0);
	CHECK_RC(px_inject(px, NULL, 0, &res), 0);
	CHECK(res.count == 0 && res.size == 0 && res.error == 0);
	/* Records it cannot read: EFAULT, as the call's result or as why it stopped. */
	{
		void *bads[] = { NULL, bad_page(), KERNEL_ADDR };

		for (int k = 0; k < 3; k++) {
			rc = px_inject(px, bads[k], (uint32_t)b.len, &res);
			CHECKF(rc == -EFAULT || (rc == 0 && res.error == -EFAULT && res.count == 0 &&
						 res.size == 0),
			       "inject from %p: rc %s, count %u, error %s", bads[k], rcname(rc),
			       res.count, rcname(res.error));
		}
	}
	/* One good record, then one whose payload runs into a hole. */
	add_msg(&b, dc, 0, gl, 2, 64, 2);
	hole = before_hole(b.len - 32);
	memcpy(hole, b.buf, b.len - 32);
	rc = px_inject(px, hole, (uint32_t)b.len, &res);
	CHECKF(rc == -EFAULT || (rc == 0 && res.error == -EFAULT && res.count == 1 &&
				 res.size == REC(8)),
	       "inject into a hole: rc %s, count %u, size %u, error %s", rcname(rc), res.count,
	       res.size, rcname(res.error));
	if (rc == 0)
		EXPECT_MSG(l, R_EP, R_GEN, 0, 1, 8, 1);
	EXPECT_EMPTY(l);
	px_batch_free(&b);
}

/*
 * A full local queue: injected messages are held, not lost, up to queue_length of them;
 * then the inject stops with EAGAIN. Once the receiver takes some, the rest goes in, in order.
 * Notifications are not held back by the full queue.
 */
static void t_inject_full_queue(void)
{
	uint32_t hold = queue_length > DVK_INJECT_HELD_MIN ? queue_length : DVK_INJECT_HELD_MIN;
	uint32_t dc = dc_new(8), gl = 0, total = queue_length + hold + 5, taken;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };
	struct dvk_proxy_batch res;
	long long messages = stat_now("messages");
	struct dvk_proxy_msg h;
	struct dvk_msg m;

	remote_std(px, dc);
	for (uint32_t i = 0; i < total; i++)
		add_msg(&b, dc, 0, gl, (int32_t)i, 8, i);
	CHECK_RC(px_inject(px, b.buf, (uint32_t)b.len, &res), 0);
	CHECK_EQ(res.count, queue_length + hold);
	CHECK_EQ(res.size, (queue_length + hold) * REC(8));
	CHECK_EQ(res.error, -EAGAIN);
	taken = res.count;
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	CHECK_EQ(ep_get(dc, 0, "held"), hold);
	CHECK_EQ(stat_now("messages"), messages + queue_length + hold);
	/* Still full: nothing more goes in. */
	INJECT_STOPS(px, &b, res.size, 0, 0, -EAGAIN);
	/* A notification does. */
	px_batch_reset(&b);
	h = rec_hdr(DVK_PROXY_NOTIFY, dc, 0, gl, R_EP, R_GEN);
	h.bits = 4;
	px_batch_add(&b, &h, NULL);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(l, DVK_ANY, 0, NULL, 0, 0, SOON, &m), 0);
	CHECK(m.flags == DVK_MSG_NOTIFY && m.bits == 4 && m.peer == R_EP);
	/* Take 3: 3 more fit; the rest later. */
	for (uint32_t i = 0; i < 3; i++)
		EXPECT_MSG(l, R_EP, R_GEN, 0, (int32_t)i, 8, i);
	px_batch_reset(&b);
	for (uint32_t i = taken; i < total; i++)
		add_msg(&b, dc, 0, gl, (int32_t)i, 8, i);
	INJECT_STOPS(px, &b, 0, 3, 3 * REC(8), -EAGAIN);
	for (uint32_t i = 3; i < 6; i++)
		EXPECT_MSG(l, R_EP, R_GEN, 0, (int32_t)i, 8, i);
	INJECT_STOPS(px, &b, 3 * REC(8), 2, 2 * REC(8), 0);
	for (uint32_t i = 6; i < total; i++)
		EXPECT_MSG(l, R_EP, R_GEN, 0, (int32_t)i, 8, i);
	EXPECT_EMPTY(l);
	CHECK_EQ(stat_now("messages"), messages);
	px_batch_free(&b);
}

/* A server holding an injected request answers after the remote endpoint went: dropped. */
static void t_inject_reply_after_del(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open(), s;
	struct px_batch b = { 0 };
	struct dvk_msg m;
	uint64_t v;

	remote_std(px, dc);
	s = ep_open(dc, 0, &gs);
	for (uint64_t id = 5; id <= 7; id++)
		add_answer(&b, DVK_PROXY_REQUEST, dc, 0, gs, R_EP, R_GEN, id, 1, 8, 1, 0);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_EQ(m.request_id, 5);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	/* The reply is accepted and dropped; the queued requests stay requests. */
	CHECK_RC(mreply(s, &m, 2, &v, 8), 0);
	CHECK_RC(mreply(s, &m, 2, &v, 8), -EINVAL);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_EQ(m.request_id, 6);
	CHECK_EQ(m.peer, R_EP);
	CHECK_EQ(m.peer_gen, R_GEN);
	/* The number comes back with a new generation: the old incarnation's replies are dropped. */
	CHECK_RC(remote_add(px, dc, R_EP, R_GEN + 1, R_NODE), 0);
	CHECK_RC(mreply(s, &m, 2, &v, 8), 0);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_EQ(m.request_id, 7);
	EXPECT_NO_DRAIN(px);
	/* And the server closing with that request owed sends no FAIL to the new incarnation. */
	dev_close(s);
	EXPECT_NO_DRAIN(px);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	px_batch_free(&b);
}

/* ====================================================================================== */
/* Teardown: REMOTE_DEL, closing the proxy, killing it                                     */
/* ====================================================================================== */

/*
 * Everything that can wait on a remote endpoint (dc, R_EP), each in a helper that must end
 * with `want`: a sendrec whose request was drained (owed), one whose request is queued, a
 * send and a sendrec held behind the full queue, a receive from the exact incarnation. A
 * receive from the number alone must keep waiting (until its own deadline).
 */
struct scene {
	uint32_t dc;
	int want, filler, n;
	pid_t pids[8];
	struct call_arg c[3];
	struct send_arg s;
	struct recv_arg r[2];
};

/* px >= 0: the test drains the first request; else a proxy process writes 'D' on drained_r. */
static void scene_start(struct scene *sc, uint32_t dc, int want, int px, int drained_r)
{
	uint32_t g = 0;

	memset(sc, 0, sizeof(*sc));
	sc->dc = dc;
	sc->want = want;
	sc->c[0] = (struct call_arg){ .fd = ep_open(dc, 1, &g), .dst = R_EP, .type = 1, .len = 8,
				      .seed = 1, .want_rc = want, .then_empty = true };
	sc->pids[sc->n++] = SPAWN(caller, &sc->c[0], sc->c[0].fd);
	dev_close(sc->c[0].fd);
	if (px >= 0) {
		struct rec r = DRAIN_REQUEST(px, dc, 1, g, 1, 8, 1);

		recs_free(&r, 1);
	} else {
		EXPECT_BYTE(drained_r, 'D');
	}
	WAIT_EP(dc, R_EP, "owed", 1);
	sc->c[1] = sc->c[0];
	sc->c[1].fd = ep_open(dc, 2, NULL);
	sc->pids[sc->n++] = SPAWN(caller, &sc->c[1], sc->c[1].fd);
	dev_close(sc->c[1].fd);
	WAIT_EP(dc, R_EP, "queued", 1);
	sc->filler = ep_open(dc, 0, NULL);
	for (uint32_t i = 1; i < queue_length; i++)
		CHECK_RC(send_num(sc->filler, R_EP, 0, i, DVK_CALL_NONBLOCK, 0), 0);
	sc->s = (struct send_arg){ .fd = ep_open(dc, 3, NULL), .dst = R_EP, .num = 999,
				   .want_rc = want };
	sc->pids[sc->n++] = SPAWN(sender, &sc->s, sc->s.fd);
	dev_close(sc->s.fd);
	WAIT_EP(dc, R_EP, "held", 1);
	sc->c[2] = sc->c[0];
	sc->c[2].fd = ep_open(dc, 4, NULL);
	sc->pids[sc->n++] = SPAWN(caller, &sc->c[2], sc->c[2].fd);
	dev_close(sc->c[2].fd);
	WAIT_EP(dc, R_EP, "held", 2);
	sc->r[0] = (struct recv_arg){ .fd = ep_open(dc, 6, NULL), .from = R_EP, .from_gen = R_GEN,
				      .want_rc = want };
	sc->pids[sc->n++] = SPAWN(receiver, &sc->r[0], sc->r[0].fd);
	dev_close(sc->r[0].fd);
	WAIT_EP(dc, 6, "receivers", 1);
	sc->r[1] = (struct recv_arg){ .fd = ep_open(dc, 7, NULL), .from = R_EP, .from_gen = 0,
				      .deadline_ms = 700, .want_rc = -ETIMEDOUT };
	sc->pids[sc->n++] = SPAWN(receiver, &sc->r[1], sc->r[1].fd);
	dev_close(sc->r[1].fd);
	WAIT_EP(dc, 7, "receivers", 1);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
}

static void scene_end(struct scene *sc)
{
	for (int i = 0; i < sc->n; i++)
		CHECK_CHILD(sc->pids[i]);
	CHECK_EQ(ep_get(sc->dc, R_EP, "endpoint"), -1);
	dev_close(sc->filler);
}

static void del_case(bool node_down)
{
	uint32_t dc = dc_new(8), gen = 0;
	int px = px_open(), fd;
	struct dvk_stats before;
	struct px_batch b = { 0 };
	struct scene sc;

	CHECK_RC(stats_read(&before), 0);
	remote_std(px, dc);
	scene_start(&sc, dc, node_down ? -EHOSTUNREACH : -ESRCH, px, -1);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, node_down ? DVK_REMOTE_NODE_DOWN : 0), 0);
	scene_end(&sc);
	CHECK_COUNTERS_BACK(&before);
	EXPECT_NO_DRAIN(px);
	/* Anything from the removed endpoint is refused now. */
	add_msg(&b, dc, 0, 0, 1, 8, 1);
	INJECT_STOPS(px, &b, 0, 0, 0, -EADDRNOTAVAIL);
	fd = ep_open(dc, R_EP, &gen);
	CHECK(gen > R_GEN);
	CHECK_RC(send_num(fd, R_EP, 0, 1, 0, SOON), 0);
	px_batch_free(&b);
}

static void t_del_esrch(void)
{
	del_case(false);
}

static void t_del_node_down(void)
{
	del_case(true);
}

/* A helper that receives one request, says so, and answers it when told. */
struct late_server_arg {
	int fd, out_w, go_r;
};

static void late_server(void *p)
{
	struct late_server_arg *a = p;
	struct dvk_msg m;
	uint64_t v;

	CHECK_RC(mrecv(a->fd, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_EQ(m.flags, DVK_MSG_REQUEST);
	put_byte(a->out_w, 'H');
	EXPECT_BYTE(a->go_r, 'G');
	/* The caller's node is gone: the reply is accepted, and goes nowhere. */
	CHECK_RC(mreply(a->fd, &m, 1, &v, 8), 0);
}

/* Closing the proxy file ends every waiting call with EHOSTUNREACH and removes everything. */
static void t_close_proxy(void)
{
	uint32_t dc = dc_new(16), gs = 0, gen = 0;
	struct dvk_stats before;
	struct late_server_arg la;
	struct px_batch b = { 0 };
	struct scene sc;
	int px, out[2], go[2], fd;
	pid_t server;

	CHECK_RC(stats_read(&before), 0);
	px = px_open();
	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 9, 1, 3), 0);
	CHECK_RC(remote_add(px, dc, 10, 1, 3), 0);
	scene_start(&sc, dc, -EHOSTUNREACH, px, -1);
	/* Also: a local server holding a request from a remote caller, and notifications. */
	pipe_new(out);
	pipe_new(go);
	la = (struct late_server_arg){ .fd = ep_open(dc, 8, &gs), .out_w = out[1], .go_r = go[0] };
	add_answer(&b, DVK_PROXY_REQUEST, dc, 8, gs, R_EP, R_GEN, 1, 1, 8, 1, 0);
	add_answer(&b, DVK_PROXY_REQUEST, dc, 8, gs, 9, 1, 1, 1, 8, 1, 0);
	INJECT_ALL(px, &b);
	server = SPAWN(late_server, &la, la.fd);
	dev_close(la.fd);
	EXPECT_BYTE(out[0], 'H');
	CHECK_RC(mnotify(sc.filler, 10, 0, 1), 0);
	CHECK_EQ(stat_now("remotes"), stats_get(&before, "remotes") + 3);

	dev_close(px);
	CHECK_EQ(stat_now("remotes"), stats_get(&before, "remotes"));
	scene_end(&sc);
	put_byte(go[1], 'G');
	CHECK_CHILD(server);
	CHECK_COUNTERS_BACK(&before);
	CHECK_EQ(stat_now("remotes"), 0);
	for (uint32_t e = 9; e <= 10; e++)
		CHECK_EQ(ep_get(dc, e, "endpoint"), -1);
	/* The numbers are local again, with generations beyond the remote ones. */
	fd = ep_open(dc, R_EP, &gen);
	CHECK(gen > R_GEN);
	CHECK_RC(send_num(fd, 10, 0, 1, 0, SOON), -ENOENT);
	/* And another proxy may attach. */
	px = px_open();
	CHECK_RC(remote_add(px, dc, 9, 1, 3), 0);
	px_batch_free(&b);
}

/* A proxy process: attaches, registers (dc, R_EP), drains one request, then waits. */
struct proxy_proc_arg {
	uint32_t dc;
	int out_w;
	bool block_in_drain;	/* instead: wait in a drain without a deadline */
};

static void proxy_proc(void *p)
{
	struct proxy_proc_arg *a = p;
	int px = px_open();
	struct rec r;

	remote_std(px, a->dc);
	put_byte(a->out_w, 'R');
	if (a->block_in_drain) {
		CHECK_RC(px_drain(px, dbuf, dbuf_len, 0, 0, NULL), 0);
		tap_fail("the drain returned");
		return;
	}
	CHECK_EQ(DRAIN_N(px, &r, 1), 1);
	CHECK_EQ(r.h.kind, DVK_PROXY_REQUEST);
	put_byte(a->out_w, 'D');
	for (;;)
		pause();
}

/* SIGKILL of the proxy process: the same as closing its file. */
static void t_kill_proxy(void)
{
	uint32_t dc = dc_new(8), dc2 = dc_new(8);
	struct proxy_proc_arg pa = { .dc = dc };
	struct dvk_stats before;
	struct scene sc;
	int out[2];
	pid_t proxy;

	CHECK_RC(stats_read(&before), 0);
	pipe_new(out);
	pa.out_w = out[1];
	proxy = SPAWN(proxy_proc, &pa);
	EXPECT_BYTE(out[0], 'R');
	scene_start(&sc, dc, -EHOSTUNREACH, -1, out[0]);
	kill_child(proxy);
	scene_end(&sc);
	CHECK_COUNTERS_BACK(&before);
	CHECK_EQ(stat_now("remotes"), 0);

	/* A proxy killed while it waits in a drain. */
	pa = (struct proxy_proc_arg){ .dc = dc2, .out_w = out[1], .block_in_drain = true };
	proxy = SPAWN(proxy_proc, &pa);
	EXPECT_BYTE(out[0], 'R');
	WAIT_SLEEPING(proxy);
	kill_child(proxy);
	CHECK_EQ(stat_now("remotes"), 0);
	CHECK_EQ(ep_get(dc2, R_EP, "endpoint"), -1);
	{
		int px = px_open();

		remote_std(px, dc2);
	}
}

/* Removing a remote endpoint discards what waited for the drain. */
static void t_del_discards(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = px_open(), l = ep_open(dc, 0, NULL), s = ep_open(dc, 1, &gs);
	unsigned char *p = pattern_new(1000, 1);
	struct px_batch b = { 0 };
	struct dvk_stats before;
	struct dvk_msg m;
	uint64_t v = 0;

	CHECK_RC(stats_read(&before), 0);
	remote_std(px, dc);
	for (int i = 0; i < 10; i++)
		CHECK_RC(msend(l, R_EP, 0, i, p, 1000, 0, SOON), 0);
	CHECK_RC(mnotify(l, R_EP, 0, 1), 0);
	/* A reply on its way out to the remote endpoint. */
	add_answer(&b, DVK_PROXY_REQUEST, dc, 1, gs, R_EP, R_GEN, 3, 1, 8, 1, 0);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(s, DVK_ANY, 0, &v, 8, 0, SOON, &m), 0);
	CHECK_RC(mreply(s, &m, 2, p, 1000), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 11);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	CHECK(poll_now(px) & POLLIN);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	CHECK_COUNTERS_BACK(&before);
	EXPECT_NO_DRAIN(px);
	free(p);
	px_batch_free(&b);
}


/* ====================================================================================== */
/* Claims: with DVK_PROXY_CLAIMS, binds wait for the proxy's verdict                       */
/* ====================================================================================== */

static int claims_px_open(void)
{
	struct dvk_proxy_attach a = { .node = MY_NODE, .flags = DVK_PROXY_CLAIMS };
	int fd = dev_open(), rc = dvk_ioctl(fd, DVK_IOC_PROXY_ATTACH, &a);

	if (rc) {
		tap_fail("attaching a claims proxy: %s", errname(-rc));
		_exit(1);
	}
	return fd;
}

/* Injects the verdict on the claim of (dc, nr, gen); returns the inject's error. */
static int inject_claimed(int px, uint32_t dc, uint32_t nr, uint32_t gen, int status)
{
	struct dvk_proxy_msg h = { .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = nr, .dst_gen = gen,
				   .status = status };
	struct dvk_proxy_batch r;
	int rc = px_inject(px, &h, sizeof(h), &r);

	return rc ? rc : r.error;
}

/* A helper binding (dc, nr): it says 'C' just before, then writes rc and generation. */
struct claimer_arg {
	uint32_t dc, nr;
	int out_w;
	int sig_w;		/* if > 0: catch SIGUSR1 (no SA_RESTART), reporting there */
	int hold_r;		/* if > 0: keep the endpoint until a byte comes there */
};

static void claimer(void *p)
{
	struct claimer_arg *a = p;
	int fd = dev_open(), rc;
	uint32_t gen = 0;
	int32_t out[2];

	if (a->sig_w > 0) {
		sig_pipe_w = a->sig_w;
		catch_signal(SIGUSR1, false);
	}
	put_byte(a->out_w, 'C');
	rc = bind_rc(fd, a->dc, a->nr, &gen);
	out[0] = rc;
	out[1] = (int32_t)gen;
	REQUIRE(write(a->out_w, out, sizeof(out)) == sizeof(out));
	if (a->hold_r > 0)
		EXPECT_BYTE(a->hold_r, 'G');
	dev_close(fd);
}

/* Reads what claimer() wrote after its bind: rc, and the generation. */
static void claimer_result(int fd, int *rc, uint32_t *gen)
{
	int32_t out[2] = { 1, 0 };
	struct pollfd p = { .fd = fd, .events = POLLIN };

	CHECK(poll(&p, 1, 3 * LONG_MS) == 1);
	CHECK(read(fd, out, sizeof(out)) == sizeof(out));
	*rc = out[0];
	*gen = (uint32_t)out[1];
}

/* Drains one record and checks it is news of type `kind` about (dc, nr); its generation. */
#define DRAIN_NEWS(px, kind, dc, nr) drain_news_at(__FILE__, __LINE__, px, kind, dc, nr)
static uint32_t drain_news_at(const char *file, int line, int px, uint32_t kind, uint32_t dc,
			      uint32_t nr)
{
	struct rec r;
	uint32_t gen = 0;

	if (drain_n_at(file, line, px, &r, 1) != 1)
		return 0;
	if (r.h.kind != kind || r.h.dc != dc || r.h.src != nr) {
		tap_failed = 1;
		tap_diag_at(file, line, "drained kind %u dc %u endpoint %u; want kind %u dc %u "
			    "endpoint %u", r.h.kind, r.h.dc, r.h.src, kind, dc, nr);
	}
	gen = r.h.src_gen;
	recs_free(&r, 1);
	return gen;
}

/* A bind waits for the verdict, unreachable meanwhile; the unbind is reported too. */
static void t_claim_granted(void)
{
	uint32_t dc = dc_new(8), gen, got = 0;
	int sender = ep_open(dc, 4, NULL), px = claims_px_open(), out[2], hold[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	pid_t pid;

	pipe_new(out);
	pipe_new(hold);
	a.out_w = out[1];
	a.hold_r = hold[0];
	CHECK(DRAIN_NEWS(px, DVK_PROXY_BOUND, dc, 4) != 0);
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	gen = DRAIN_NEWS(px, DVK_PROXY_CLAIM, dc, 3);
	WAIT_SLEEPING(pid);
	/* Claiming: the number is taken, but nothing reaches it yet. */
	CHECK_RC(send_num(sender, 3, 0, 1, DVK_CALL_NONBLOCK, 0), -ENOENT);
	CHECK_RC(remote_add(px, dc, 3, 99, R_NODE), -EADDRINUSE);
	CHECK_RC(inject_claimed(px, dc, 3, gen, 0), 0);
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, 0);
	CHECK_EQ(got, gen);
	CHECK_RC(send_num(sender, 3, gen, 2, DVK_CALL_NONBLOCK, 0), 0);
	/* A second verdict finds no claim. */
	CHECK_RC(inject_claimed(px, dc, 3, gen, 0), -ENOENT);
	put_byte(hold[1], 'G');
	CHECK_CHILD(pid);
	CHECK_EQ(DRAIN_NEWS(px, DVK_PROXY_UNBOUND, dc, 3), gen);
	EXPECT_NO_DRAIN(px);
	dev_close(sender);
}

/* A refused claim fails the bind with the verdict's errno and frees the number. */
static void t_claim_refused(void)
{
	uint32_t dc = dc_new(8), gen, got = 0;
	int px = claims_px_open(), out[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	pid_t pid;

	pipe_new(out);
	a.out_w = out[1];
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	gen = DRAIN_NEWS(px, DVK_PROXY_CLAIM, dc, 3);
	CHECK_RC(inject_claimed(px, dc, 3, gen, -EADDRINUSE), 0);
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, -EADDRINUSE);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 3, "endpoint"), -1);
	CHECK_RC(remote_add(px, dc, 3, gen + 1, R_NODE), 0);
	/* The proxy refused it: no unbind report follows. */
	EXPECT_NO_DRAIN(px);
}

/* A signal ends a waiting claim with EINTR; a drained claim is followed by an unbind. */
static void t_claim_interrupted(void)
{
	uint32_t dc = dc_new(8), gen, got = 0;
	int px = claims_px_open(), out[2], sig[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	pid_t pid;

	pipe_new(out);
	pipe_new(sig);
	a.out_w = out[1];
	a.sig_w = sig[1];
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	gen = DRAIN_NEWS(px, DVK_PROXY_CLAIM, dc, 3);
	WAIT_SLEEPING(pid);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(sig[0], 'S');
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, -EINTR);
	CHECK_CHILD(pid);
	CHECK_EQ(DRAIN_NEWS(px, DVK_PROXY_UNBOUND, dc, 3), gen);
	CHECK_RC(inject_claimed(px, dc, 3, gen, 0), -ENOENT);
	CHECK_EQ(ep_get(dc, 3, "endpoint"), -1);
	EXPECT_NO_DRAIN(px);
}

/* A claim the proxy never drained is withdrawn without a word. */
static void t_claim_interrupted_undrained(void)
{
	uint32_t dc = dc_new(8), got = 0;
	int px = claims_px_open(), out[2], sig[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	pid_t pid;

	pipe_new(out);
	pipe_new(sig);
	a.out_w = out[1];
	a.sig_w = sig[1];
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	WAIT_SLEEPING(pid);
	CHECK_EQ(poll_now(px) & POLLIN, POLLIN);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(sig[0], 'S');
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, -EINTR);
	CHECK_CHILD(pid);
	EXPECT_NO_DRAIN(px);
}

/* Closing the proxy completes the binds that wait for it. */
static void t_claim_proxy_closes(void)
{
	uint32_t dc = dc_new(8), gen, got = 0;
	int px = claims_px_open(), out[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	pid_t pid;

	pipe_new(out);
	a.out_w = out[1];
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	gen = DRAIN_NEWS(px, DVK_PROXY_CLAIM, dc, 3);
	WAIT_SLEEPING(pid);
	dev_close(px);
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, 0);
	CHECK_EQ(got, gen);
	CHECK_CHILD(pid);
}

/*
 * A claims proxy hears first of the endpoints bound before it attached; an unbind comes after
 * every record the endpoint queued for remote endpoints.
 */
static void t_claim_bound_and_unbound_order(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int fd = ep_open(dc, 2, &gl), px = claims_px_open();
	struct rec r[5];
	int n;

	remote_std(px, dc);
	CHECK_EQ(DRAIN_NEWS(px, DVK_PROXY_BOUND, dc, 2), gl);
	for (uint64_t i = 1; i <= 3; i++)
		CHECK_RC(send_num(fd, R_EP, R_GEN, i, 0, SOON), 0);
	dev_close(fd);
	n = DRAIN_N(px, r, 4);
	if (n == 4) {
		check_numbers(r, 3, 1);
		CHECK_REC(&r[3], DVK_PROXY_UNBOUND, dc, 2, gl, 2, gl, 0);
	}
	recs_free(r, n);
	EXPECT_NO_DRAIN(px);
}

/* Verdicts are checked: fields that must be zero, a proxy without claims, a positive status. */
static void t_claim_einval(void)
{
	uint32_t dc = dc_new(8);
	int plain = px_open();
	struct dvk_proxy_msg bad[] = {
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 0 },
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 1, .src = 1 },
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 1, .type = 1 },
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 1, .request_id = 1 },
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 1, .status = 1 },
		{ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3, .dst_gen = 1, .status = -512 },
		{ .kind = DVK_PROXY_CLAIM, .dc = dc, .dst = 3, .dst_gen = 1, .src = 3, .src_gen = 1 },
	};
	int px;

	/* Without DVK_PROXY_CLAIMS, a verdict is a bad record, and binds do not wait. */
	CHECK_RC(inject_claimed(plain, dc, 3, 1, 0), -EINVAL);
	dev_close(ep_open(dc, 3, NULL));
	EXPECT_NO_DRAIN(plain);
	dev_close(plain);
	px = claims_px_open();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dvk_proxy_batch r;

		CHECKF(px_inject(px, &bad[i], sizeof(bad[i]), &r) == 0 && r.error == -EINVAL &&
		       r.count == 0, "verdict #%zu: error %s", i, rcname(r.error));
	}
	CHECK_RC(inject_claimed(px, dc, 3, 1, 0), -ENOENT);
}

/* A CLAIMED verdict with flags or reserved set is EINVAL: the bind goes on waiting. */
static void t_claim_flags_einval(void)
{
	uint32_t dc = dc_new(8), gen, got = 0;
	int px = claims_px_open(), out[2], rc = 1;
	struct claimer_arg a = { .dc = dc, .nr = 3 };
	struct dvk_proxy_msg h;
	struct dvk_proxy_batch r;
	pid_t pid;

	pipe_new(out);
	a.out_w = out[1];
	pid = SPAWN(claimer, &a);
	EXPECT_BYTE(out[0], 'C');
	gen = DRAIN_NEWS(px, DVK_PROXY_CLAIM, dc, 3);
	WAIT_SLEEPING(pid);
	for (int i = 0; i < 4; i++) {
		h = (struct dvk_proxy_msg){ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3,
					    .dst_gen = gen };
		if (i < 2)
			h.flags = i ? 1u << 31 : DVK_PROXY_NONBLOCK;
		else
			h.reserved = i == 2 ? 1 : 0x80000000u;
		CHECKF(px_inject(px, &h, sizeof(h), &r) == 0 && r.error == -EINVAL &&
		       r.count == 0 && r.size == 0, "CLAIMED with flags 0x%x, reserved 0x%x: "
		       "count %u, error %s", h.flags, h.reserved, r.count, rcname(r.error));
	}
	CHECK_EQ(get_byte(out[0], 50), -1);
	CHECK_RC(inject_claimed(px, dc, 3, gen, 0), 0);
	claimer_result(out[0], &rc, &got);
	CHECK_RC(rc, 0);
	CHECK_EQ(got, gen);
	CHECK_CHILD(pid);
	CHECK_EQ(DRAIN_NEWS(px, DVK_PROXY_UNBOUND, dc, 3), gen);
	EXPECT_NO_DRAIN(px);
}

/* ====================================================================================== */
/* Verdicts: with DVK_PROXY_VERDICTS, a send to another node completes with its verdict   */
/* ====================================================================================== */

static int verdicts_px_open(void)
{
	struct dvk_proxy_attach a = { .node = MY_NODE, .flags = DVK_PROXY_VERDICTS };
	int fd = dev_open(), rc = dvk_ioctl(fd, DVK_IOC_PROXY_ATTACH, &a);

	if (rc) {
		tap_fail("attaching a verdicts proxy: %s", errname(-rc));
		_exit(1);
	}
	return fd;
}

/* Injects one record without payload; returns the inject's error (0: it was taken). */
#define INJECT_HDR(px, h) inject_hdr_at(__FILE__, __LINE__, px, h)
static int inject_hdr_at(const char *file, int line, int px, struct dvk_proxy_msg h)
{
	struct dvk_proxy_batch r;
	int rc = px_inject(px, &h, HDR, &r);

	if (rc)
		return rc;
	if ((!r.error && (r.count != 1 || r.size != HDR)) || (r.error && (r.count || r.size))) {
		tap_failed = 1;
		tap_diag_at(file, line, "inject of kind %u: count %u, size %u, error %s", h.kind,
			    r.count, r.size, rcname(r.error));
	}
	return r.error;
}

/* The verdict on send `id` of local sender (dst, dst_gen), from the usual remote endpoint. */
static struct dvk_proxy_msg sent_hdr(uint32_t dc, uint32_t dst, uint32_t dst_gen, uint64_t id,
				     int32_t status)
{
	struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_SENT, dc, dst, dst_gen, R_EP, R_GEN);

	h.request_id = id;
	h.status = status;
	return h;
}

/* The remote endpoint withdraws its send `id` to local (dst, dst_gen). */
static struct dvk_proxy_msg cancel_hdr(uint32_t dc, uint32_t dst, uint32_t dst_gen,
				       uint64_t id, int32_t status)
{
	struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_CANCEL, dc, dst, dst_gen, R_EP, R_GEN);

	h.request_id = id;
	h.status = status;
	return h;
}

#define INJECT_SENT(px, dc, dst, dst_gen, id, status)                                     \
	CHECK_RC(INJECT_HDR(px, sent_hdr(dc, dst, dst_gen, id, status)), 0)
#define INJECT_CANCEL(px, dc, dst, dst_gen, id, status)                                   \
	CHECK_RC(INJECT_HDR(px, cancel_hdr(dc, dst, dst_gen, id, status)), 0)

/* Appends a numbered MESSAGE from the remote endpoint carrying send id `id` (0: none). */
static void add_vmsg(struct px_batch *b, uint32_t dc, uint32_t dst, uint32_t dst_gen,
		     uint64_t id, uint64_t n)
{
	struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_MESSAGE, dc, dst, dst_gen, R_EP, R_GEN);

	h.type = (int32_t)n;
	h.size = sizeof(n);
	h.request_id = id;
	px_batch_add(b, &h, &n);
}

/*
 * Drains exactly one record, waiting for it, into a buffer of `len` bytes: the size of the
 * record expected, so that no second one fits.
 */
static bool drain_one_at(const char *file, int line, int px, uint32_t len, struct rec *r)
{
	int n = 0, rc = drain_once(px, len, 0, SOON, r, &n, 1, NULL);

	if (rc || n != 1) {
		tap_failed = 1;
		tap_diag_at(file, line, "drain of one record into %u bytes: %s, %d records", len,
			    rcname(rc), n);
		if (n > 0)
			recs_free(r, 1);
		memset(r, 0, sizeof(*r));
		return false;
	}
	return true;
}

/* Checks a drained record: the numbered send `n` from (src, src_gen), with a send id. */
#define CHECK_SEND(r, dc, src, src_gen, n)                                               \
	check_send_at(__FILE__, __LINE__, r, dc, src, src_gen, n)
static void check_send_at(const char *file, int line, const struct rec *r, uint32_t dc,
			  uint32_t src, uint32_t src_gen, uint64_t n)
{
	struct dvk_proxy_msg h = r->h;
	uint64_t v = ~0ull;

	if (h.size == sizeof(v))
		memcpy(&v, r->data, sizeof(v));
	if (h.kind != DVK_PROXY_MESSAGE || h.dc != dc || h.dst != R_EP || h.dst_gen != R_GEN ||
	    h.src != src || h.src_gen != src_gen || h.type != (int32_t)n || v != n ||
	    !h.request_id || h.status || h.bits) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "drained kind %u dc %u dst %u/%u src %u/%u type %d number %llu id %llu "
			    "status %d; want the send of %llu from %u/%u with a send id", h.kind,
			    h.dc, h.dst, h.dst_gen, h.src, h.src_gen, h.type,
			    (unsigned long long)v, (unsigned long long)h.request_id, h.status,
			    (unsigned long long)n, src, src_gen);
	}
}

/* Drains one record: the numbered send `n` from (src, src_gen), waiting for its verdict. */
#define DRAIN_SEND(px, dc, src, src_gen, n)                                              \
	drain_send_at(__FILE__, __LINE__, px, dc, src, src_gen, n)
static struct dvk_proxy_msg drain_send_at(const char *file, int line, int px, uint32_t dc,
					  uint32_t src, uint32_t src_gen, uint64_t n)
{
	struct dvk_proxy_msg h = { 0 };
	struct rec r = { 0 };

	if (!drain_one_at(file, line, px, REC(sizeof(n)), &r))
		return h;
	check_send_at(file, line, &r, dc, src, src_gen, n);
	h = r.h;
	recs_free(&r, 1);
	return h;
}

/* Drains one record and checks it is a record of `kind` (SENT or CANCEL) with these fields. */
#define DRAIN_STATUS(px, kind, dc, dst, dst_gen, src, src_gen, id, status)                \
	drain_status_at(__FILE__, __LINE__, px, kind, dc, dst, dst_gen, src, src_gen, id, status)
static void drain_status_at(const char *file, int line, int px, uint32_t kind, uint32_t dc,
			    uint32_t dst, uint32_t dst_gen, uint32_t src, uint32_t src_gen,
			    uint64_t id, int32_t status)
{
	struct rec r = { 0 };

	if (!drain_one_at(file, line, px, HDR, &r))
		return;
	if (r.h.kind != kind || r.h.dc != dc || r.h.dst != dst || r.h.dst_gen != dst_gen ||
	    r.h.src != src || r.h.src_gen != src_gen || r.h.request_id != id ||
	    r.h.status != status || r.h.size || r.h.type || r.h.bits || r.h.timeout_ns) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "drained kind %u dc %u dst %u/%u src %u/%u id %llu status %s size %u; "
			    "want kind %u dc %u dst %u/%u src %u/%u id %llu status %s", r.h.kind,
			    r.h.dc, r.h.dst, r.h.dst_gen, r.h.src, r.h.src_gen,
			    (unsigned long long)r.h.request_id, rcname(r.h.status), r.h.size, kind,
			    dc, dst, dst_gen, src, src_gen, (unsigned long long)id, rcname(status));
	}
	recs_free(&r, 1);
}

/* The verdict the module posts for a message injected with send id `id` to local (nr, gen). */
#define DRAIN_SENT(px, dc, nr, gen, id, status)                                           \
	DRAIN_STATUS(px, DVK_PROXY_SENT, dc, R_EP, R_GEN, nr, gen, id, status)
/* The withdrawal the module posts for local sender (nr, gen)'s send `id` in flight. */
#define DRAIN_CANCEL(px, dc, nr, gen, id, status)                                         \
	DRAIN_STATUS(px, DVK_PROXY_CANCEL, dc, R_EP, R_GEN, nr, gen, id, status)

/* A blocking send from a helper, and what must become of it. */
struct vsend_arg {
	int fd;
	uint32_t dst, dst_gen;
	uint64_t num;
	int deadline_ms;	/* 0: no deadline */
	uint32_t flags;
	int want_rc;
	int out_w;		/* 'R' just before the send, 'D' once it returned */
	int hold_r;		/* if > 0: then wait for a byte there before going */
	int sig_w;		/* if > 0: catch SIGUSR1 (without SA_RESTART), reporting there */
	int want_signals;	/* with sig_w: how many the handler must have seen at the end */
};

static void vsender(void *p)
{
	struct vsend_arg *a = p;
	int rc;

	if (a->sig_w > 0) {
		sig_pipe_w = a->sig_w;
		catch_signal(SIGUSR1, false);
	}
	put_byte(a->out_w, 'R');
	rc = send_num(a->fd, a->dst, a->dst_gen, a->num, a->flags,
		      a->deadline_ms ? in_ms(a->deadline_ms) : 0);
	CHECK_RC(rc, a->want_rc);
	put_byte(a->out_w, 'D');
	if (a->sig_w > 0)
		CHECK_EQ(sig_count, a->want_signals);
	if (a->hold_r > 0)
		EXPECT_BYTE(a->hold_r, 'G');
}

/* Starts a vsender on a new endpoint (dc, nr) and waits for its 'R'; its generation in *gen. */
static pid_t vsend_start(struct vsend_arg *a, uint32_t dc, uint32_t nr, uint32_t *gen,
			 int out[2])
{
	pid_t pid;

	a->fd = ep_open(dc, nr, gen);
	if (!a->dst)
		a->dst = R_EP;
	pipe_new(out);
	a->out_w = out[1];
	pid = SPAWN(vsender, a, a->fd);
	dev_close(a->fd);
	EXPECT_BYTE(out[0], 'R');
	return pid;
}

/* Submits a send of number n (type n, 8 bytes) with dvk_submit.flags `flags`; its token. */
static uint64_t a_send_flags(int fd, uint32_t dst, uint32_t gen, uint64_t n, uint32_t flags)
{
	struct dvk_submit s = {
		.op = DVK_OP_SEND,
		.flags = flags,
		.msg = { .peer = dst, .peer_gen = gen, .type = (int32_t)n,
			 .payload = (uintptr_t)&n, .size = sizeof(n) },
	};
	int rc = dvk_ioctl(fd, DVK_IOC_SUBMIT, &s);

	if (rc)
		tap_fail("SUBMIT of send %llu (flags 0x%x): %s", (unsigned long long)n, flags,
			 errname(-rc));
	return s.token;
}

/* Submits a send of number n (type n, 8 bytes); returns its token. */
static uint64_t a_send(int fd, uint32_t dst, uint32_t gen, uint64_t n)
{
	return a_send_flags(fd, dst, gen, n, 0);
}

/* Submits a notify of `bits` to (dst, gen); returns its token. */
static uint64_t a_notify(int fd, uint32_t dst, uint32_t gen, uint32_t bits)
{
	struct dvk_submit s = {
		.op = DVK_OP_NOTIFY,
		.msg = { .peer = dst, .peer_gen = gen, .bits = bits },
	};
	int rc = dvk_ioctl(fd, DVK_IOC_SUBMIT, &s);

	if (rc)
		tap_fail("SUBMIT of notify 0x%x: %s", bits, errname(-rc));
	return s.token;
}

static int cancel_rc(int fd, uint64_t token)
{
	struct dvk_cancel c = { .token = token };

	return dvk_ioctl(fd, DVK_IOC_CANCEL, &c);
}

/*
 * Waits for one completion, of a call of `op` (SEND or NOTIFY: no message), and returns its
 * result; its token in *token.
 */
#define REAP_ONE(fd, token) reap_one_at(__FILE__, __LINE__, fd, token, DVK_OP_SEND)
#define REAP_ONE_NOTIFY(fd, token) reap_one_at(__FILE__, __LINE__, fd, token, DVK_OP_NOTIFY)
static int reap_one_at(const char *file, int line, int fd, uint64_t *token, uint32_t op)
{
	/* Room for one record without payload: one completion at a time. */
	unsigned char buf[2 * sizeof(struct dvk_completion)];
	struct dvk_reap r = { .buffer = (uintptr_t)buf, .size = sizeof(struct dvk_completion) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct dvk_completion c;
	char why[300];
	int rc;

	*token = 0;
	if (poll(&p, 1, LONG_MS) != 1) {
		tap_failed = 1;
		tap_diag_at(file, line, "no completion");
		return 1;
	}
	rc = dvk_ioctl(fd, DVK_IOC_REAP, &r);
	if (rc || r.count != 1 || !cq_record_check(buf, r.size, 0, max_payload, why, sizeof(why))) {
		tap_failed = 1;
		tap_diag_at(file, line, "reap: %s, %u records; %s", rcname(rc), r.count,
			    rc ? "" : why);
		return 1;
	}
	memcpy(&c, buf, sizeof(c));
	if (c.op != op) {
		tap_failed = 1;
		tap_diag_at(file, line, "reaped token %llu op %u; want op %u",
			    (unsigned long long)c.token, c.op, op);
	}
	*token = c.token;
	return c.result;
}

/* Waits for one completion, of the call `token` of `op`, and returns its result. */
#define REAP_SEND(fd, token) reap_call_at(__FILE__, __LINE__, fd, token, DVK_OP_SEND)
#define REAP_NOTIFY(fd, token) reap_call_at(__FILE__, __LINE__, fd, token, DVK_OP_NOTIFY)
static int reap_call_at(const char *file, int line, int fd, uint64_t token, uint32_t op)
{
	uint64_t got;
	int rc = reap_one_at(file, line, fd, &got, op);

	if (got != token) {
		tap_failed = 1;
		tap_diag_at(file, line, "reaped token %llu; want %llu", (unsigned long long)got,
			    (unsigned long long)token);
	}
	return rc;
}

#define EXPECT_NO_COMPLETION(fd)                                                          \
	do {                                                                              \
		struct dvk_reap r_ = { .buffer = (uintptr_t)dbuf, .size = 4096 };         \
		CHECK_RC(dvk_ioctl(fd, DVK_IOC_REAP, &r_), -EAGAIN);                      \
		CHECK_EQ(poll_now(fd), 0);                                                \
	} while (0)

/* ---- the sending node: a send in flight waits for its verdict ---- */

/* A send waits for its verdict; SENT 0 completes it, counted once; stray verdicts do nothing. */
static void t_verdict_sent(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = verdicts_px_open(), out[2], hold[2];
	struct vsend_arg a = { .num = 7, .want_rc = 0 };
	struct dvk_proxy_msg h;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(hold);
	a.hold_r = hold[0];
	pid = vsend_start(&a, dc, 1, &gs, out);
	h = DRAIN_SEND(px, dc, 1, gs, 7);
	CHECK_EQ(h.timeout_ns, 0);
	/* Drained: in flight, its verdict owed; the sender still waits. */
	WAIT_SLEEPING(pid);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	CHECK_EQ(ep_get(dc, 1, "sent"), 0);
	/* Verdicts for another send id or incarnation, and a reply with its id, are not its. */
	INJECT_SENT(px, dc, 1, gs, h.request_id + 1, 0);
	INJECT_SENT(px, dc, 1, gs + 1, h.request_id, 0);
	inject_reply(px, dc, 1, gs, h.request_id, 1, 8, 1);
	inject_fail(px, dc, 1, gs, h.request_id, -EIO);
	CHECK_EQ(get_byte(out[0], 100), -1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	INJECT_SENT(px, dc, 1, gs, h.request_id, 0);
	EXPECT_BYTE(out[0], 'D');
	CHECK_EQ(ep_get(dc, 1, "sent"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	/* A second verdict for it finds nothing, and changes nothing. */
	INJECT_SENT(px, dc, 1, gs, h.request_id, -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 1, "sent"), 1);
	put_byte(hold[1], 'G');
	CHECK_CHILD(pid);
	EXPECT_NO_DRAIN(px);
}

/* A verdict with an errno fails the send with it; it is not counted as sent. */
static void t_verdict_sent_error(void)
{
	static const int statuses[] = { -ETIMEDOUT, -EAGAIN, -ESRCH, -ENOENT, -ECANCELED };
	uint32_t dc = dc_new(8);
	int px = verdicts_px_open();

	remote_std(px, dc);
	for (int i = 0; i < (int)(sizeof(statuses) / sizeof(statuses[0])); i++) {
		int out[2], hold[2];
		struct vsend_arg a = { .num = 10 + i, .deadline_ms = 2 * LONG_MS,
				       .want_rc = statuses[i] };
		struct dvk_proxy_msg h;
		uint32_t gs = 0;
		pid_t pid;

		pipe_new(hold);
		a.hold_r = hold[0];
		pid = vsend_start(&a, dc, 1, &gs, out);
		h = DRAIN_SEND(px, dc, 1, gs, 10 + i);
		INJECT_SENT(px, dc, 1, gs, h.request_id, statuses[i]);
		EXPECT_BYTE(out[0], 'D');
		CHECK_EQ(ep_get(dc, 1, "sent"), 0);
		put_byte(hold[1], 'G');
		CHECK_CHILD(pid);
	}
	EXPECT_NO_DRAIN(px);
}

/* Before the drain a deadline withdraws the send, queued or held: it is never drained. */
static void t_verdict_deadline_undrained(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = verdicts_px_open(), out[2], filler;
	struct vsend_arg a = { .num = 1, .deadline_ms = 200, .want_rc = -ETIMEDOUT };
	struct rec *r = calloc(queue_length, sizeof(*r));
	uint64_t *tok = calloc(queue_length, sizeof(*tok));
	pid_t pid;

	REQUIRE(r && tok);
	remote_std(px, dc);
	pid = vsend_start(&a, dc, 1, &gs, out);
	EXPECT_BYTE(out[0], 'D');
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	/* Held behind a queue full of submitted sends (each waits for its own verdict). */
	filler = ep_open(dc, 0, NULL);
	for (uint32_t i = 0; i < queue_length; i++)
		tok[i] = a_send(filler, R_EP, 0, 100 + i);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
	a.num = 2;
	pid = vsend_start(&a, dc, 2, NULL, out);
	WAIT_EP(dc, R_EP, "held", 1);
	EXPECT_BYTE(out[0], 'D');
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	CHECK_EQ(DRAIN_N(px, r, queue_length), queue_length);
	check_numbers(r, queue_length, 100);
	for (uint32_t i = 0; i < queue_length; i++)
		INJECT_SENT(px, dc, 0, r[i].h.src_gen, r[i].h.request_id, 0);
	for (uint32_t i = 0; i < queue_length; i++)
		CHECK_RC(REAP_SEND(filler, tok[i]), 0);
	CHECK_EQ(ep_get(dc, 0, "sent"), queue_length);
	recs_free(r, queue_length);
	free(r);
	free(tok);
	EXPECT_NO_DRAIN(px);
}

/*
 * After the drain the deadline no longer ends the send: a CANCEL record asks the other node
 * to withdraw it, once, and the send waits killably for the verdict, which decides.
 */
static void t_verdict_deadline_in_flight(void)
{
	static const int verdicts[] = { 0, -ETIMEDOUT };
	uint32_t dc = dc_new(8);
	int px = verdicts_px_open();

	remote_std(px, dc);
	for (int i = 0; i < 2; i++) {
		struct vsend_arg a = { .num = 20 + i, .deadline_ms = 600, .want_rc = verdicts[i] };
		uint64_t start = now_ns();
		struct dvk_proxy_msg h;
		uint32_t gs = 0;
		int out[2];
		pid_t pid;

		pid = vsend_start(&a, dc, 1, &gs, out);
		h = DRAIN_SEND(px, dc, 1, gs, 20 + i);
		CHECKF(h.timeout_ns > 0 && h.timeout_ns <= 600000000ull,
		       "timeout_ns %llu of a 600 ms deadline", (unsigned long long)h.timeout_ns);
		/* The CANCEL comes once the deadline passed, and the sender goes on waiting. */
		DRAIN_CANCEL(px, dc, 1, gs, h.request_id, -ETIMEDOUT);
		CHECKF(now_ns() - start >= 500000000ull, "CANCEL after %llu ms",
		       (unsigned long long)((now_ns() - start) / 1000000));
		WAIT_KILLABLE(pid);
		CHECK_EQ(get_byte(out[0], 200), -1);
		EXPECT_NO_DRAIN(px);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
		INJECT_SENT(px, dc, 1, gs, h.request_id, verdicts[i]);
		EXPECT_BYTE(out[0], 'D');
		CHECK_CHILD(pid);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	}
	EXPECT_NO_DRAIN(px);
}

/*
 * A signal before the drain withdraws the send (EINTR); in flight it does not end the wait:
 * the send completes with its verdict, then the handler runs.
 */
static void t_verdict_signal(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = verdicts_px_open(), out[2], sig[2];
	struct vsend_arg a = { .num = 1, .want_rc = -EINTR, .want_signals = 1 };
	struct dvk_proxy_msg h;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(sig);
	a.sig_w = sig[1];
	pid = vsend_start(&a, dc, 1, &gs, out);
	WAIT_EP(dc, R_EP, "queued", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(sig[0], 'S');
	EXPECT_BYTE(out[0], 'D');
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);

	a = (struct vsend_arg){ .num = 2, .want_rc = 0, .sig_w = sig[1], .want_signals = 1 };
	pid = vsend_start(&a, dc, 2, &gs, out);
	h = DRAIN_SEND(px, dc, 2, gs, 2);
	WAIT_SLEEPING(pid);
	CHECK(kill(pid, SIGUSR1) == 0);
	WAIT_KILLABLE(pid);
	CHECK_EQ(get_byte(sig[0], 200), -1);
	CHECK_EQ(get_byte(out[0], 0), -1);
	EXPECT_NO_DRAIN(px);
	INJECT_SENT(px, dc, 2, gs, h.request_id, 0);
	EXPECT_BYTE(out[0], 'D');
	EXPECT_BYTE(sig[0], 'S');
	CHECK_CHILD(pid);
}

/* SIGKILL in flight abandons the send: nothing is left, its verdict is ignored. */
static void t_verdict_killed_in_flight(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = verdicts_px_open(), out[2];
	struct vsend_arg a = { .num = 3, .deadline_ms = 300 };
	struct dvk_proxy_msg h;
	pid_t pid;

	remote_std(px, dc);
	pid = vsend_start(&a, dc, 1, &gs, out);
	h = DRAIN_SEND(px, dc, 1, gs, 3);
	DRAIN_CANCEL(px, dc, 1, gs, h.request_id, -ETIMEDOUT);
	WAIT_KILLABLE(pid);
	kill_child(pid);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	INJECT_SENT(px, dc, 1, gs, h.request_id, 0);
	EXPECT_NO_DRAIN(px);
	/* Killed while it still waited interruptibly, before its deadline: the same. */
	a = (struct vsend_arg){ .num = 4 };
	pid = vsend_start(&a, dc, 1, &gs, out);
	h = DRAIN_SEND(px, dc, 1, gs, 4);
	WAIT_SLEEPING(pid);
	kill_child(pid);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	INJECT_SENT(px, dc, 1, gs, h.request_id, 0);
	EXPECT_NO_DRAIN(px);
}

/* Such a send always waits: NONBLOCK fails with EAGAIN, a past deadline with ETIMEDOUT. */
static void t_verdict_nonblock(void)
{
	uint32_t dc = dc_new(8);
	int px = verdicts_px_open(), l = ep_open(dc, 0, NULL);

	remote_std(px, dc);
	CHECK_RC(send_num(l, R_EP, 0, 1, DVK_CALL_NONBLOCK, 0), -EAGAIN);
	CHECK_RC(send_num(l, R_EP, R_GEN, 2, DVK_CALL_NONBLOCK, SOON), -EAGAIN);
	CHECK_RC(send_num(l, R_EP, 0, 3, 0, in_ms(-1)), -ETIMEDOUT);
	CHECK_RC(send_num(l, R_EP, 0, 4, 0, 1), -ETIMEDOUT);
	/* Not to the wrong incarnation, nor to a local endpoint (that one is queued at once). */
	CHECK_RC(send_num(l, R_EP, R_GEN + 1, 5, DVK_CALL_NONBLOCK, 0), -ENOENT);
	CHECK_RC(send_num(l, 0, 0, 6, DVK_CALL_NONBLOCK, 0), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	CHECK_EQ(ep_get(dc, 0, "sent"), 1);
	EXPECT_NO_DRAIN(px);
}

/*
 * A submitted send: CANCEL before the drain undoes it (no completion); in flight it answers
 * EALREADY and posts one CANCEL record (-ECANCELED); the completion comes with the verdict.
 */
static void t_verdict_submitted(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg hb, hc;
	uint64_t ta, tb, tc;

	remote_std(px, dc);
	ta = a_send(l, R_EP, 0, 1);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	CHECK_RC(cancel_rc(l, ta), 0);
	CHECK_RC(cancel_rc(l, ta), -ENOENT);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
	tb = a_send(l, R_EP, R_GEN, 2);
	tc = a_send(l, R_EP, 0, 3);
	{
		struct rec r[2];

		CHECK_EQ(DRAIN_N(px, r, 2), 2);
		CHECK_SEND(&r[0], dc, 0, gl, 2);
		CHECK_SEND(&r[1], dc, 0, gl, 3);
		hb = r[0].h;
		hc = r[1].h;
		recs_free(r, 2);
	}
	CHECK(hb.request_id != hc.request_id);
	CHECK_EQ(hb.timeout_ns, 0);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 2);
	EXPECT_NO_COMPLETION(l);
	CHECK_RC(cancel_rc(l, tb), -EALREADY);
	DRAIN_CANCEL(px, dc, 0, gl, hb.request_id, -ECANCELED);
	CHECK_RC(cancel_rc(l, tb), -EALREADY);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
	/* The other node had delivered it after all: the verdict stands. */
	INJECT_SENT(px, dc, 0, gl, hb.request_id, 0);
	CHECK_RC(REAP_SEND(l, tb), 0);
	CHECK_RC(cancel_rc(l, tb), -ENOENT);
	CHECK_RC(cancel_rc(l, tc), -EALREADY);
	DRAIN_CANCEL(px, dc, 0, gl, hc.request_id, -ECANCELED);
	INJECT_SENT(px, dc, 0, gl, hc.request_id, -ECANCELED);
	CHECK_RC(REAP_SEND(l, tc), -ECANCELED);
	CHECK_EQ(ep_get(dc, 0, "sent"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/* A sender closing its file abandons its sends in flight and withdraws the others. */
static void t_verdict_sender_closes(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg h1, h2;
	uint64_t t2;

	remote_std(px, dc);
	a_send(l, R_EP, 0, 1);
	h1 = DRAIN_SEND(px, dc, 0, gl, 1);
	t2 = a_send(l, R_EP, 0, 2);
	h2 = DRAIN_SEND(px, dc, 0, gl, 2);
	CHECK_RC(cancel_rc(l, t2), -EALREADY);
	a_send(l, R_EP, 0, 3);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 2);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 2);	/* the CANCEL record, and send 3 */
	dev_close(l);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	DRAIN_CANCEL(px, dc, 0, gl, h2.request_id, -ECANCELED);
	INJECT_SENT(px, dc, 0, gl, h1.request_id, 0);
	INJECT_SENT(px, dc, 0, gl, h2.request_id, 0);
	EXPECT_NO_DRAIN(px);
}

/*
 * timeout_ns: what is left of the sender's or caller's deadline when drained, on MESSAGE and
 * REQUEST records; 0 without a deadline.
 */
static void t_verdict_timeout_ns(void)
{
	uint32_t dc = dc_new(8), gs = 0, gc = 0, gl = 0, g3 = 0;
	int px = verdicts_px_open(), out[2], out3[2], l = ep_open(dc, 0, &gl);
	struct vsend_arg a = { .num = 5, .deadline_ms = LONG_MS, .want_rc = -ESRCH };
	struct vsend_arg a3 = { .num = 6, .want_rc = -ESRCH };
	struct call_arg ca = { .dst = R_EP, .type = 1, .len = 8, .seed = 1,
			       .deadline_ms = LONG_MS, .want_rc = -ESRCH };
	const uint64_t most = LONG_MS * 1000000ull;
	struct dvk_proxy_msg h;
	struct rec r;
	pid_t p1, p2, p3;
	uint64_t v = 1;

	remote_std(px, dc);
	p1 = vsend_start(&a, dc, 1, &gs, out);
	h = DRAIN_SEND(px, dc, 1, gs, 5);
	CHECKF(h.timeout_ns > 0 && h.timeout_ns <= most, "send: timeout_ns %llu",
	       (unsigned long long)h.timeout_ns);
	ca.fd = ep_open(dc, 2, &gc);
	p2 = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	r = DRAIN_REQUEST(px, dc, 2, gc, 1, 8, 1);
	CHECKF(r.h.timeout_ns > 0 && r.h.timeout_ns <= most, "sendrec: timeout_ns %llu",
	       (unsigned long long)r.h.timeout_ns);
	recs_free(&r, 1);
	/* Without a deadline: 0, blocking or submitted. */
	p3 = vsend_start(&a3, dc, 3, &g3, out3);
	h = DRAIN_SEND(px, dc, 3, g3, 6);
	CHECK_EQ(h.timeout_ns, 0);
	a_send(l, R_EP, 0, 7);
	h = DRAIN_SEND(px, dc, 0, gl, 7);
	CHECK_EQ(h.timeout_ns, 0);
	{
		struct dvk_submit s = { .op = DVK_OP_SENDREC,
					.msg = { .peer = R_EP, .payload = (uintptr_t)&v,
						 .size = sizeof(v) } };

		CHECK_RC(dvk_ioctl(l, DVK_IOC_SUBMIT, &s), 0);
		CHECK_EQ(DRAIN_N(px, &r, 1), 1);
		CHECK_EQ(r.h.kind, DVK_PROXY_REQUEST);
		CHECK_EQ(r.h.timeout_ns, 0);
		recs_free(&r, 1);
	}
	/* Every call ends: REMOTE_DEL fails them all with ESRCH. */
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	CHECK_CHILD(p1);
	CHECK_CHILD(p2);
	CHECK_CHILD(p3);
}

/*
 * REMOTE_DEL (mode 0: ESRCH; 1: NODE_DOWN, EHOSTUNREACH) or closing the proxy (2:
 * EHOSTUNREACH) ends every send waiting on the remote endpoint: blocking and submitted, in
 * flight or still queued. Nothing is left behind.
 */
static void verdict_teardown(int mode)
{
	int want = mode ? -EHOSTUNREACH : -ESRCH;
	uint32_t dc = dc_new(8), g1 = 0, g2 = 0, gl = 0;
	struct vsend_arg a1 = { .num = 1, .deadline_ms = 300, .want_rc = want };
	struct vsend_arg a2 = { .num = 2, .want_rc = want };
	struct dvk_stats before;
	struct dvk_proxy_msg h;
	int px, o1[2], o2[2], l;
	uint64_t t3, t4;
	pid_t p1, p2;

	CHECK_RC(stats_read(&before), 0);
	px = verdicts_px_open();
	remote_std(px, dc);
	l = ep_open(dc, 0, &gl);
	/* In flight, past its deadline (a CANCEL drained); in flight; submitted in flight. */
	p1 = vsend_start(&a1, dc, 1, &g1, o1);
	h = DRAIN_SEND(px, dc, 1, g1, 1);
	DRAIN_CANCEL(px, dc, 1, g1, h.request_id, -ETIMEDOUT);
	p2 = vsend_start(&a2, dc, 2, &g2, o2);
	DRAIN_SEND(px, dc, 2, g2, 2);
	t3 = a_send(l, R_EP, 0, 3);
	DRAIN_SEND(px, dc, 0, gl, 3);
	/* And one not drained yet. */
	t4 = a_send(l, R_EP, 0, 4);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 3);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	if (mode == 2)
		dev_close(px);
	else
		CHECK_RC(remote_del(px, dc, R_EP, R_GEN, mode ? DVK_REMOTE_NODE_DOWN : 0), 0);
	EXPECT_BYTE(o1[0], 'D');
	EXPECT_BYTE(o2[0], 'D');
	CHECK_CHILD(p1);
	CHECK_CHILD(p2);
	for (int i = 0; i < 2; i++) {
		uint64_t tok;

		CHECK_RC(REAP_ONE(l, &tok), want);
		CHECKF(tok == t3 || tok == t4, "token %llu", (unsigned long long)tok);
	}
	CHECK_EQ(ep_get(dc, 0, "sent"), 0);
	dev_close(l);
	if (mode != 2) {
		/* The verdicts that come too late are refused with the record's source. */
		CHECK_RC(INJECT_HDR(px, sent_hdr(dc, 1, g1, h.request_id, 0)), -EADDRNOTAVAIL);
		EXPECT_NO_DRAIN(px);
		dev_close(px);
	}
	CHECK_COUNTERS_BACK(&before);
}

static void t_verdict_del(void)
{
	verdict_teardown(0);
}

static void t_verdict_node_down(void)
{
	verdict_teardown(1);
}

static void t_verdict_close_proxy(void)
{
	verdict_teardown(2);
}

/* A drain that cannot copy a send out puts it back: it is still waiting, and drained again. */
static void t_verdict_drain_efault(void)
{
	uint32_t dc = dc_new(8), gs = 0;
	int px = verdicts_px_open(), out[2];
	struct vsend_arg a = { .num = 9, .want_rc = 0 };
	struct dvk_proxy_batch b;
	struct dvk_proxy_msg h;
	pid_t pid;

	remote_std(px, dc);
	pid = vsend_start(&a, dc, 1, &gs, out);
	WAIT_EP(dc, R_EP, "queued", 1);
	CHECK_RC(px_drain(px, bad_page(), dbuf_len, DVK_CALL_NONBLOCK, 0, &b), -EFAULT);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(get_byte(out[0], 50), -1);
	h = DRAIN_SEND(px, dc, 1, gs, 9);
	INJECT_SENT(px, dc, 1, gs, h.request_id, 0);
	EXPECT_BYTE(out[0], 'D');
	CHECK_CHILD(pid);
	EXPECT_NO_DRAIN(px);
}

/* ---- the receiving node: messages with a send id get their verdicts ---- */

/*
 * A message injected with a send id: SENT 0 as soon as it is in the destination's queue (or
 * handed to a waiting receive), in order; receivers see a plain message.
 */
static void t_verdict_deliver(void)
{
	uint32_t dc = dc_new(8), gl = 0, g1 = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), ready[2];
	struct recv_arg ra = { .from = R_EP, .want_rc = 0 };
	struct px_batch b = { 0 };
	struct dvk_msg m;
	pid_t pid;

	remote_std(px, dc);
	add_vmsg(&b, dc, 0, gl, 1001, 1);
	add_vmsg(&b, dc, 0, 0, 1002, 2);
	add_vmsg(&b, dc, 0, gl, 0, 3);		/* no send id: no verdict */
	add_vmsg(&b, dc, 0, 0, 1003, 4);
	INJECT_ALL(px, &b);
	DRAIN_SENT(px, dc, 0, gl, 1001, 0);
	DRAIN_SENT(px, dc, 0, gl, 1002, 0);
	DRAIN_SENT(px, dc, 0, gl, 1003, 0);
	EXPECT_NO_DRAIN(px);
	for (uint64_t n = 1; n <= 4; n++) {
		uint64_t v = 0;

		CHECK_RC(mrecv(l, DVK_ANY, 0, &v, sizeof(v), 0, SOON, &m), 0);
		CHECK_EQ(v, n);
		CHECK_EQ(m.request_id, 0);
		CHECK_EQ(m.flags, 0);
		CHECK_EQ(m.peer, R_EP);
		CHECK_EQ(m.peer_gen, R_GEN);
	}
	EXPECT_EMPTY(l);
	/* Handed straight to a waiting receive. */
	pipe_new(ready);
	ra.ready_w = ready[1];
	ra.fd = ep_open(dc, 1, &g1);
	pid = SPAWN(receiver, &ra, ra.fd);
	dev_close(ra.fd);
	EXPECT_BYTE(ready[0], 'R');
	WAIT_EP(dc, 1, "receivers", 1);
	px_batch_reset(&b);
	add_vmsg(&b, dc, 1, g1, 1004, 5);
	INJECT_ALL(px, &b);
	CHECK_CHILD(pid);
	DRAIN_SENT(px, dc, 1, g1, 1004, 0);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* Injects `count` plain numbered messages to local (dc, nr); its queue is then full. */
static void fill_local(int px, uint32_t dc, uint32_t nr, uint32_t gen, uint64_t first,
		       uint32_t count)
{
	struct px_batch b = { 0 };

	for (uint32_t i = 0; i < count; i++)
		add_vmsg(&b, dc, nr, gen, 0, first + i);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, nr, "queued"), queue_length);
	CHECK_EQ(ep_get(dc, nr, "held"), 0);
	px_batch_free(&b);
}

/* Receives numbered messages first, first + 1, ... (n of them) from the remote endpoint. */
static void expect_numbers(int fd, uint64_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v = ~0ull;
		int rc = mrecv(fd, DVK_ANY, 0, &v, sizeof(v), 0, SOON, NULL);

		if (rc || v != first + i) {
			tap_fail("message %u: %s, number %llu; want %llu", i, rcname(rc),
				 (unsigned long long)v, (unsigned long long)(first + i));
			return;
		}
	}
}

/*
 * Held behind a full queue: no verdict yet; each SENT 0 comes when a receive makes room for
 * its message, in order; a receive from the remote sender takes the held one, and its SENT.
 */
static void t_verdict_deliver_held(void)
{
	uint32_t dc = dc_new(8), gl = 0, gk = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), k = ep_open(dc, 1, &gk);
	struct px_batch b = { 0 };
	uint64_t v = 0;

	remote_std(px, dc);
	fill_local(px, dc, 0, gl, 0, queue_length);
	for (uint64_t i = 1; i <= 3; i++)
		add_vmsg(&b, dc, 0, gl, 500 + i, 1000 + i);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "held"), 3);
	EXPECT_NO_DRAIN(px);
	expect_numbers(l, 0, 1);
	DRAIN_SENT(px, dc, 0, gl, 501, 0);
	EXPECT_NO_DRAIN(px);
	expect_numbers(l, 1, 2);
	DRAIN_SENT(px, dc, 0, gl, 502, 0);
	DRAIN_SENT(px, dc, 0, gl, 503, 0);
	EXPECT_NO_DRAIN(px);
	expect_numbers(l, 3, queue_length - 3);
	expect_numbers(l, 1001, 3);
	EXPECT_EMPTY(l);
	/*
	 * Endpoint 1's queue full of a local sender's messages: a receive from the remote
	 * endpoint takes its held message, which is its acceptance.
	 */
	for (uint32_t i = 0; i < queue_length; i++)
		CHECK_RC(send_num(l, 1, 0, i, DVK_CALL_NONBLOCK, 0), 0);
	px_batch_reset(&b);
	add_vmsg(&b, dc, 1, 0, 600, 2000);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 1, "held"), 1);
	EXPECT_NO_DRAIN(px);
	CHECK_RC(mrecv(k, R_EP, R_GEN, &v, sizeof(v), DVK_CALL_NONBLOCK, 0, NULL), 0);
	CHECK_EQ(v, 2000);
	DRAIN_SENT(px, dc, 1, gk, 600, 0);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * The destination unbinds with messages held: their SENT records carry -ESRCH, in order
 * (those queued had their SENT 0 already). A remote sender unregistered meanwhile hears
 * nothing, and nothing is left.
 */
static void t_verdict_deliver_unbind(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };

	remote_std(px, dc);
	add_vmsg(&b, dc, 0, gl, 700, 1);
	INJECT_ALL(px, &b);
	DRAIN_SENT(px, dc, 0, gl, 700, 0);
	fill_local(px, dc, 0, gl, 10, queue_length - 1);
	px_batch_reset(&b);
	add_vmsg(&b, dc, 0, gl, 701, 2);
	add_vmsg(&b, dc, 0, gl, 702, 3);
	INJECT_ALL(px, &b);
	EXPECT_NO_DRAIN(px);
	dev_close(l);
	DRAIN_SENT(px, dc, 0, gl, 701, -ESRCH);
	DRAIN_SENT(px, dc, 0, gl, 702, -ESRCH);
	EXPECT_NO_DRAIN(px);
	/* Held, then its sender is unregistered: the message stays; its verdict has no taker. */
	l = ep_open(dc, 0, &gl);
	fill_local(px, dc, 0, gl, 20, queue_length);
	px_batch_reset(&b);
	add_vmsg(&b, dc, 0, gl, 703, 4);
	INJECT_ALL(px, &b);
	CHECK_RC(remote_del(px, dc, R_EP, R_GEN, 0), 0);
	expect_numbers(l, 20, queue_length);
	expect_numbers(l, 4, 1);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * The remote sender withdraws a held message: its SENT carries the CANCEL's status and it is
 * never delivered. A CANCEL of a message already queued, or of none, does nothing.
 */
static void t_verdict_deliver_cancel(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };

	remote_std(px, dc);
	add_vmsg(&b, dc, 0, gl, 800, 1);
	INJECT_ALL(px, &b);
	DRAIN_SENT(px, dc, 0, gl, 800, 0);
	fill_local(px, dc, 0, gl, 10, queue_length - 1);
	px_batch_reset(&b);
	add_vmsg(&b, dc, 0, gl, 801, 2);
	add_vmsg(&b, dc, 0, gl, 802, 3);
	add_vmsg(&b, dc, 0, gl, 803, 4);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "held"), 3);
	INJECT_CANCEL(px, dc, 0, gl, 802, -ETIMEDOUT);
	DRAIN_SENT(px, dc, 0, gl, 802, -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 0, "held"), 2);
	/* The head of the held messages: withdrawing it lets nothing in (the queue is full). */
	INJECT_CANCEL(px, dc, 0, 0, 801, -ECANCELED);
	DRAIN_SENT(px, dc, 0, gl, 801, -ECANCELED);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	/* Queued already (800), unknown ids, another incarnation, nobody bound: nothing. */
	INJECT_CANCEL(px, dc, 0, gl, 800, -ECANCELED);
	INJECT_CANCEL(px, dc, 0, gl, 999, -ECANCELED);
	INJECT_CANCEL(px, dc, 0, gl + 1, 803, -ECANCELED);
	INJECT_CANCEL(px, dc, 3, 0, 803, -ECANCELED);
	INJECT_CANCEL(px, dc, R_EP, 0, 803, -ECANCELED);
	EXPECT_NO_DRAIN(px);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	expect_numbers(l, 1, 1);
	DRAIN_SENT(px, dc, 0, gl, 803, 0);
	expect_numbers(l, 10, queue_length - 1);
	expect_numbers(l, 4, 1);
	EXPECT_EMPTY(l);
	/* Once queued, a CANCEL changes nothing. */
	INJECT_CANCEL(px, dc, 0, gl, 803, -ECANCELED);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* Without DVK_PROXY_VERDICTS nothing changes: sends complete when queued, no send ids. */
static void t_verdict_flag_off(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg bad[3];
	struct px_batch b = { 0 };
	struct rec r[2];

	remote_std(px, dc);
	CHECK_RC(send_num(l, R_EP, 0, 1, 0, SOON), 0);
	CHECK_RC(send_num(l, R_EP, 0, 2, DVK_CALL_NONBLOCK, 0), 0);
	CHECK_EQ(ep_get(dc, 0, "sent"), 2);
	if (DRAIN_N(px, r, 2) == 2) {
		check_numbers(r, 2, 1);
		for (int i = 0; i < 2; i++) {
			CHECK_EQ(r[i].h.request_id, 0);
			CHECK_EQ(r[i].h.timeout_ns, 0);
		}
		recs_free(r, 2);
	}
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	bad[0] = sent_hdr(dc, 0, gl, 1, 0);
	bad[1] = cancel_hdr(dc, 0, gl, 1, -ECANCELED);
	bad[2] = rec_hdr(DVK_PROXY_MESSAGE, dc, 0, gl, R_EP, R_GEN);
	bad[2].request_id = 1;
	for (int i = 0; i < 3; i++)
		CHECKF(INJECT_HDR(px, bad[i]) == -EINVAL, "record %d of kind %u", i, bad[i].kind);
	/* Injected messages get no verdict. */
	add_vmsg(&b, dc, 0, gl, 0, 3);
	INJECT_ALL(px, &b);
	expect_numbers(l, 3, 1);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* The new kinds are checked field by field; timeout_ns is zero in every injected record. */
static void t_verdict_einval(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg s = sent_hdr(dc, 0, gl, 1, 0), c = cancel_hdr(dc, 0, gl, 1, -EIO);
	struct dvk_proxy_msg msg = rec_hdr(DVK_PROXY_MESSAGE, dc, 0, gl, R_EP, R_GEN);
	struct {
		const char *what;
		struct dvk_proxy_msg h;
	} bad[] = {
		{ "SENT with dst_gen 0", s },		{ "SENT with request_id 0", s },
		{ "SENT with a type", s },		{ "SENT with bits", s },
		{ "SENT with a payload", s },		{ "SENT with a positive status", s },
		{ "SENT with -ERESTARTSYS", s },	{ "SENT with status -4095", s },
		{ "SENT with timeout_ns", s },		{ "SENT with src_gen 0", s },
		{ "SENT to DVK_ANY", s },
		{ "CANCEL with status 0", c },		{ "CANCEL with a positive status", c },
		{ "CANCEL with -ERESTARTSYS", c },	{ "CANCEL with request_id 0", c },
		{ "CANCEL with a type", c },		{ "CANCEL with bits", c },
		{ "CANCEL with a payload", c },		{ "CANCEL with timeout_ns", c },
		{ "CANCEL to DVK_ANY", c },
		{ "MESSAGE with timeout_ns", msg },	{ "REQUEST with timeout_ns", msg },
		{ "REPLY with timeout_ns", msg },	{ "NOTIFY with timeout_ns", msg },
		{ "FAIL with timeout_ns", msg },	{ "kind 12", msg },
		{ "CLAIMED", msg },
	};
	enum { NBAD = sizeof(bad) / sizeof(bad[0]) };
	unsigned char zeros[8] = { 0 };

	remote_std(px, dc);
	bad[0].h.dst_gen = 0;
	bad[1].h.request_id = 0;
	bad[2].h.type = 1;
	bad[3].h.bits = 1;
	bad[4].h.size = 8;
	bad[5].h.status = 5;
	bad[6].h.status = -512;
	bad[7].h.status = -4095;
	bad[8].h.timeout_ns = 1;
	bad[9].h.src_gen = 0;
	bad[10].h.dst = DVK_ANY;
	bad[11].h.status = 0;
	bad[12].h.status = EIO;
	bad[13].h.status = -512;
	bad[14].h.request_id = 0;
	bad[15].h.type = 1;
	bad[16].h.bits = 1;
	bad[17].h.size = 8;
	bad[18].h.timeout_ns = 1000;
	bad[19].h.dst = DVK_ANY;
	bad[20].h.timeout_ns = 1;
	bad[21].h.kind = DVK_PROXY_REQUEST;
	bad[21].h.request_id = 5;
	bad[21].h.timeout_ns = 1;
	bad[22].h.kind = DVK_PROXY_REPLY;
	bad[22].h.request_id = 5;
	bad[22].h.timeout_ns = 1;
	bad[23].h.kind = DVK_PROXY_NOTIFY;
	bad[23].h.bits = 1;
	bad[23].h.timeout_ns = 1;
	bad[24].h.kind = DVK_PROXY_FAIL;
	bad[24].h.request_id = 5;
	bad[24].h.status = -EIO;
	bad[24].h.timeout_ns = 1;
	bad[25].h.kind = 12;
	bad[26].h = (struct dvk_proxy_msg){ .kind = DVK_PROXY_CLAIMED, .dc = dc, .dst = 3,
					    .dst_gen = 1, .timeout_ns = 1 };
	for (int i = 0; i < NBAD; i++) {
		struct px_batch b = { 0 };
		struct dvk_proxy_batch res;
		int rc;

		px_batch_add(&b, &bad[i].h, zeros);
		rc = px_inject(px, b.buf, (uint32_t)b.len, &res);
		CHECKF(rc == 0 && res.error == -EINVAL && res.count == 0 && res.size == 0,
		       "%s: rc %s, count %u, error %s", bad[i].what, rcname(rc), res.count,
		       rcname(res.error));
		px_batch_free(&b);
	}
	/* Well-formed, but from a source that is not registered. */
	s.src = 4;
	CHECK_RC(INJECT_HDR(px, s), -EADDRNOTAVAIL);
	c.src_gen = R_GEN + 1;
	CHECK_RC(INJECT_HDR(px, c), -EADDRNOTAVAIL);
	/* And the good ones are taken (there is nothing for them to do). */
	INJECT_SENT(px, dc, 0, gl, 1, 0);
	INJECT_SENT(px, dc, 0, gl, 1, -511);
	INJECT_CANCEL(px, dc, 0, 0, 1, -1);
	EXPECT_NO_DRAIN(px);
	EXPECT_EMPTY(l);
}

/*
 * flags and reserved are zero in every injected record, whatever its kind (DVK_PROXY_NONBLOCK
 * too: only drains set it), and a NOTIFY's request_id too: the inject stops at such a record
 * with EINVAL, and it has no effect. The same records with those zero are taken.
 */
static void t_inject_flags_einval(void)
{
	enum { NGOOD = 8, NVAR = 5 };
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg good[NGOOD];
	unsigned char p[8];
	struct px_batch b = { 0 };
	struct dvk_msg m;
	uint64_t v;

	remote_std(px, dc);
	pattern(p, sizeof(p), 1);
	good[0] = rec_hdr(DVK_PROXY_MESSAGE, dc, 0, gl, R_EP, R_GEN);
	good[1] = rec_hdr(DVK_PROXY_MESSAGE, dc, 0, 0, R_EP, R_GEN);
	good[1].request_id = 900;			/* a send id: a SENT would follow */
	good[2] = rec_hdr(DVK_PROXY_REQUEST, dc, 0, gl, R_EP, R_GEN);
	good[2].request_id = 901;
	good[3] = rec_hdr(DVK_PROXY_NOTIFY, dc, 0, gl, R_EP, R_GEN);
	good[3].bits = 4;
	good[4] = rec_hdr(DVK_PROXY_REPLY, dc, 0, gl, R_EP, R_GEN);
	good[4].request_id = 55;			/* no call waits: taken, dropped */
	good[5] = rec_hdr(DVK_PROXY_FAIL, dc, 0, gl, R_EP, R_GEN);
	good[5].request_id = 56;
	good[5].status = -EIO;
	good[6] = sent_hdr(dc, 0, gl, 57, 0);
	good[7] = cancel_hdr(dc, 0, gl, 58, -ECANCELED);
	for (int i = 0; i < NGOOD; i++) {
		if (i != 3 && i < 5) {
			good[i].type = 10 + i;
			good[i].size = sizeof(p);
		}
		for (int k = 0; k < NVAR; k++) {
			static const uint32_t flags[NVAR] = { DVK_PROXY_NONBLOCK, 2, 1u << 31 };
			static const uint32_t reserved[NVAR] = { 0, 0, 0, 1, 0x80000000u };
			struct dvk_proxy_msg h = good[i];
			struct dvk_proxy_batch r;
			int rc;

			h.flags = flags[k];
			h.reserved = reserved[k];
			px_batch_reset(&b);
			px_batch_add(&b, &h, p);
			rc = px_inject(px, b.buf, (uint32_t)b.len, &r);
			CHECKF(rc == 0 && r.error == -EINVAL && r.count == 0 && r.size == 0,
			       "kind %u with flags 0x%x, reserved 0x%x: rc %s, count %u, error %s",
			       h.kind, h.flags, h.reserved, rcname(rc), r.count, rcname(r.error));
		}
	}
	/* An injected NOTIFY carries no id, with verdicts too: its bits are pending at once. */
	{
		struct dvk_proxy_msg h = good[3];

		h.request_id = 5;
		CHECK_RC(INJECT_HDR(px, h), -EINVAL);
	}
	/* Behind a good record: that one is taken, and the inject stops at the bad one. */
	px_batch_reset(&b);
	px_batch_add(&b, &good[3], NULL);
	{
		struct dvk_proxy_msg h = good[1];

		h.flags = DVK_PROXY_NONBLOCK;
		px_batch_add(&b, &h, p);
	}
	INJECT_STOPS(px, &b, 0, 1, REC(0), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	CHECK_RC(mrecv(l, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, &m), 0);
	CHECK(m.flags == DVK_MSG_NOTIFY && m.bits == 4 && m.peer == R_EP);
	EXPECT_EMPTY(l);
	EXPECT_NO_DRAIN(px);
	/* With flags and reserved zero, every one is taken. */
	px_batch_reset(&b);
	for (int i = 0; i < NGOOD; i++)
		px_batch_add(&b, &good[i], p);
	INJECT_ALL(px, &b);
	CHECK_RC(mrecv(l, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, &m), 0);
	CHECK(m.flags == DVK_MSG_NOTIFY && m.bits == 4);
	EXPECT_MSG(l, R_EP, R_GEN, 0, 10, 8, 1);
	EXPECT_MSG(l, R_EP, R_GEN, 0, 11, 8, 1);
	DRAIN_SENT(px, dc, 0, gl, 900, 0);
	CHECK_RC(mrecv(l, DVK_ANY, 0, &v, sizeof(v), DVK_CALL_NONBLOCK, 0, &m), 0);
	CHECK(m.flags == DVK_MSG_REQUEST && m.request_id == 901 && m.type == 12);
	CHECK_RC(mreply(l, &m, 1, NULL, 0), 0);
	{
		struct rec r;

		if (DRAIN_N(px, &r, 1) == 1) {
			CHECK_REC(&r, DVK_PROXY_REPLY, dc, R_EP, R_GEN, 0, gl, 1);
			CHECK_EQ(r.h.request_id, 901);
			recs_free(&r, 1);
		}
	}
	EXPECT_EMPTY(l);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * A submitted NONBLOCK send to a verdicts remote endpoint with room waits for its verdict like
 * any: it is drained with DVK_PROXY_NONBLOCK and a send id, and completes with the SENT's
 * status (-EAGAIN: the other node had no room). Sends without the flag, submitted or
 * blocking, are drained with flags 0; all number from one counter.
 */
static void t_verdict_nonblock_submitted(void)
{
	uint32_t dc = dc_new(8), gl = 0, gs = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), out[2];
	struct vsend_arg a = { .num = 4, .want_rc = 0 };
	struct dvk_proxy_msg h1, h2, h3, h4, h6;
	uint64_t t1, t2, t3, t5, t6;
	pid_t pid;

	remote_std(px, dc);
	t1 = a_send_flags(l, R_EP, 0, 1, DVK_CALL_NONBLOCK);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	EXPECT_NO_COMPLETION(l);
	h1 = DRAIN_SEND(px, dc, 0, gl, 1);
	CHECK_EQ(h1.flags, DVK_PROXY_NONBLOCK);
	CHECK_EQ(h1.reserved, 0);
	CHECK_EQ(h1.timeout_ns, 0);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, h1.request_id, 0);
	CHECK_RC(REAP_SEND(l, t1), 0);
	CHECK_EQ(ep_get(dc, 0, "sent"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	/* Refused there for room: the verdict -EAGAIN fails it; not counted as sent. */
	t2 = a_send_flags(l, R_EP, R_GEN, 2, DVK_CALL_NONBLOCK);
	h2 = DRAIN_SEND(px, dc, 0, gl, 2);
	CHECK_EQ(h2.flags, DVK_PROXY_NONBLOCK);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, h2.request_id, -EAGAIN);
	CHECK_RC(REAP_SEND(l, t2), -EAGAIN);
	CHECK_EQ(ep_get(dc, 0, "sent"), 1);
	/* Without the flag: submitted, and a blocking DVK_IOC_SEND. */
	t3 = a_send(l, R_EP, 0, 3);
	h3 = DRAIN_SEND(px, dc, 0, gl, 3);
	CHECK_EQ(h3.flags, 0);
	INJECT_SENT(px, dc, 0, gl, h3.request_id, 0);
	CHECK_RC(REAP_SEND(l, t3), 0);
	pid = vsend_start(&a, dc, 1, &gs, out);
	h4 = DRAIN_SEND(px, dc, 1, gs, 4);
	CHECK_EQ(h4.flags, 0);
	INJECT_SENT(px, dc, 1, gs, h4.request_id, 0);
	EXPECT_BYTE(out[0], 'D');
	CHECK_CHILD(pid);
	CHECK(h1.request_id != h2.request_id && h2.request_id != h3.request_id &&
	      h1.request_id != h3.request_id);
	/* Before the drain CANCEL withdraws it; in flight EALREADY, a CANCEL record. */
	t5 = a_send_flags(l, R_EP, 0, 5, DVK_CALL_NONBLOCK);
	CHECK_RC(cancel_rc(l, t5), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	t6 = a_send_flags(l, R_EP, 0, 6, DVK_CALL_NONBLOCK);
	h6 = DRAIN_SEND(px, dc, 0, gl, 6);
	CHECK_EQ(h6.flags, DVK_PROXY_NONBLOCK);
	CHECK_RC(cancel_rc(l, t6), -EALREADY);
	DRAIN_CANCEL(px, dc, 0, gl, h6.request_id, -ECANCELED);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, h6.request_id, -ECANCELED);
	CHECK_RC(REAP_SEND(l, t6), -ECANCELED);
	CHECK_EQ(ep_get(dc, 0, "sent"), 2);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/*
 * A submitted NONBLOCK send finding the remote endpoint's queue here full, or a sender held
 * there, completes within SUBMIT with EAGAIN (CANCEL finds it complete): nothing is queued,
 * held or drained. Once there is room and no one held, it goes as above.
 */
static void t_verdict_nonblock_full(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), filler = ep_open(dc, 1, NULL);
	struct rec *r = calloc(queue_length, sizeof(*r));
	uint64_t *tok = calloc(queue_length, sizeof(*tok)), t, th;
	struct dvk_proxy_msg h2, h4;
	long long messages;

	REQUIRE(r && tok);
	remote_std(px, dc);
	for (uint32_t i = 0; i < queue_length; i++)
		tok[i] = a_send(filler, R_EP, 0, 100 + i);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
	messages = stat_now("messages");
	t = a_send_flags(l, R_EP, 0, 1, DVK_CALL_NONBLOCK);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_SEND(l, t), -EAGAIN);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
	CHECK_EQ(stat_now("messages"), messages);
	/* A send without the flag is held; behind it NONBLOCK fails at once again. */
	th = a_send(l, R_EP, 0, 2);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 1);
	t = a_send_flags(l, R_EP, R_GEN, 3, DVK_CALL_NONBLOCK);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_SEND(l, t), -EAGAIN);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 1);
	/* The drain makes room: the held send is queued, and a NONBLOCK one is queued after it. */
	CHECK_EQ(DRAIN_N(px, r, queue_length), queue_length);
	check_numbers(r, queue_length, 100);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	t = a_send_flags(l, R_EP, 0, 4, DVK_CALL_NONBLOCK);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 2);
	EXPECT_NO_COMPLETION(l);
	h2 = DRAIN_SEND(px, dc, 0, gl, 2);
	CHECK_EQ(h2.flags, 0);
	h4 = DRAIN_SEND(px, dc, 0, gl, 4);
	CHECK_EQ(h4.flags, DVK_PROXY_NONBLOCK);
	for (uint32_t i = 0; i < queue_length; i++) {
		CHECK_EQ(r[i].h.flags, 0);
		INJECT_SENT(px, dc, 1, r[i].h.src_gen, r[i].h.request_id, 0);
	}
	for (uint32_t i = 0; i < queue_length; i++)
		CHECK_RC(REAP_SEND(filler, tok[i]), 0);
	INJECT_SENT(px, dc, 0, gl, h2.request_id, 0);
	CHECK_RC(REAP_SEND(l, th), 0);
	INJECT_SENT(px, dc, 0, gl, h4.request_id, 0);
	CHECK_RC(REAP_SEND(l, t), 0);
	CHECK_EQ(ep_get(dc, 0, "sent"), 2);
	recs_free(r, queue_length);
	free(r);
	free(tok);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/*
 * Without DVK_PROXY_VERDICTS a submitted NONBLOCK send to a remote endpoint completes once
 * queued (0), or at once with EAGAIN when the queue is full; its MESSAGE has no send id and
 * flags 0.
 */
static void t_nonblock_flag_off(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	struct rec *r = calloc(queue_length, sizeof(*r));
	uint64_t t;

	REQUIRE(r);
	remote_std(px, dc);
	t = a_send_flags(l, R_EP, 0, 1, DVK_CALL_NONBLOCK);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_SEND(l, t), 0);
	if (DRAIN_N(px, r, 1) == 1) {
		check_numbers(r, 1, 1);
		CHECK_EQ(r[0].h.request_id, 0);
		CHECK_EQ(r[0].h.flags, 0);
		recs_free(r, 1);
	}
	fill_remote(l, dc, 10);
	t = a_send_flags(l, R_EP, 0, 99, DVK_CALL_NONBLOCK);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_SEND(l, t), -EAGAIN);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	if (DRAIN_N(px, r, queue_length) == (int)queue_length) {
		check_numbers(r, queue_length, 10);
		recs_free(r, queue_length);
	}
	free(r);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/* ====================================================================================== */
/* Withdrawals: with DVK_PROXY_VERDICTS, a sendrec given up in flight is withdrawn there  */
/* ====================================================================================== */

/* ---- the calling node: one CANCEL record for a drained sendrec its caller gives up ---- */

/* Submits a sendrec of number n (type n, 8 bytes of pattern(n)) to (dst, gen); its token. */
static uint64_t a_sendrec(int fd, uint32_t dst, uint32_t gen, unsigned n)
{
	unsigned char req[8];
	struct dvk_submit s = {
		.op = DVK_OP_SENDREC,
		.msg = { .peer = dst, .peer_gen = gen, .type = (int32_t)n,
			 .payload = (uintptr_t)req, .size = sizeof(req) },
	};
	int rc;

	pattern(req, sizeof(req), n);
	rc = dvk_ioctl(fd, DVK_IOC_SUBMIT, &s);
	if (rc)
		tap_fail("SUBMIT of sendrec %u: %s", n, errname(-rc));
	return s.token;
}

/*
 * Waits for one completion, of the SENDREC `token`, and returns its result; with 0, its reply
 * must be from the remote endpoint with type `type` and 8 bytes of pattern(seed).
 */
#define REAP_SENDREC(fd, token, type, seed)                                               \
	reap_sendrec_at(__FILE__, __LINE__, fd, token, type, seed)
static int reap_sendrec_at(const char *file, int line, int fd, uint64_t token, int32_t type,
			   unsigned seed)
{
	unsigned char buf[2 * sizeof(struct dvk_completion) + 64];
	struct dvk_reap r = { .buffer = (uintptr_t)buf, .size = sizeof(buf) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct dvk_completion c;
	char why[300];
	int rc;

	if (poll(&p, 1, LONG_MS) != 1) {
		tap_failed = 1;
		tap_diag_at(file, line, "no completion");
		return 1;
	}
	rc = dvk_ioctl(fd, DVK_IOC_REAP, &r);
	if (rc || r.count != 1 || !cq_record_check(buf, r.size, 0, max_payload, why, sizeof(why))) {
		tap_failed = 1;
		tap_diag_at(file, line, "reap: %s, %u records; %s", rcname(rc), r.count,
			    rc ? "" : why);
		return 1;
	}
	memcpy(&c, buf, sizeof(c));
	if (c.op != DVK_OP_SENDREC || c.token != token ||
	    (!c.result && (c.msg.peer != R_EP || c.msg.peer_gen != R_GEN || c.msg.type != type ||
			   c.msg.size != 8 || !is_pattern(buf + sizeof(c), 8, seed)))) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "reaped token %llu op %u result %s, reply from %u/%u type %d size %u; "
			    "want the sendrec %llu", (unsigned long long)c.token, c.op,
			    rcname(c.result), c.msg.peer, c.msg.peer_gen, c.msg.type, c.msg.size,
			    (unsigned long long)token);
	}
	return c.result;
}

/*
 * A deadline after the drain: the sendrec ends with ETIMEDOUT, and its answer is no longer
 * awaited: one CANCEL record (from the caller, with the request id, -ETIMEDOUT) takes the
 * place of the answer owed. The REPLY and FAIL that come late are ignored.
 */
static void t_withdraw_deadline(void)
{
	uint32_t dc = dc_new(8), gc = 0;
	int px = verdicts_px_open(), done[2], hold[2];
	struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 3, .len = 8,
			       .seed = 3, .deadline_ms = 300, .want_rc = -ETIMEDOUT,
			       .then_empty = true };
	long long messages;
	struct rec r;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(done);
	pipe_new(hold);
	ca.done_w = done[1];
	ca.hold_r = hold[0];
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	r = DRAIN_REQUEST(px, dc, 1, gc, 3, 8, 3);
	CHECKF(r.h.timeout_ns > 0 && r.h.timeout_ns <= 300000000ull, "timeout_ns %llu",
	       (unsigned long long)r.h.timeout_ns);
	EXPECT_BYTE(done[0], 'D');
	CHECK_EQ(ep_get(dc, 1, "calls"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	/* The record is the answer's header: no memory beyond what the drain had taken. */
	messages = stat_now("messages");
	DRAIN_CANCEL(px, dc, 1, gc, r.h.request_id, -ETIMEDOUT);
	CHECK_EQ(stat_now("messages"), messages - 1);
	EXPECT_NO_DRAIN(px);
	inject_reply(px, dc, 1, gc, r.h.request_id, 4, 8, 4);
	inject_fail(px, dc, 1, gc, r.h.request_id, -ESRCH);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	put_byte(hold[1], 'G');
	CHECK_CHILD(pid);
	recs_free(&r, 1);
	EXPECT_NO_DRAIN(px);
}

/*
 * DVK_IOC_CANCEL of a submitted sendrec: before the drain it is withdrawn here, with no
 * record; drained, it is undone as well (0, no completion) and one CANCEL record with
 * -ECANCELED follows; once its reply has come, CANCEL says EALREADY and nothing is drained.
 */
static void t_withdraw_submitted(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	uint64_t t1, t2, t3;
	struct rec r;

	remote_std(px, dc);
	t1 = a_sendrec(l, R_EP, 0, 1);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	CHECK_RC(cancel_rc(l, t1), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);

	t2 = a_sendrec(l, R_EP, R_GEN, 2);
	r = DRAIN_REQUEST(px, dc, 0, gl, 2, 8, 2);
	CHECK_EQ(r.h.timeout_ns, 0);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	EXPECT_NO_DRAIN(px);
	CHECK_RC(cancel_rc(l, t2), 0);
	CHECK_RC(cancel_rc(l, t2), -ENOENT);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	DRAIN_CANCEL(px, dc, 0, gl, r.h.request_id, -ECANCELED);
	EXPECT_NO_DRAIN(px);
	inject_reply(px, dc, 0, gl, r.h.request_id, 5, 8, 5);
	inject_fail(px, dc, 0, gl, r.h.request_id, -EHOSTUNREACH);
	EXPECT_NO_COMPLETION(l);
	EXPECT_EMPTY(l);
	recs_free(&r, 1);

	t3 = a_sendrec(l, R_EP, 0, 3);
	r = DRAIN_REQUEST(px, dc, 0, gl, 3, 8, 3);
	inject_reply(px, dc, 0, gl, r.h.request_id, 6, 8, 6);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_RC(cancel_rc(l, t3), -EALREADY);
	EXPECT_NO_DRAIN(px);
	CHECK_RC(REAP_SENDREC(l, t3, 6, 6), 0);
	EXPECT_NO_COMPLETION(l);
	recs_free(&r, 1);
}

/* A helper whose thread waits in a sendrec until the helper closes the file: EBADF. */
struct closing_arg {
	int fd, go_r;
	pid_t tid;
	int rc;
};

static void *closing_sendrec(void *p)
{
	struct closing_arg *a = p;
	uint64_t req, rep;
	struct dvk_sendrec s;

	a->tid = (pid_t)syscall(SYS_gettid);
	pattern(&req, sizeof(req), 9);
	sendrec_init(&s, R_EP, 0, 9, &req, sizeof(req), &rep, sizeof(rep), SOON);
	a->rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s);
	return NULL;
}

static void closing_caller(void *p)
{
	struct closing_arg *a = p;
	pthread_t th;

	REQUIRE(pthread_create(&th, NULL, closing_sendrec, a) == 0);
	EXPECT_BYTE(a->go_r, 'G');
	WAIT_SLEEPING(a->tid);
	dev_close(a->fd);
	REQUIRE(pthread_join(th, NULL) == 0);
	CHECK_RC(a->rc, -EBADF);
}

/*
 * The caller goes while its request is in flight: killed in a blocking sendrec, its process
 * closing the file under a blocking one (EBADF), or its file closed with a submitted one: one
 * CANCEL record with -ESRCH each. A submitted one not drained yet goes with no record.
 */
static void t_withdraw_caller_gone(void)
{
	uint32_t dc = dc_new(8), gc = 0, gl = 0;
	int px = verdicts_px_open(), go[2], l;
	struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 1, .len = 8,
			       .seed = 1 };
	struct closing_arg cl = { 0 };
	struct rec r;
	pid_t pid;

	remote_std(px, dc);
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	r = DRAIN_REQUEST(px, dc, 1, gc, 1, 8, 1);
	WAIT_SLEEPING(pid);
	EXPECT_NO_DRAIN(px);
	kill_child(pid);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	DRAIN_CANCEL(px, dc, 1, gc, r.h.request_id, -ESRCH);
	EXPECT_NO_DRAIN(px);
	inject_reply(px, dc, 1, gc, r.h.request_id, 2, 8, 2);
	EXPECT_NO_DRAIN(px);
	recs_free(&r, 1);

	/* A thread of the caller waits; its process closes the file. */
	pipe_new(go);
	cl.fd = ep_open(dc, 2, &gc);
	cl.go_r = go[0];
	pid = SPAWN(closing_caller, &cl, cl.fd);
	dev_close(cl.fd);
	r = DRAIN_REQUEST(px, dc, 2, gc, 9, 8, 9);
	put_byte(go[1], 'G');
	CHECK_CHILD(pid);
	WAIT_UNBOUND(dc, 2);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	DRAIN_CANCEL(px, dc, 2, gc, r.h.request_id, -ESRCH);
	EXPECT_NO_DRAIN(px);
	recs_free(&r, 1);

	/* Submitted: one in flight, one not drained yet; then the file goes. */
	l = ep_open(dc, 0, &gl);
	a_sendrec(l, R_EP, 0, 3);
	r = DRAIN_REQUEST(px, dc, 0, gl, 3, 8, 3);
	a_sendrec(l, R_EP, 0, 4);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 1);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	dev_close(l);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	DRAIN_CANCEL(px, dc, 0, gl, r.h.request_id, -ESRCH);
	EXPECT_NO_DRAIN(px);
	recs_free(&r, 1);
}

/*
 * A caller whose sendrecs are interrupted (no SA_RESTART) after the drain: each is kept. Each
 * starts on an 'N', then the caller waits for a 'G' to exit.
 */
struct parker_arg {
	int fd, out_w, go_r, sig_w, n;
};

static void parker(void *p)
{
	struct parker_arg *a = p;

	sig_pipe_w = a->sig_w;
	catch_signal(SIGUSR1, false);
	for (int i = 0; i < a->n; i++) {
		uint64_t req, rep;
		struct dvk_sendrec s;

		pattern(&req, sizeof(req), 100 + i);
		sendrec_init(&s, R_EP, 0, 100 + i, &req, sizeof(req), &rep, sizeof(rep), SOON);
		EXPECT_BYTE(a->go_r, 'N');
		put_byte(a->out_w, 'C');
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), -EINTR);
		CHECK(s.flags & DVK_CALL_RESUME);
		CHECK(s.call != 0);
		put_byte(a->out_w, 'P');
	}
	EXPECT_BYTE(a->go_r, 'G');
}

/*
 * A sendrec interrupted after the drain is kept for DVK_CALL_RESUME: not given up, no record.
 * Beyond DVK_PARKED_MAX the oldest kept call is given up: its CANCEL record says -ECANCELED.
 * The caller's process exits with the others kept: a CANCEL record with -ESRCH for each.
 */
static void t_withdraw_kept(void)
{
	enum { N = DVK_PARKED_MAX + 1 };
	uint32_t dc = dc_new(8), gc = 0;
	int px = verdicts_px_open(), out[2], go[2], sig[2];
	struct parker_arg a = { .fd = ep_open(dc, 1, &gc), .n = N };
	uint64_t ids[N];
	struct rec r[N];
	bool seen[N] = { false };
	int n;
	pid_t pid;

	remote_std(px, dc);
	pipe_new(out);
	pipe_new(go);
	pipe_new(sig);
	a.out_w = out[1];
	a.go_r = go[0];
	a.sig_w = sig[1];
	pid = SPAWN(parker, &a, a.fd);
	dev_close(a.fd);
	for (int i = 0; i < N; i++) {
		put_byte(go[1], 'N');
		EXPECT_BYTE(out[0], 'C');
		r[0] = DRAIN_REQUEST(px, dc, 1, gc, 100 + i, 8, 100 + i);
		ids[i] = r[0].h.request_id;
		recs_free(r, 1);
		WAIT_SLEEPING(pid);
		CHECK(kill(pid, SIGUSR1) == 0);
		EXPECT_BYTE(sig[0], 'S');
		EXPECT_BYTE(out[0], 'P');
		if (i < DVK_PARKED_MAX) {
			EXPECT_NO_DRAIN(px);
			CHECK_EQ(ep_get(dc, R_EP, "owed"), i + 1);
		}
	}
	DRAIN_CANCEL(px, dc, 1, gc, ids[0], -ECANCELED);
	EXPECT_NO_DRAIN(px);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), DVK_PARKED_MAX);
	CHECK_EQ(ep_get(dc, 1, "calls"), DVK_PARKED_MAX);
	put_byte(go[1], 'G');
	CHECK_CHILD(pid);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
	n = DRAIN_N(px, r, DVK_PARKED_MAX);
	for (int i = 0; i < n; i++) {
		int k = 1;

		while (k < N && ids[k] != r[i].h.request_id)
			k++;
		CHECK_REC(&r[i], DVK_PROXY_CANCEL, dc, R_EP, R_GEN, 1, gc, 0);
		CHECK_EQ(r[i].h.status, -ESRCH);
		CHECKF(k < N && !seen[k], "CANCEL of request id %llu",
		       (unsigned long long)r[i].h.request_id);
		if (k < N)
			seen[k] = true;
	}
	recs_free(r, n);
	EXPECT_NO_DRAIN(px);
}

/*
 * Given up before the drain (its deadline, SIGKILL or CANCEL while queued, its deadline while
 * held behind a full queue, its file closed): withdrawn here, nothing is ever drained for it.
 */
static void t_withdraw_undrained(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = R_EP, .type = 1, .len = 8,
			       .seed = 1, .deadline_ms = 100, .want_rc = -ETIMEDOUT,
			       .then_empty = true };
	struct call_arg cb = { .fd = ep_open(dc, 2, NULL), .dst = R_EP, .type = 2, .len = 8,
			       .seed = 2 };
	pid_t pid;

	remote_std(px, dc);
	pid = SPAWN(caller, &ca, ca.fd);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	pid = SPAWN(caller, &cb, cb.fd);
	dev_close(cb.fd);
	WAIT_EP(dc, R_EP, "queued", 1);
	WAIT_SLEEPING(pid);
	kill_child(pid);
	WAIT_UNBOUND(dc, 2);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	CHECK_RC(cancel_rc(l, a_sendrec(l, R_EP, 0, 3)), 0);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
	/* Held behind a queue full of submitted sendrecs; then their file closes. */
	for (uint32_t i = 0; i < queue_length; i++)
		a_sendrec(l, R_EP, 0, 10 + i);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), queue_length);
	pid = SPAWN(caller, &ca, ca.fd);
	dev_close(ca.fd);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, R_EP, "held"), 0);
	dev_close(l);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
	EXPECT_NO_DRAIN(px);
}

/*
 * REMOTE_DEL (mode 0: ESRCH; 1: NODE_DOWN, EHOSTUNREACH) or closing the proxy (2:
 * EHOSTUNREACH) ends the sendrecs in flight: no CANCEL record for them, and one posted
 * earlier for a caller that had given up goes with the remote endpoint. Nothing is left.
 */
static void withdraw_teardown(int mode)
{
	int want = mode ? -EHOSTUNREACH : -ESRCH;
	uint32_t dc = dc_new(8), g1 = 0, g2 = 0, gl = 0;
	struct call_arg c1 = { .dst = R_EP, .type = 1, .len = 8, .seed = 1, .want_rc = want,
			       .then_empty = true };
	struct call_arg c2 = { .dst = R_EP, .type = 2, .len = 8, .seed = 2, .deadline_ms = 400,
			       .want_rc = -ETIMEDOUT, .then_empty = true };
	struct dvk_stats before;
	struct rec r1, r2, r3;
	int px, l, done[2];
	pid_t p1, p2;
	uint64_t t3;

	CHECK_RC(stats_read(&before), 0);
	px = verdicts_px_open();
	remote_std(px, dc);
	l = ep_open(dc, 0, &gl);
	c1.fd = ep_open(dc, 1, &g1);
	p1 = SPAWN(caller, &c1, c1.fd);
	dev_close(c1.fd);
	r1 = DRAIN_REQUEST(px, dc, 1, g1, 1, 8, 1);
	t3 = a_sendrec(l, R_EP, 0, 3);
	r3 = DRAIN_REQUEST(px, dc, 0, gl, 3, 8, 3);
	pipe_new(done);
	c2.fd = ep_open(dc, 2, &g2);
	c2.done_w = done[1];
	p2 = SPAWN(caller, &c2, c2.fd);
	dev_close(c2.fd);
	r2 = DRAIN_REQUEST(px, dc, 2, g2, 2, 8, 2);
	/* The second caller gives up: its CANCEL waits to be drained. */
	EXPECT_BYTE(done[0], 'D');
	CHECK_CHILD(p2);
	CHECK_EQ(ep_get(dc, R_EP, "owed"), 2);
	CHECK_EQ(ep_get(dc, R_EP, "queued"), 1);
	if (mode == 2)
		dev_close(px);
	else
		CHECK_RC(remote_del(px, dc, R_EP, R_GEN, mode ? DVK_REMOTE_NODE_DOWN : 0), 0);
	CHECK_CHILD(p1);
	CHECK_RC(REAP_SENDREC(l, t3, 0, 0), want);
	dev_close(l);
	if (mode != 2) {
		struct dvk_proxy_msg h = rec_hdr(DVK_PROXY_FAIL, dc, 1, g1, R_EP, R_GEN);

		EXPECT_NO_DRAIN(px);
		/* The answer that comes too late is refused with the record's source. */
		h.request_id = r1.h.request_id;
		h.status = -EIO;
		CHECK_RC(INJECT_HDR(px, h), -EADDRNOTAVAIL);
		dev_close(px);
	}
	recs_free(&r1, 1);
	recs_free(&r2, 1);
	recs_free(&r3, 1);
	CHECK_COUNTERS_BACK(&before);
}

static void t_withdraw_del(void)
{
	withdraw_teardown(0);
}

static void t_withdraw_node_down(void)
{
	withdraw_teardown(1);
}

static void t_withdraw_close_proxy(void)
{
	withdraw_teardown(2);
}

/* ---- the calling node: a caller gives up while the drain is copying its request out ---- */

/* A drain in a thread, into a buffer that userfaultfd stops it at. */
struct stuck_drain {
	pthread_t th;
	int px, rc;
	void *buf;
	struct dvk_proxy_batch res;
};

static void *stuck_drain(void *p)
{
	struct stuck_drain *d = p;

	d->rc = px_drain(d->px, d->buf, 4096, 0, SOON, &d->res);
	return NULL;
}

/* A userfaultfd that kernel accesses wait on too (the test runs as root); or -errno. */
static int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), e;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/*
 * The caller dies while a drain is copying its request out (the drain stops on a page that
 * userfaultfd holds back): once the drain is done, the CANCEL record with -ESRCH follows it.
 * If the drain then fails (the page goes), the request is dropped: the other node never had
 * it, and no record follows.
 */
static void t_withdraw_while_drained(void)
{
	uint32_t dc = dc_new(8);
	int px = verdicts_px_open(), uffd = uffd_open();
	static unsigned char zeros[4096] __attribute__((aligned(4096)));

	if (uffd < 0) {
		tap_fail("userfaultfd: %s", errname(-uffd));
		return;
	}
	remote_std(px, dc);
	for (int fail = 0; fail < 2; fail++) {
		uint32_t gc = 0;
		struct call_arg ca = { .fd = ep_open(dc, 1, &gc), .dst = R_EP, .type = 7, .len = 8,
				       .seed = 7 };
		unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
		struct pollfd pf = { .fd = uffd, .events = POLLIN };
		struct stuck_drain d = { .px = px };
		struct uffd_msg msg;
		struct rec r = { 0 };
		int n = 0;
		pid_t pid;

		REQUIRE(page != MAP_FAILED);
		reg.range = (struct uffdio_range){ .start = (uintptr_t)page, .len = 4096 };
		REQUIRE(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
		pid = SPAWN(caller, &ca, ca.fd);
		dev_close(ca.fd);
		WAIT_EP(dc, R_EP, "queued", 1);
		d.buf = page;
		REQUIRE(pthread_create(&d.th, NULL, stuck_drain, &d) == 0);
		/* The drain has taken the request and waits to write its record. */
		CHECK(poll(&pf, 1, LONG_MS) == 1);
		CHECK(read(uffd, &msg, sizeof(msg)) == sizeof(msg));
		CHECK_EQ(msg.event, UFFD_EVENT_PAGEFAULT);
		CHECK_EQ(msg.arg.pagefault.address & ~4095ull, (uintptr_t)page);
		CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
		kill_child(pid);
		WAIT_UNBOUND(dc, 1);
		if (!fail) {
			struct uffdio_copy c = { .dst = (uintptr_t)page, .src = (uintptr_t)zeros,
						 .len = 4096 };

			CHECK(ioctl(uffd, UFFDIO_COPY, &c) == 0);
		} else {
			struct uffdio_range w = { .start = (uintptr_t)page, .len = 4096 };

			CHECK(munmap(page, 4096) == 0);
			CHECK(ioctl(uffd, UFFDIO_WAKE, &w) == 0);
		}
		REQUIRE(pthread_join(d.th, NULL) == 0);
		if (!fail) {
			CHECK_RC(d.rc, 0);
			PARSE(page, &d.res, &r, &n, 1);
			CHECK_EQ(n, 1);
			CHECK_REC(&r, DVK_PROXY_REQUEST, dc, R_EP, R_GEN, 1, gc, 7);
			CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
			DRAIN_CANCEL(px, dc, 1, gc, r.h.request_id, -ESRCH);
			recs_free(&r, n > 0 ? 1 : 0);
			CHECK(munmap(page, 4096) == 0);
		} else {
			CHECK_RC(d.rc, -EFAULT);
			CHECK_EQ(ep_get(dc, R_EP, "queued"), 0);
		}
		CHECK_EQ(ep_get(dc, R_EP, "owed"), 0);
		EXPECT_NO_DRAIN(px);
	}
	close(uffd);
}

/* ---- the serving node: an injected CANCEL withdraws a request not received yet ---- */

/* Appends a REQUEST from the remote endpoint to (dst, dst_gen): id, type, 8 bytes of pattern. */
static void add_request(struct px_batch *b, uint32_t dc, uint32_t dst, uint32_t dst_gen,
			uint64_t id, int32_t type)
{
	add_answer(b, DVK_PROXY_REQUEST, dc, dst, dst_gen, R_EP, R_GEN, id, type, 8, type, 0);
}

/* Receives the request `id` (type, 8 bytes of pattern(type)) from the remote endpoint. */
#define EXPECT_REQUEST(fd, id, type) expect_request_at(__FILE__, __LINE__, fd, id, type)
static void expect_request_at(const char *file, int line, int fd, uint64_t id, int32_t type)
{
	struct dvk_msg m = { 0 };

	expect_msg_at(file, line, fd, R_EP, R_GEN, DVK_MSG_REQUEST, type, 8, type, &m);
	if (m.request_id != id) {
		tap_failed = 1;
		tap_diag_at(file, line, "received request %llu; want %llu",
			    (unsigned long long)m.request_id, (unsigned long long)id);
	}
}

/* Drains one REPLY to the remote caller for request `id` from local (nr, gen). */
static void drain_reply(int px, uint32_t dc, uint32_t nr, uint32_t gen, uint64_t id,
			int32_t type)
{
	struct rec r;

	if (DRAIN_N(px, &r, 1) != 1)
		return;
	CHECK_REC(&r, DVK_PROXY_REPLY, dc, R_EP, R_GEN, nr, gen, type);
	CHECK_EQ(r.h.request_id, id);
	recs_free(&r, 1);
}

/*
 * A request injected and still queued at its server: the caller's CANCEL withdraws it. The
 * server never receives it, owes nothing, and nothing is drained for it, also when the server
 * goes later (the request after it gets its FAIL). The rest of the queue keeps its order.
 */
static void t_withdraw_inject_queued(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	long long messages = stat_now("messages");
	struct px_batch b = { 0 };
	struct dvk_msg m;
	struct rec r;
	uint64_t v = 0;

	remote_std(px, dc);
	add_msg(&b, dc, 0, gl, 1, 8, 1);
	add_request(&b, dc, 0, gl, 901, 2);
	add_request(&b, dc, 0, 0, 902, 3);
	add_msg(&b, dc, 0, gl, 4, 8, 4);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "queued"), 4);
	INJECT_CANCEL(px, dc, 0, gl, 901, -ESRCH);
	CHECK_EQ(ep_get(dc, 0, "queued"), 3);
	CHECK_EQ(stat_now("messages"), messages + 3);
	/* Once more, and with the current generation: there is nothing left to withdraw. */
	INJECT_CANCEL(px, dc, 0, 0, 901, -ECANCELED);
	EXPECT_NO_DRAIN(px);
	EXPECT_MSG(l, R_EP, R_GEN, 0, 1, 8, 1);
	EXPECT_REQUEST(l, 902, 3);
	EXPECT_MSG(l, R_EP, R_GEN, 0, 4, 8, 4);
	EXPECT_EMPTY(l);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_EQ(ep_get(dc, 0, "received"), 3);
	m = (struct dvk_msg){ .peer = R_EP, .peer_gen = R_GEN, .request_id = 902 };
	CHECK_RC(mreply(l, &m, 30, &v, 8), 0);
	drain_reply(px, dc, 0, gl, 902, 30);
	EXPECT_NO_DRAIN(px);
	/* Withdrawn (dst_gen 0: the current), then its server goes: a FAIL for the other only. */
	px_batch_reset(&b);
	add_request(&b, dc, 0, gl, 903, 5);
	add_request(&b, dc, 0, gl, 904, 6);
	INJECT_ALL(px, &b);
	INJECT_CANCEL(px, dc, 0, 0, 903, -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	dev_close(l);
	if (DRAIN_N(px, &r, 1) == 1) {
		CHECK_REC(&r, DVK_PROXY_FAIL, dc, R_EP, R_GEN, 0, gl, 0);
		CHECK_EQ(r.h.request_id, 904);
		CHECK_EQ(r.h.status, -ESRCH);
		recs_free(&r, 1);
	}
	EXPECT_NO_DRAIN(px);
	CHECK_EQ(stat_now("messages"), messages);
	px_batch_free(&b);
}

/*
 * Requests held behind a full queue: a CANCEL withdraws one from the middle, or the head
 * (nothing else goes in: the queue is still full); the others, and a send with a send id held
 * among them, go in as room comes.
 */
static void t_withdraw_inject_held(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };
	struct dvk_msg m;
	uint64_t v = 0;

	remote_std(px, dc);
	fill_local(px, dc, 0, gl, 0, queue_length);
	add_request(&b, dc, 0, gl, 911, 11);
	add_request(&b, dc, 0, gl, 912, 12);
	add_vmsg(&b, dc, 0, gl, 913, 5000);
	add_request(&b, dc, 0, gl, 914, 14);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 0, "held"), 4);
	INJECT_CANCEL(px, dc, 0, gl, 912, -ECANCELED);
	CHECK_EQ(ep_get(dc, 0, "held"), 3);
	INJECT_CANCEL(px, dc, 0, gl, 911, -ESRCH);
	CHECK_EQ(ep_get(dc, 0, "held"), 2);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	EXPECT_NO_DRAIN(px);
	/* Room for one: the send goes in (its SENT 0), then the last request. */
	expect_numbers(l, 0, 1);
	DRAIN_SENT(px, dc, 0, gl, 913, 0);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	expect_numbers(l, 1, queue_length - 1);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	CHECK_RC(mrecv(l, DVK_ANY, 0, &v, sizeof(v), 0, SOON, &m), 0);
	CHECK_EQ(v, 5000);
	EXPECT_REQUEST(l, 914, 14);
	EXPECT_EMPTY(l);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	m = (struct dvk_msg){ .peer = R_EP, .peer_gen = R_GEN, .request_id = 914 };
	CHECK_RC(mreply(l, &m, 40, &v, 8), 0);
	drain_reply(px, dc, 0, gl, 914, 40);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * A request the server has received (by a receive, or handed to a submitted receive that is
 * not reaped yet) is its server's: the CANCEL does nothing, and the reply is drained as usual.
 */
static void t_withdraw_inject_received(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct px_batch b = { 0 };
	struct dvk_submit s = { .op = DVK_OP_RECEIVE, .from = DVK_ANY };
	unsigned char buf[sizeof(struct dvk_completion) + 64];
	struct dvk_reap rp = { .buffer = (uintptr_t)buf, .size = sizeof(buf) };
	struct dvk_completion c;
	struct pollfd pf = { .fd = l, .events = POLLIN };
	struct dvk_msg m;
	uint64_t v = 0;
	uint32_t gk = 0;
	int k = ep_open(dc, 1, &gk);

	remote_std(px, dc);
	add_request(&b, dc, 0, gl, 920, 20);
	INJECT_ALL(px, &b);
	EXPECT_REQUEST(l, 920, 20);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	INJECT_CANCEL(px, dc, 0, gl, 920, -ESRCH);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	EXPECT_NO_DRAIN(px);
	m = (struct dvk_msg){ .peer = R_EP, .peer_gen = R_GEN, .request_id = 920 };
	CHECK_RC(mreply(l, &m, 21, &v, 8), 0);
	drain_reply(px, dc, 0, gl, 920, 21);
	EXPECT_NO_DRAIN(px);
	/* Handed to a submitted receive: received, though not reaped yet. */
	CHECK_RC(dvk_ioctl(k, DVK_IOC_SUBMIT, &s), 0);
	px_batch_reset(&b);
	add_request(&b, dc, 1, 0, 921, 22);
	INJECT_ALL(px, &b);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	INJECT_CANCEL(px, dc, 1, 0, 921, -ESRCH);
	pf.fd = k;
	CHECK(poll(&pf, 1, LONG_MS) == 1);
	CHECK_RC(dvk_ioctl(k, DVK_IOC_REAP, &rp), 0);
	memcpy(&c, buf, sizeof(c));
	CHECK_EQ(c.result, 0);
	CHECK_EQ(c.msg.flags, DVK_MSG_REQUEST);
	CHECK_EQ(c.msg.request_id, 921);
	CHECK_EQ(ep_get(dc, 1, "owed"), 1);
	m = (struct dvk_msg){ .peer = R_EP, .peer_gen = R_GEN, .request_id = 921 };
	CHECK_RC(mreply(k, &m, 23, &v, 8), 0);
	drain_reply(px, dc, 1, gk, 921, 23);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/*
 * A CANCEL names exactly one request or send: its source incarnation, its destination
 * (dst_gen 0 or the current one) and its id. Sends and requests are told apart (a send by the
 * id of its verdict, a request by its request id); a local caller's request cannot be named
 * (the source must be a registered remote endpoint).
 */
static void t_withdraw_inject_match(void)
{
	uint32_t dc = dc_new(8), gl = 0, gk = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), k = ep_open(dc, 1, &gk);
	struct px_batch b = { 0 };
	struct dvk_proxy_msg h;
	uint64_t v = 0;
	struct dvk_submit local = { .op = DVK_OP_SENDREC,
				    .msg = { .peer = 0, .payload = (uintptr_t)&v, .size = 8 } };

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	fill_local(px, dc, 0, gl, 0, queue_length);
	add_vmsg(&b, dc, 0, gl, 931, 7000);
	add_request(&b, dc, 0, gl, 932, 32);
	INJECT_ALL(px, &b);
	/* Another source, destination or incarnation, or another id: nothing. */
	h = cancel_hdr(dc, 0, gl, 932, -ECANCELED);
	h.src = 6;
	h.src_gen = 3;
	CHECK_RC(INJECT_HDR(px, h), 0);
	INJECT_CANCEL(px, dc, 1, gk, 932, -ECANCELED);
	INJECT_CANCEL(px, dc, 0, gl + 1, 932, -ECANCELED);
	INJECT_CANCEL(px, dc, 0, gl, 933, -ECANCELED);
	INJECT_CANCEL(px, dc, 0, gl, 930, -ECANCELED);
	CHECK_EQ(ep_get(dc, 0, "held"), 2);
	EXPECT_NO_DRAIN(px);
	/* The request's id withdraws the request alone (no verdict: it is not a send). */
	INJECT_CANCEL(px, dc, 0, gl, 932, -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	EXPECT_NO_DRAIN(px);
	/* The send's id, the send. */
	INJECT_CANCEL(px, dc, 0, gl, 931, -ETIMEDOUT);
	DRAIN_SENT(px, dc, 0, gl, 931, -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	/* A local caller's request held at l: a CANCEL in its name is refused. */
	CHECK_RC(dvk_ioctl(k, DVK_IOC_SUBMIT, &local), 0);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	h = cancel_hdr(dc, 0, gl, 1, -ECANCELED);
	h.src = 1;
	h.src_gen = gk;
	CHECK_RC(INJECT_HDR(px, h), -EADDRNOTAVAIL);
	CHECK_EQ(ep_get(dc, 0, "held"), 1);
	expect_numbers(l, 0, queue_length);
	CHECK_RC(mrecv(l, DVK_ANY, 0, &v, sizeof(v), DVK_CALL_NONBLOCK, 0, NULL), 0);
	EXPECT_EMPTY(l);
	EXPECT_NO_DRAIN(px);
	px_batch_free(&b);
}

/* ====================================================================================== */
/* Notes: with DVK_PROXY_VERDICTS, a submitted notify to another node waits for a verdict */
/* ====================================================================================== */

/*
 * Drains one record: the note from local (src, src_gen) to remote (dst, dst_gen) carrying
 * exactly `bits`, with a note id (with_id) or none; returns the id.
 */
#define DRAIN_NOTE(px, dc, src, src_gen, bits)                                            \
	drain_note_at(__FILE__, __LINE__, px, dc, R_EP, R_GEN, src, src_gen, bits, true)
#define DRAIN_NOTE_TO(px, dc, dst, dst_gen, src, src_gen, bits, with_id)                  \
	drain_note_at(__FILE__, __LINE__, px, dc, dst, dst_gen, src, src_gen, bits, with_id)
static uint64_t drain_note_at(const char *file, int line, int px, uint32_t dc, uint32_t dst,
			      uint32_t dst_gen, uint32_t src, uint32_t src_gen, uint32_t bits,
			      bool with_id)
{
	struct rec r = { 0 };
	uint64_t id;

	if (!drain_one_at(file, line, px, HDR, &r))
		return 0;
	id = r.h.request_id;
	if (r.h.kind != DVK_PROXY_NOTIFY || r.h.dc != dc || r.h.dst != dst ||
	    r.h.dst_gen != dst_gen || r.h.src != src || r.h.src_gen != src_gen ||
	    r.h.bits != bits || r.h.size || r.h.type || r.h.status || r.h.timeout_ns ||
	    r.h.flags || r.h.reserved || (id != 0) != with_id) {
		tap_failed = 1;
		tap_diag_at(file, line,
			    "drained kind %u dc %u dst %u/%u src %u/%u bits 0x%x id %llu "
			    "flags 0x%x; want a NOTIFY dst %u/%u src %u/%u bits 0x%x %s",
			    r.h.kind, r.h.dc, r.h.dst, r.h.dst_gen, r.h.src, r.h.src_gen, r.h.bits,
			    (unsigned long long)id, r.h.flags, dst, dst_gen, src, src_gen, bits,
			    with_id ? "with a note id" : "without an id");
	}
	recs_free(&r, 1);
	return id;
}

/* Whether got[0..n) holds the tokens want[0..n), each once, in any order. */
static bool same_tokens(const uint64_t *got, const uint64_t *want, int n)
{
	for (int i = 0; i < n; i++) {
		int found = 0;

		for (int j = 0; j < n; j++)
			found += got[j] == want[i];
		if (found != 1)
			return false;
	}
	return true;
}

/*
 * A submitted notify to a verdicts remote endpoint waits for its note's verdict: the note is
 * drained as a NOTIFY with a note id; CANCEL answers EALREADY, before the drain and after,
 * and posts nothing; a SENT for another id, incarnation or remote endpoint does nothing; the
 * SENT for the note completes it, once. Note ids come from the counter of send ids.
 */
static void t_note_verdict(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl);
	struct dvk_proxy_msg h;
	uint64_t t, ts, id, id2;

	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	t = a_notify(l, R_EP, 0, 0x9);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	EXPECT_NO_COMPLETION(l);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	id = DRAIN_NOTE(px, dc, 0, gl, 0x9);
	EXPECT_NO_COMPLETION(l);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	EXPECT_NO_DRAIN(px);
	/* Not its verdict. */
	INJECT_SENT(px, dc, 0, gl, id + 1, 0);
	INJECT_SENT(px, dc, 0, gl + 1, id, 0);
	h = sent_hdr(dc, 0, gl, id, 0);
	h.src = 6;
	h.src_gen = 3;
	CHECK_RC(INJECT_HDR(px, h), 0);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, id, 0);
	CHECK_RC(REAP_NOTIFY(l, t), 0);
	CHECK_RC(cancel_rc(l, t), -ENOENT);
	/* A second verdict finds nothing. */
	INJECT_SENT(px, dc, 0, gl, id, -EIO);
	EXPECT_NO_COMPLETION(l);
	/* A send from the same file gets another id from the same counter; so does a new note. */
	ts = a_send(l, R_EP, 0, 1);
	h = DRAIN_SEND(px, dc, 0, gl, 1);
	CHECK(h.request_id != id);
	INJECT_SENT(px, dc, 0, gl, h.request_id, 0);
	CHECK_RC(REAP_SEND(l, ts), 0);
	t = a_notify(l, R_EP, R_GEN, 0x1);
	id2 = DRAIN_NOTE(px, dc, 0, gl, 0x1);
	CHECK(id2 != id && id2 != h.request_id);
	/* The verdict's status, 0 or an errno, is the notify's result. */
	INJECT_SENT(px, dc, 0, gl, id2, -EHOSTUNREACH);
	CHECK_RC(REAP_NOTIFY(l, t), -EHOSTUNREACH);
	/* Not that incarnation: ENOENT at once, nothing posted. */
	t = a_notify(l, R_EP, R_GEN + 1, 0x1);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_NOTIFY(l, t), -ENOENT);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 0);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/*
 * The bits one source has waiting for the drain form one note: notifies submitted before the
 * drain and DVK_IOC_NOTIFY merge into one NOTIFY record, and its one SENT completes every
 * submitted notify it carried, with its status. A notify after the drain starts a new note
 * with a new id; another source's note is its own.
 */
static void t_note_merge(void)
{
	uint32_t dc = dc_new(8), gl = 0, gk = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), k = ep_open(dc, 1, &gk), n;
	uint64_t t1, t2, t3, t4, tk, id1, id2 = 0, idk = 0, got[2];
	struct rec r[3];

	remote_std(px, dc);
	t1 = a_notify(l, R_EP, 0, 0x1);
	t2 = a_notify(l, R_EP, R_GEN, 0x4);
	CHECK_RC(mnotify(l, R_EP, 0, 0x100), 0);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	id1 = DRAIN_NOTE(px, dc, 0, gl, 0x105);
	EXPECT_NO_DRAIN(px);
	/* After the drain: a new note from l with a new id, and k's own. */
	t3 = a_notify(l, R_EP, 0, 0x2);
	tk = a_notify(k, R_EP, 0, 0x2);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 2);
	n = DRAIN_N(px, r, 2);
	for (int i = 0; i < n; i++) {
		CHECK_EQ(r[i].h.kind, DVK_PROXY_NOTIFY);
		CHECK_EQ(r[i].h.bits, 0x2);
		CHECK(r[i].h.request_id != 0);
		if (r[i].h.src == 0 && r[i].h.src_gen == gl)
			id2 = r[i].h.request_id;
		else if (r[i].h.src == 1 && r[i].h.src_gen == gk)
			idk = r[i].h.request_id;
	}
	recs_free(r, n);
	CHECK(id2 && idk && id2 != id1);
	EXPECT_NO_COMPLETION(l);
	EXPECT_NO_COMPLETION(k);
	/* The first note's verdict completes both notifies it carried, and not the third. */
	INJECT_SENT(px, dc, 0, gl, id1, -ETIMEDOUT);
	for (int i = 0; i < 2; i++)
		CHECK_RC(REAP_ONE_NOTIFY(l, &got[i]), -ETIMEDOUT);
	CHECKF(same_tokens(got, (uint64_t[]){ t1, t2 }, 2),
	       "reaped tokens %llu, %llu; want %llu and %llu", (unsigned long long)got[0],
	       (unsigned long long)got[1], (unsigned long long)t1, (unsigned long long)t2);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, id2, 0);
	CHECK_RC(REAP_NOTIFY(l, t3), 0);
	EXPECT_NO_COMPLETION(k);
	INJECT_SENT(px, dc, 1, gk, idk, -ENOENT);
	CHECK_RC(REAP_NOTIFY(k, tk), -ENOENT);
	/* DVK_IOC_NOTIFY first: a submitted notify joins the note it made. */
	CHECK_RC(mnotify(l, R_EP, 0, 0x10), 0);
	t4 = a_notify(l, R_EP, 0, 0x20);
	id1 = DRAIN_NOTE(px, dc, 0, gl, 0x30);
	CHECK(id1 != id2);
	EXPECT_NO_COMPLETION(l);
	INJECT_SENT(px, dc, 0, gl, id1, 0);
	CHECK_RC(REAP_NOTIFY(l, t4), 0);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
	EXPECT_NO_COMPLETION(k);
}

/*
 * REMOTE_DEL (mode 0: ESRCH; 1: NODE_DOWN, EHOSTUNREACH) or closing the proxy (2:
 * EHOSTUNREACH) completes every submitted notify waiting on the remote endpoint, its note
 * drained or not; those waiting on another remote endpoint wait on (unless the proxy went).
 * A verdict that comes late is refused, and nothing is left.
 */
static void note_teardown(int mode)
{
	int want = mode ? -EHOSTUNREACH : -ESRCH;
	uint32_t dc = dc_new(8), gl = 0;
	struct dvk_stats before;
	uint64_t t1, t2, t3, id, id3, got[3];
	int px, l;

	CHECK_RC(stats_read(&before), 0);
	px = verdicts_px_open();
	remote_std(px, dc);
	CHECK_RC(remote_add(px, dc, 6, 3, R_NODE), 0);
	l = ep_open(dc, 0, &gl);
	t1 = a_notify(l, R_EP, 0, 0x1);
	id = DRAIN_NOTE(px, dc, 0, gl, 0x1);
	t2 = a_notify(l, R_EP, 0, 0x2);		/* its note not drained */
	t3 = a_notify(l, 6, 0, 0x4);		/* another remote endpoint */
	CHECK_EQ(stat_now("calls"), stats_get(&before, "calls") + 3);
	if (mode == 2)
		dev_close(px);
	else
		CHECK_RC(remote_del(px, dc, R_EP, R_GEN, mode ? DVK_REMOTE_NODE_DOWN : 0), 0);
	for (int i = 0; i < (mode == 2 ? 3 : 2); i++)
		CHECK_RC(REAP_ONE_NOTIFY(l, &got[i]), want);
	if (mode == 2) {
		CHECK(same_tokens(got, (uint64_t[]){ t1, t2, t3 }, 3));
	} else {
		CHECK(same_tokens(got, (uint64_t[]){ t1, t2 }, 2));
		EXPECT_NO_COMPLETION(l);
		CHECK_RC(INJECT_HDR(px, sent_hdr(dc, 0, gl, id, 0)), -EADDRNOTAVAIL);
		id3 = DRAIN_NOTE_TO(px, dc, 6, 3, 0, gl, 0x4, true);
		{
			struct dvk_proxy_msg h = sent_hdr(dc, 0, gl, id3, 0);

			h.src = 6;
			h.src_gen = 3;
			CHECK_RC(INJECT_HDR(px, h), 0);
		}
		CHECK_RC(REAP_NOTIFY(l, t3), 0);
		EXPECT_NO_DRAIN(px);
		dev_close(px);
	}
	EXPECT_NO_COMPLETION(l);
	dev_close(l);
	CHECK_COUNTERS_BACK(&before);
}

static void t_note_del(void)
{
	note_teardown(0);
}

static void t_note_node_down(void)
{
	note_teardown(1);
}

static void t_note_close_proxy(void)
{
	note_teardown(2);
}

/*
 * The notifier closes its file while its notifies wait for verdicts: they are dropped with it
 * (no call left, nothing leaks); the verdict that comes later is taken and does nothing. Bits
 * posted are not taken back: accepted notifications stay pending when their sender goes, so
 * the note not drained yet is drained after the close.
 */
static void t_note_notifier_closes(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	struct dvk_stats before;
	struct rec r[2];
	uint64_t id;
	int px, l, n = 0;

	CHECK_RC(stats_read(&before), 0);
	px = verdicts_px_open();
	remote_std(px, dc);
	l = ep_open(dc, 0, &gl);
	a_notify(l, R_EP, 0, 0x1);
	id = DRAIN_NOTE(px, dc, 0, gl, 0x1);
	a_notify(l, R_EP, 0, 0x2);
	a_notify(l, R_EP, 0, 0x4);
	CHECK_EQ(stat_now("calls"), stats_get(&before, "calls") + 3);
	dev_close(l);
	WAIT_UNBOUND(dc, 0);
	CHECK_EQ(stat_now("calls"), stats_get(&before, "calls"));
	INJECT_SENT(px, dc, 0, gl, id, 0);
	CHECK_RC(drain_once(px, dbuf_len, DVK_CALL_NONBLOCK, 0, r, &n, 2, NULL), 0);
	CHECK_EQ(n, 1);
	if (n >= 1) {
		CHECK_REC(&r[0], DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
		CHECK_EQ(r[0].h.bits, 0x6);
		CHECK(r[0].h.request_id != 0 && r[0].h.request_id != id);
		INJECT_SENT(px, dc, 0, gl, r[0].h.request_id, 0);
	}
	recs_free(r, n < 2 ? n : 2);
	EXPECT_NO_DRAIN(px);
	dev_close(px);
	CHECK_COUNTERS_BACK(&before);
}

/*
 * Without DVK_PROXY_VERDICTS a submitted notify to a remote endpoint completes within SUBMIT
 * with 0 (ENOENT for another incarnation), and its bits, merged with others from the source,
 * are drained as a NOTIFY with request_id 0.
 */
static void t_note_flag_off(void)
{
	uint32_t dc = dc_new(8), gl = 0;
	int px = px_open(), l = ep_open(dc, 0, &gl);
	uint64_t t;

	remote_std(px, dc);
	CHECK_RC(mnotify(l, R_EP, 0, 0x10), 0);
	t = a_notify(l, R_EP, 0, 0x1);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_NOTIFY(l, t), 0);
	t = a_notify(l, R_EP, R_GEN, 0x2);
	CHECK_RC(cancel_rc(l, t), -EALREADY);
	CHECK_RC(REAP_NOTIFY(l, t), 0);
	t = a_notify(l, R_EP, R_GEN + 1, 0x4);
	CHECK_RC(REAP_NOTIFY(l, t), -ENOENT);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	DRAIN_NOTE_TO(px, dc, R_EP, R_GEN, 0, gl, 0x13, false);
	/* A SENT is no record for such a proxy. */
	CHECK_RC(INJECT_HDR(px, sent_hdr(dc, 0, gl, 1, 0)), -EINVAL);
	EXPECT_NO_DRAIN(px);
	EXPECT_NO_COMPLETION(l);
}

/*
 * A drain that cannot copy a note out puts it back: its id and its waiters stay, and the next
 * drain takes it. If a newer note formed from the same source meanwhile (a drain held back by
 * userfaultfd while writing the old note's record; it fails once the page goes), the old
 * note's bits join the newer one, and its waiters complete with the newer note's verdict;
 * the old id is not awaited any more. If the drain succeeds, each note keeps its own.
 */
static void t_note_drain_efault(void)
{
	static unsigned char zeros[4096] __attribute__((aligned(4096)));
	uint32_t dc = dc_new(8), gl = 0;
	int px = verdicts_px_open(), l = ep_open(dc, 0, &gl), uffd = uffd_open();
	struct dvk_proxy_batch b;
	uint64_t t1, t2, id1, id2;

	remote_std(px, dc);
	t1 = a_notify(l, R_EP, 0, 0x1);
	CHECK_RC(px_drain(px, bad_page(), dbuf_len, DVK_CALL_NONBLOCK, 0, &b), -EFAULT);
	CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
	EXPECT_NO_COMPLETION(l);
	id1 = DRAIN_NOTE(px, dc, 0, gl, 0x1);
	INJECT_SENT(px, dc, 0, gl, id1, 0);
	CHECK_RC(REAP_NOTIFY(l, t1), 0);
	if (uffd < 0) {
		tap_fail("userfaultfd: %s", errname(-uffd));
		return;
	}
	for (int fail = 0; fail < 2; fail++) {
		/*
		 * Two pages: the record's first 40 bytes (its request_id included) land in the
		 * first, and the drain stops at the second, which userfaultfd holds back.
		 */
		unsigned char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		unsigned char *at = pages + 4096 - 40;
		struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
		struct pollfd pf = { .fd = uffd, .events = POLLIN };
		struct stuck_drain d = { .px = px };
		struct dvk_proxy_msg old = { 0 };
		struct uffd_msg msg;
		struct rec r = { 0 };
		int n = 0;

		REQUIRE(pages != MAP_FAILED);
		memset(pages, 0xa5, 4096);
		reg.range = (struct uffdio_range){ .start = (uintptr_t)pages + 4096, .len = 4096 };
		REQUIRE(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
		t1 = a_notify(l, R_EP, 0, 0x1);
		d.buf = at;
		REQUIRE(pthread_create(&d.th, NULL, stuck_drain, &d) == 0);
		CHECK(poll(&pf, 1, LONG_MS) == 1);
		CHECK(read(uffd, &msg, sizeof(msg)) == sizeof(msg));
		CHECK_EQ(msg.event, UFFD_EVENT_PAGEFAULT);
		CHECK_EQ(msg.arg.pagefault.address & ~4095ull, (uintptr_t)pages + 4096);
		/* The drain took the note: what it wrote so far names it. */
		memcpy(&old, at, 40);
		CHECK_EQ(old.kind, DVK_PROXY_NOTIFY);
		CHECK_EQ(old.bits, 0x1);
		CHECK(old.request_id != 0 && old.request_id != id1);
		CHECK_EQ(ep_get(dc, R_EP, "notes"), 0);
		/* A notify now starts a new note. */
		t2 = a_notify(l, R_EP, 0, 0x2);
		CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
		if (!fail) {
			struct uffdio_copy c = { .dst = (uintptr_t)pages + 4096,
						 .src = (uintptr_t)zeros, .len = 4096 };

			CHECK(ioctl(uffd, UFFDIO_COPY, &c) == 0);
		} else {
			struct uffdio_range w = { .start = (uintptr_t)pages + 4096, .len = 4096 };

			CHECK(munmap(pages + 4096, 4096) == 0);
			CHECK(ioctl(uffd, UFFDIO_WAKE, &w) == 0);
		}
		REQUIRE(pthread_join(d.th, NULL) == 0);
		if (!fail) {
			/* Drained after all: two notes, two verdicts. */
			CHECK_RC(d.rc, 0);
			PARSE(at, &d.res, &r, &n, 1);
			CHECK_EQ(n, 1);
			CHECK_REC(&r, DVK_PROXY_NOTIFY, dc, R_EP, R_GEN, 0, gl, 0);
			CHECK_EQ(r.h.bits, 0x1);
			CHECK_EQ(r.h.request_id, old.request_id);
			recs_free(&r, n > 0 ? 1 : 0);
			id2 = DRAIN_NOTE(px, dc, 0, gl, 0x2);
			CHECK(id2 != old.request_id);
			INJECT_SENT(px, dc, 0, gl, id2, -EIO);
			CHECK_RC(REAP_NOTIFY(l, t2), -EIO);
			EXPECT_NO_COMPLETION(l);
			INJECT_SENT(px, dc, 0, gl, old.request_id, 0);
			CHECK_RC(REAP_NOTIFY(l, t1), 0);
			CHECK(munmap(pages, 8192) == 0);
		} else {
			/* Put back into the newer note: one record, both bits, the newer id. */
			uint64_t got[2];

			CHECK_RC(d.rc, -EFAULT);
			CHECK_EQ(ep_get(dc, R_EP, "notes"), 1);
			id2 = DRAIN_NOTE(px, dc, 0, gl, 0x3);
			CHECK(id2 != old.request_id);
			INJECT_SENT(px, dc, 0, gl, old.request_id, -EIO);
			EXPECT_NO_COMPLETION(l);
			INJECT_SENT(px, dc, 0, gl, id2, 0);
			for (int i = 0; i < 2; i++)
				CHECK_RC(REAP_ONE_NOTIFY(l, &got[i]), 0);
			CHECK(same_tokens(got, (uint64_t[]){ t1, t2 }, 2));
			CHECK(munmap(pages, 4096) == 0);
		}
		EXPECT_NO_DRAIN(px);
		EXPECT_NO_COMPLETION(l);
	}
	close(uffd);
}

/* ====================================================================================== */
/* The runner                                                                              */
/* ====================================================================================== */

static const struct test_case cases[] = {
	T(t_version, "VERSION reports DVK_FEATURE_PROXY"),
	T(t_record_layout, "records: 64 bytes, flags at 56, reserved at 60, written zero by the drain"),
	T(t_attach_eperm, "attach: EPERM without the capability; nothing attached"),
	T(t_attach_ebusy, "attach: a second proxy gets EBUSY; after close another attaches"),
	T(t_attach_eisconn, "attach: EISCONN on a bound file; BIND on the proxy file: EISCONN"),
	T(t_attach_einval, "attach: unknown flags and reserved must be zero"),
	T(t_claim_granted, "claims: a bind waits for the verdict, unreachable meanwhile; unbind reported"),
	T(t_claim_refused, "claims: a refused claim fails the bind with its errno; the number is free"),
	T(t_claim_interrupted, "claims: a signal ends a drained claim with EINTR and an UNBOUND"),
	T(t_claim_interrupted_undrained, "claims: an interrupted claim not drained yet leaves nothing"),
	T(t_claim_proxy_closes, "claims: closing the proxy completes waiting binds"),
	T(t_claim_bound_and_unbound_order, "claims: BOUND at attach; UNBOUND after the endpoint's messages"),
	T(t_claim_einval, "claims: verdicts are checked; without DVK_PROXY_CLAIMS binds do not wait"),
	T(t_claim_flags_einval, "claims: a CLAIMED with flags or reserved is EINVAL; the bind waits on"),
	T(t_verdict_sent, "verdicts: a send waits for SENT; SENT 0 completes it, counted once"),
	T(t_verdict_sent_error, "verdicts: SENT with an errno fails the send with it, not counted"),
	T(t_verdict_deadline_undrained, "verdicts: a deadline before the drain withdraws the send"),
	T(t_verdict_deadline_in_flight, "verdicts: a deadline in flight: one CANCEL; the verdict decides"),
	T(t_verdict_signal, "verdicts: a signal withdraws a queued send, not one in flight"),
	T(t_verdict_killed_in_flight, "verdicts: SIGKILL in flight abandons the send; verdict ignored"),
	T(t_verdict_nonblock, "verdicts: NONBLOCK gets EAGAIN, a past deadline ETIMEDOUT, nothing queued"),
	T(t_verdict_submitted, "verdicts: submitted: CANCEL undoes, or EALREADY and a CANCEL record"),
	T(t_verdict_sender_closes, "verdicts: a sender closing its file abandons its sends"),
	T(t_verdict_timeout_ns, "verdicts: timeout_ns of drained MESSAGE and REQUEST records"),
	T(t_verdict_del, "verdicts: REMOTE_DEL ends sends in flight and queued with ESRCH"),
	T(t_verdict_node_down, "verdicts: REMOTE_DEL with NODE_DOWN: EHOSTUNREACH"),
	T(t_verdict_close_proxy, "verdicts: closing the proxy ends sends in flight with EHOSTUNREACH"),
	T(t_verdict_drain_efault, "verdicts: a failed drain puts the send back, still waiting"),
	T(t_verdict_deliver, "verdicts: an injected send id gets SENT 0 once queued; receivers see none"),
	T(t_verdict_deliver_held, "verdicts: held messages get SENT 0 in order as room comes"),
	T(t_verdict_deliver_unbind, "verdicts: the destination unbinding with messages held: SENT -ESRCH"),
	T(t_verdict_deliver_cancel, "verdicts: CANCEL withdraws a held message; once queued, nothing"),
	T(t_verdict_flag_off, "verdicts: without DVK_PROXY_VERDICTS sends complete when queued"),
	T(t_verdict_einval, "verdicts: SENT, CANCEL and timeout_ns are checked (EINVAL)"),
	T(t_inject_flags_einval, "inject: flags or reserved set in any kind of record is EINVAL"),
	T(t_verdict_nonblock_submitted, "verdicts: a submitted NONBLOCK send: drained NONBLOCK, completes with SENT"),
	T(t_verdict_nonblock_full, "verdicts: a submitted NONBLOCK send to a full remote queue: EAGAIN at once"),
	T(t_nonblock_flag_off, "a submitted NONBLOCK send without verdicts: 0 once queued, EAGAIN when full"),
	T(t_withdraw_deadline, "withdraw: deadline in flight: one CANCEL -ETIMEDOUT; late answers ignored"),
	T(t_withdraw_submitted, "withdraw: DVK_IOC_CANCEL of a sendrec in flight: CANCEL -ECANCELED"),
	T(t_withdraw_caller_gone, "withdraw: a caller killed or closing its file: CANCEL -ESRCH"),
	T(t_withdraw_kept, "withdraw: kept for RESUME: no CANCEL; evicted -ECANCELED, exit -ESRCH"),
	T(t_withdraw_undrained, "withdraw: given up before the drain: withdrawn here, no record"),
	T(t_withdraw_del, "withdraw: REMOTE_DEL ends sendrecs in flight with no CANCEL"),
	T(t_withdraw_node_down, "withdraw: REMOTE_DEL with NODE_DOWN: no CANCEL"),
	T(t_withdraw_close_proxy, "withdraw: closing the proxy: no CANCEL, nothing left"),
	T(t_withdraw_while_drained, "withdraw: a caller dies while the drain copies its request out"),
	T(t_withdraw_inject_queued, "withdraw: an injected CANCEL withdraws a queued request"),
	T(t_withdraw_inject_held, "withdraw: an injected CANCEL withdraws requests held for room"),
	T(t_withdraw_inject_received, "withdraw: a request received stays; its reply is drained"),
	T(t_withdraw_inject_match, "withdraw: a CANCEL names one send or request of one source"),
	T(t_note_verdict, "notes: a submitted notify waits for its note's SENT; CANCEL is EALREADY"),
	T(t_note_merge, "notes: notifies before a drain share one note and one SENT; after it, a new id"),
	T(t_note_del, "notes: REMOTE_DEL completes waiting notifies with ESRCH"),
	T(t_note_node_down, "notes: REMOTE_DEL with NODE_DOWN: EHOSTUNREACH"),
	T(t_note_close_proxy, "notes: closing the proxy completes waiting notifies with EHOSTUNREACH"),
	T(t_note_notifier_closes, "notes: the notifier closing its file drops its notifies; nothing leaks"),
	T(t_note_flag_off, "notes: without DVK_PROXY_VERDICTS a notify completes at once; NOTIFY id 0"),
	T(t_note_drain_efault, "notes: a failed drain puts the note back, into a newer one if it formed"),
	T(t_proxy_calls_eperm, "proxy calls on a file that is not the proxy fail with EPERM"),
	T(t_proxy_efault, "proxy calls with bad argument pointers fail with EFAULT"),
	T(t_proxy_enotty, "near misses of the proxy commands fail with ENOTTY"),
	T(t_attach_close_reattach, "closing the proxy removes its remotes; another attaches"),
	T(t_remote_add, "REMOTE_ADD: a remote endpoint in /proc, addressed like any other"),
	T(t_remote_add_eaddrinuse, "REMOTE_ADD on a bound slot, BIND on a remote slot: EADDRINUSE"),
	T(t_remote_add_einval, "REMOTE_ADD: ENOENT unknown DC; EINVAL generation 0, slot, flags"),
	T(t_remote_del, "REMOTE_DEL: ENOENT unknown, EINVAL flags; removes exactly once"),
	T(t_remote_generation, "a local bind after a remote gets a greater generation"),
	T(t_remote_dc_ebusy, "destroying a DC with a remote endpoint fails with EBUSY"),
	T(t_drain_message, "drain: MESSAGE records byte-exact, every field, zero padding"),
	T(t_drain_max_payload, "drain: max_payload records in a buffer of exactly one"),
	T(t_drain_many, "drain: 1000 sends from 4 processes, many per drain, order kept", .timeout_s = 60),
	T(t_drain_nonblock, "drain: NONBLOCK with nothing is EAGAIN; a past deadline ETIMEDOUT"),
	T(t_drain_deadline, "drain: a deadline 50 ms ahead expires with ETIMEDOUT"),
	T(t_drain_einval, "drain: undefined flags, reserved, out fields, huge deadline: EINVAL"),
	T(t_drain_wakes, "drain: a waiting drain wakes on a send and on a notification"),
	T(t_drain_poll, "poll: the proxy file is readable exactly while something waits"),
	T(t_drain_emsgsize, "drain: a small buffer fails with EMSGSIZE and the size; nothing lost"),
	T(t_drain_emsgsize_next, "drain: after EMSGSIZE, a drain of the size reported takes one"),
	T(t_drain_efault, "drain: a bad buffer fails with EFAULT; nothing lost, order kept"),
	T(t_drain_notify, "drain: notifications coalesce per source into NOTIFY records"),
	T(t_drain_backpressure, "drain: a full remote queue holds senders until a drain"),
	T(t_drain_fair, "drain: with two full remote endpoints, each drain serves the other"),
	T(t_sendrec_reply, "sendrec: REQUEST out, injected REPLY completes it, byte-exact"),
	T(t_sendrec_fail, "sendrec: an injected FAIL ends it with its status"),
	T(t_sendrec_fail_restart_code, "sendrec: a FAIL with a kernel restart code never reaches it"),
	T(t_sendrec_late_reply, "sendrec: a reply after the caller timed out is dropped"),
	T(t_sendrec_duplicate_reply, "sendrec: duplicate and stale replies reach no one"),
	T(t_sendrec_reply_mismatch, "sendrec: replies for another caller, id or source are ignored"),
	T(t_sendrec_timeout_undrained, "sendrec: timed out before the drain: never drained"),
	T(t_sendrec_restart, "sendrec: SA_RESTART after the drain: the reply, sent once"),
	T(t_sendrec_eintr, "sendrec: EINTR before the drain: withdrawn"),
	T(t_sendrec_many, "sendrec: 4 processes x 100 calls served by drain and inject", .timeout_s = 60),
	T(t_sendrec_reply_too_big, "sendrec: an injected reply too big is kept for RESUME"),
	T(t_inject_message, "inject: MESSAGE records reach local receives from the remote"),
	T(t_inject_many, "inject: 1000 records in one call to 10 endpoints, in order", .timeout_s = 60),
	T(t_inject_request, "inject: REQUESTs reach a server; its replies drain as REPLY"),
	T(t_inject_reply_full_remote, "inject: a server's reply to a remote caller never waits"),
	T(t_inject_request_server_dies, "inject: a server killed with requests: FAIL records, -ESRCH"),
	T(t_inject_notify, "inject: NOTIFY records coalesce and come before messages"),
	T(t_inject_errors, "inject: stops at the first bad record with count, size, error"),
	T(t_inject_args, "inject: flags, reserved, deadline, out fields; unreadable records"),
	T(t_inject_request_efault, "inject: a request a receive could not copy out stays queued"),
	T(t_inject_full_queue, "inject: a full queue holds DVK_INJECT_HELD_MIN injected or more, then EAGAIN"),
	T(t_inject_reply_after_del, "inject: replies to a removed remote caller are dropped"),
	T(t_del_esrch, "REMOTE_DEL: every call waiting on the endpoint ends with ESRCH"),
	T(t_del_node_down, "REMOTE_DEL with NODE_DOWN: waiting calls end with EHOSTUNREACH"),
	T(t_del_discards, "REMOTE_DEL: what waited for the drain is freed"),
	T(t_close_proxy, "closing the proxy: EHOSTUNREACH for all, remotes 0, counters back"),
	T(t_kill_proxy, "SIGKILL of the proxy process, also in a drain: the same"),
};
#define N_CASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(int argc, char **argv)
{
	struct dvk_version v;
	char header[200];
	struct dvk_stats s;

	if (!harness_probe(&v, &s))
		return 1;
	if (!(v.features & DVK_FEATURE_PROXY)) {
		/* dvk.ko always has it: a module without it is a failure, not a skip. */
		printf("Bail out! the module does not report DVK_FEATURE_PROXY\n");
		return 1;
	}
	if (stats_get(&s, "remotes") < 0) {
		printf("Bail out! %s has no remotes line\n", DVK_STATS);
		return 1;
	}
	max_payload = param_read("max_payload", v.max_payload);
	queue_length = param_read("queue_length", v.queue_length);
	queue_bytes = param_read("queue_bytes", v.queue_bytes);
	dbuf_len = REC(max_payload) * 2;
	if (dbuf_len < (1u << 20))
		dbuf_len = 1u << 20;
	dbuf = malloc(dbuf_len);
	if (!dbuf) {
		printf("Bail out! no memory for a drain buffer of %u bytes\n", dbuf_len);
		return 1;
	}
	snprintf(header, sizeof(header), "max_payload %u, queue_length %u, queue_bytes %u",
		 max_payload, queue_length, queue_bytes);
	return run_cases(cases, N_CASES, argc, argv, header);
}
