/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the dvk C tests (uapi.c, proxy.c, async.c, stress.c): TAP diagnostics and
 * checks, clocks, readers for the module's introspection files (/proc/dvk/stats,
 * /proc/dvk/endpoints and the module parameters), builders for proxy batches and a checker
 * for reaped completion records. Every program includes this header first.
 *
 * Conventions: helpers that wrap a system call return 0 or -errno, so a check can compare the
 * result with the expected error directly (CHECK_RC(send(...), -EAGAIN)).
 */
#ifndef DVK_TESTS_TAP_H
#define DVK_TESTS_TAP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/dvk.h>

#define DVK_DEV "/dev/dvk"
#define DVK_STATS "/proc/dvk/stats"
#define DVK_ENDPOINTS "/proc/dvk/endpoints"
#define DVK_PARAMS "/sys/module/dvk/parameters/"

/*
 * Set by any failed check in this process; a child exits non-zero when it is set. A program
 * of several files (see harness.h) defines TAP_SHARED_STATE and one definition for them all.
 */
#ifdef TAP_SHARED_STATE
extern volatile int tap_failed;
#else
static volatile int tap_failed;
#endif

/* ---- diagnostics ---- */

/* Writes one "# ..." line with a single write(), so lines of concurrent processes don't mix. */
static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n = snprintf(line, sizeof(line), "# ");

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fflush(stdout);
	if (write(STDOUT_FILENO, line, n) < 0)
		return;
}

#define tap_fail(...)                                                                     \
	do {                                                                              \
		tap_failed = 1;                                                           \
		tap_diag_at(__FILE__, __LINE__, __VA_ARGS__);                             \
	} while (0)

static inline void tap_diag_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline void tap_diag_at(const char *file, int line, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tap_diag("%s:%d: [pid %d] %s", file, line, (int)getpid(), msg);
}

/* The symbolic name of an errno value, for messages. */
static inline const char *errname(int e)
{
	static __thread char other[32];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENOSYS: return "ENOSYS";
	case EMSGSIZE: return "EMSGSIZE";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EADDRINUSE: return "EADDRINUSE";
	case EISCONN: return "EISCONN";
	case ENOTCONN: return "ENOTCONN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ECONNRESET: return "ECONNRESET";
	case ECANCELED: return "ECANCELED";
	case EALREADY: return "EALREADY";
	case EOVERFLOW: return "EOVERFLOW";
	case ERESTART: return "ERESTART";
	case 512: return "ERESTARTSYS(512)";
	}
	snprintf(other, sizeof(other), "errno %d", e);
	return other;
}

/* "0" or the name of -rc, for a helper's 0/-errno result. */
static inline const char *rcname(long rc)
{
	return rc <= 0 ? errname((int)-rc) : "positive";
}

/* ---- checks: a failure prints file:line and the values, and the program goes on ---- */

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond))                                                              \
			tap_fail("check failed: %s", #cond);                              \
	} while (0)

/* Like CHECK, with a printf-style explanation. */
#define CHECKF(cond, ...)                                                                 \
	do {                                                                              \
		if (!(cond)) {                                                            \
			char why_[512];                                                   \
			snprintf(why_, sizeof(why_), __VA_ARGS__);                        \
			tap_fail("check failed: %s (%s)", #cond, why_);                   \
		}                                                                         \
	} while (0)

/* Integer equality; both sides are printed in decimal and hex on failure. */
#define CHECK_EQ(got, want)                                                               \
	do {                                                                              \
		long long got_ = (long long)(got), want_ = (long long)(want);             \
		if (got_ != want_)                                                        \
			tap_fail("%s == %s: got %lld (0x%llx), want %lld (0x%llx)", #got, \
				 #want, got_, (unsigned long long)got_, want_,            \
				 (unsigned long long)want_);                              \
	} while (0)

/* A 0/-errno result against the expected one, printed by name. Evaluates to the result. */
#define CHECK_RC(expr, want)                                                              \
	({                                                                                \
		long rc_ = (long)(expr), want_rc_ = (long)(want);                         \
		if (rc_ != want_rc_)                                                      \
			tap_fail("%s: got %s, want %s", #expr, rcname(rc_),               \
				 rcname(want_rc_));                                       \
		rc_;                                                                      \
	})

/* Ends this process at once (as failed) when continuing makes no sense. */
#define REQUIRE(cond)                                                                     \
	do {                                                                              \
		if (!(cond)) {                                                            \
			tap_fail("required: %s (errno %s)", #cond, errname(errno));       \
			_exit(1);                                                         \
		}                                                                         \
	} while (0)

/* ---- time ---- */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An absolute deadline `ms` milliseconds from now (negative: in the past). */
static inline uint64_t in_ms(long ms)
{
	return now_ns() + (uint64_t)(ms * 1000000ll);
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000l };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the raw ioctl, as 0/-errno ---- */

static inline int dvk_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

/* ---- /proc/dvk/stats ---- */

#define STATS_MAX 24

struct dvk_stats {
	int n;
	char name[STATS_MAX][32];
	long long value[STATS_MAX];
};

/* Reads every "name value" line; 0 or -errno. */
static inline int stats_read(struct dvk_stats *s)
{
	FILE *f = fopen(DVK_STATS, "re");
	char line[256];

	s->n = 0;
	if (!f)
		return -errno;
	while (s->n < STATS_MAX && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%31s %lld", s->name[s->n], &s->value[s->n]) == 2)
			s->n++;
	}
	fclose(f);
	return s->n > 0 ? 0 : -EIO;
}

/* One statistic by name, or -1 when it is missing. */
static inline long long stats_get(const struct dvk_stats *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->name[i], name) == 0)
			return s->value[i];
	return -1;
}

/* True when every statistic has the same value in both; describes differences in `why`. */
static inline bool stats_same(const struct dvk_stats *a, const struct dvk_stats *b, char *why,
			      size_t len)
{
	bool same = a->n == b->n;
	size_t off = 0;

	why[0] = 0;
	for (int i = 0; i < a->n; i++) {
		long long v = stats_get(b, a->name[i]);

		if (v == a->value[i])
			continue;
		same = false;
		if (off < len)
			off += snprintf(why + off, len - off, "%s %lld (was %lld) ", a->name[i], v,
					a->value[i]);
	}
	return same;
}

/* ---- /proc/dvk/endpoints ---- */

#define EP_COLS 24

/*
 * One line of /proc/dvk/endpoints. The columns are found by the names in the header line
 * ("dc endpoint generation pid queued bytes held notes receivers owed calls ... node"), so a
 * column the module adds or moves does not break the tests.
 */
struct ep_row {
	int ncols;
	char col[EP_COLS][24];
	long long v[EP_COLS];
};

static inline int ep_col(const struct ep_row *r, const char *name)
{
	for (int i = 0; i < r->ncols; i++)
		if (strcmp(r->col[i], name) == 0)
			return i;
	return -1;
}

/* The row of (dc, endpoint): 1 if bound, 0 if not, -errno if the file cannot be read. */
static inline int ep_read(uint32_t dc, uint32_t ep, struct ep_row *r)
{
	FILE *f = fopen(DVK_ENDPOINTS, "re");
	char line[512];
	int found = 0, cdc = -1, cep = -1;

	memset(r, 0, sizeof(*r));
	if (!f)
		return -errno;
	if (fgets(line, sizeof(line), f)) {
		char *save = NULL;

		for (char *t = strtok_r(line, " \t\n", &save); t && r->ncols < EP_COLS;
		     t = strtok_r(NULL, " \t\n", &save)) {
			if (strcmp(t, "#") == 0)
				continue;
			snprintf(r->col[r->ncols++], sizeof(r->col[0]), "%s", t[0] == '#' ? t + 1 : t);
		}
	}
	cdc = ep_col(r, "dc");
	cep = ep_col(r, "endpoint");
	while (!found && cdc >= 0 && cep >= 0 && fgets(line, sizeof(line), f)) {
		char *save = NULL;
		int i = 0;

		for (char *t = strtok_r(line, " \t\n", &save); t && i < r->ncols;
		     t = strtok_r(NULL, " \t\n", &save))
			r->v[i++] = strtoll(t, NULL, 0);
		if (i == r->ncols && r->v[cdc] == (long long)dc && r->v[cep] == (long long)ep)
			found = 1;
	}
	fclose(f);
	return found;
}

/* A column of (dc, endpoint)'s row; -1 if it is not bound or has no such column. */
static inline long long ep_get(uint32_t dc, uint32_t ep, const char *col)
{
	struct ep_row r;
	int c;

	if (ep_read(dc, ep, &r) != 1)
		return -1;
	c = ep_col(&r, col);
	return c < 0 ? -1 : r.v[c];
}

/* The row as text, for diagnostics. */
static inline void ep_describe(uint32_t dc, uint32_t ep, char *buf, size_t len)
{
	struct ep_row r;
	size_t off = 0;
	int rc = ep_read(dc, ep, &r);

	buf[0] = 0;
	if (rc < 0) {
		snprintf(buf, len, "%s unreadable: %s", DVK_ENDPOINTS, errname(-rc));
		return;
	}
	if (rc == 0) {
		snprintf(buf, len, "dc %u endpoint %u is not bound", dc, ep);
		return;
	}
	for (int i = 0; i < r.ncols && off < len; i++)
		off += snprintf(buf + off, len - off, "%s=%lld ", r.col[i], r.v[i]);
}

/*
 * Polls until column `col` of (dc, ep) equals `want` (col NULL: until the endpoint is bound if
 * want is 1, unbound if 0), for at most `ms` milliseconds. On timeout it prints the last row.
 */
static inline bool ep_wait_at(const char *file, int line, uint32_t dc, uint32_t ep,
			      const char *col, long long want, int ms)
{
	uint64_t end = in_ms(ms);
	char desc[512];

	for (;;) {
		long long got;

		if (col)
			got = ep_get(dc, ep, col);
		else
			got = ep_get(dc, ep, "endpoint") >= 0;
		if (got == want)
			return true;
		if (now_ns() > end)
			break;
		sleep_ms(1);
	}
	ep_describe(dc, ep, desc, sizeof(desc));
	tap_failed = 1;
	tap_diag_at(file, line, "waited %d ms for dc %u endpoint %u %s == %lld; now: %s", ms, dc,
		    ep, col ? col : "bound", want, desc);
	return false;
}

#define WAIT_EP(dc, ep, col, want) ep_wait_at(__FILE__, __LINE__, dc, ep, col, want, 5000)
#define WAIT_BOUND(dc, ep) ep_wait_at(__FILE__, __LINE__, dc, ep, NULL, 1, 5000)
#define WAIT_UNBOUND(dc, ep) ep_wait_at(__FILE__, __LINE__, dc, ep, NULL, 0, 5000)

/* ---- module parameters ---- */

/* A module parameter as a number, or `fallback` when it cannot be read. */
static inline long long param_read(const char *name, long long fallback)
{
	char path[256], buf[64];
	FILE *f;
	long long v = fallback;

	snprintf(path, sizeof(path), DVK_PARAMS "%s", name);
	f = fopen(path, "re");
	if (!f)
		return fallback;
	if (fgets(buf, sizeof(buf), f))
		v = strtoll(buf, NULL, 0);
	fclose(f);
	return v;
}

/* ---- proxy batches (DVK_IOC_PROXY_DRAIN and DVK_IOC_PROXY_INJECT) ---- */

/* The bytes one record takes in a batch: the header, the payload, zeros up to 8. */
static inline size_t px_record_size(uint32_t payload)
{
	return sizeof(struct dvk_proxy_msg) + (((size_t)payload + 7) & ~(size_t)7);
}

/* A batch being built for an inject: records back to back in buf[0..len). */
struct px_batch {
	unsigned char *buf;
	size_t len, cap;
	uint32_t count;
};

/* Room for `more` bytes at the end of the batch. */
static inline unsigned char *px_batch_room(struct px_batch *b, size_t more)
{
	if (b->len + more > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + more)
			cap *= 2;
		b->buf = realloc(b->buf, cap);
		if (!b->buf) {
			tap_diag("out of memory for a batch of %zu bytes", cap);
			_exit(1);
		}
		b->cap = cap;
	}
	return b->buf + b->len;
}

/*
 * Appends a record: the header as given, then h->size bytes of `payload` (NULL: zeros), then
 * zero padding to a multiple of 8.
 */
static inline void px_batch_add(struct px_batch *b, const struct dvk_proxy_msg *h,
				const void *payload)
{
	size_t n = px_record_size(h->size);
	unsigned char *at = px_batch_room(b, n);

	memset(at, 0, n);
	memcpy(at, h, sizeof(*h));
	if (payload && h->size)
		memcpy(at + sizeof(*h), payload, h->size);
	b->len += n;
	b->count++;
}

/* Appends raw bytes (a truncated or made-up record); not counted as a record. */
static inline void px_batch_raw(struct px_batch *b, const void *bytes, size_t len)
{
	memcpy(px_batch_room(b, len), bytes, len);
	b->len += len;
}

static inline void px_batch_reset(struct px_batch *b)
{
	b->len = 0;
	b->count = 0;
}

static inline void px_batch_free(struct px_batch *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

/* DVK_IOC_PROXY_INJECT of buf[0..len): 0 or -errno; the kernel's answer in *out if given. */
static inline int px_inject(int fd, const void *buf, uint32_t len, struct dvk_proxy_batch *out)
{
	struct dvk_proxy_batch x = { .buffer = (uintptr_t)buf, .size = len };
	int rc = dvk_ioctl(fd, DVK_IOC_PROXY_INJECT, &x);

	if (out)
		*out = x;
	return rc;
}

/* DVK_IOC_PROXY_DRAIN into buf (len bytes): 0 or -errno; the kernel's answer in *out. */
static inline int px_drain(int fd, void *buf, uint32_t len, uint32_t flags, uint64_t deadline,
			   struct dvk_proxy_batch *out)
{
	struct dvk_proxy_batch x = {
		.buffer = (uintptr_t)buf, .size = len, .flags = flags, .deadline_ns = deadline,
	};
	int rc = dvk_ioctl(fd, DVK_IOC_PROXY_DRAIN, &x);

	if (out)
		*out = x;
	return rc;
}

/*
 * Checks one drained record at buf[off..len) the way the header describes records: a kind
 * the header defines, generations never 0, size within max_payload and within the batch,
 * fields that do not belong to the kind zero (timeout_ns only on MESSAGE and REQUEST; a
 * MESSAGE's request_id is a send id and a NOTIFY's a note id, with DVK_PROXY_VERDICTS; flags
 * only DVK_PROXY_NONBLOCK, only on a MESSAGE with a send id; reserved zero), padding zero.
 * Returns the record's length, or 0 with the reason in `why`.
 */
static inline size_t px_record_check(const unsigned char *buf, size_t len, size_t off,
				     uint32_t max_payload, char *why, size_t why_len)
{
	struct dvk_proxy_msg h;
	bool verdict, status_only;
	size_t n;

	if (len - off < sizeof(h)) {
		snprintf(why, why_len, "%zu bytes left at %zu: a truncated header", len - off, off);
		return 0;
	}
	memcpy(&h, buf + off, sizeof(h));
	n = px_record_size(h.size);
	if (h.size > max_payload || n > len - off) {
		snprintf(why, why_len, "record at %zu: size %u in %zu bytes left", off, h.size,
			 len - off);
		return 0;
	}
	for (size_t i = sizeof(h) + h.size; i < n; i++) {
		if (buf[off + i]) {
			snprintf(why, why_len, "record at %zu: padding byte %zu is 0x%02x", off,
				 i - sizeof(h) - h.size, buf[off + i]);
			return 0;
		}
	}
	why[0] = 0;
	verdict = h.kind == DVK_PROXY_SENT || h.kind == DVK_PROXY_CANCEL;
	status_only = h.kind == DVK_PROXY_FAIL || verdict;
	if (h.kind >= DVK_PROXY_CLAIM && h.kind <= DVK_PROXY_UNBOUND) {
		/* News of a local binding: the endpoint twice, nothing else. */
		if (!h.src_gen || h.src >= DVK_SLOTS_MAX || h.dst != h.src || h.dst_gen != h.src_gen ||
		    h.type || h.bits || h.request_id || h.size || h.status || h.timeout_ns ||
		    h.flags || h.reserved)
			snprintf(why, why_len, "kind %u for %u gen %u, dst %u gen %u", h.kind, h.src,
				 h.src_gen, h.dst, h.dst_gen);
	} else if ((h.kind < DVK_PROXY_MESSAGE || h.kind > DVK_PROXY_FAIL) && !verdict)
		snprintf(why, why_len, "kind %u", h.kind);
	else if (!h.dst_gen || !h.src_gen)
		snprintf(why, why_len, "dst_gen %u, src_gen %u", h.dst_gen, h.src_gen);
	else if (h.dst >= DVK_SLOTS_MAX || h.src >= DVK_SLOTS_MAX)
		snprintf(why, why_len, "dst %u, src %u", h.dst, h.src);
	else if ((h.kind == DVK_PROXY_NOTIFY) != (h.bits != 0))
		snprintf(why, why_len, "kind %u with bits 0x%x", h.kind, h.bits);
	else if ((!status_only && h.status) || h.status > 0 || h.status <= -512 ||
		 ((h.kind == DVK_PROXY_FAIL || h.kind == DVK_PROXY_CANCEL) && !h.status))
		snprintf(why, why_len, "kind %u with status %d", h.kind, h.status);
	else if ((h.kind == DVK_PROXY_NOTIFY || status_only) && (h.size || h.type))
		snprintf(why, why_len, "kind %u with %u payload bytes, type %d", h.kind, h.size,
			 h.type);
	else if (h.kind != DVK_PROXY_NOTIFY && h.kind != DVK_PROXY_MESSAGE && !h.request_id)
		snprintf(why, why_len, "kind %u with request_id %llu", h.kind,
			 (unsigned long long)h.request_id);
	else if (h.timeout_ns && h.kind != DVK_PROXY_MESSAGE && h.kind != DVK_PROXY_REQUEST)
		snprintf(why, why_len, "kind %u with timeout_ns %llu", h.kind,
			 (unsigned long long)h.timeout_ns);
	else if (h.reserved || (h.flags & ~DVK_PROXY_NONBLOCK) ||
		 (h.flags && (h.kind != DVK_PROXY_MESSAGE || !h.request_id)))
		/* DVK_PROXY_NONBLOCK only marks a send that waits for a verdict (a send id). */
		snprintf(why, why_len, "kind %u (id %llu) with flags 0x%x, reserved 0x%x", h.kind,
			 (unsigned long long)h.request_id, h.flags, h.reserved);
	if (why[0]) {
		char what[200];

		snprintf(what, sizeof(what), "record at %zu: %s", off, why);
		snprintf(why, why_len, "%s", what);
		return 0;
	}
	return n;
}

/* ---- completion records (DVK_IOC_REAP) ---- */

/* The bytes one completion record takes in a reap buffer: the header, the payload, zeros to 8. */
static inline size_t cq_record_size(uint32_t payload)
{
	return sizeof(struct dvk_completion) + (((size_t)payload + 7) & ~(size_t)7);
}

/*
 * Checks one reaped record at buf[off..len) the way the header describes records: a token
 * (never 0), an op the header defines, a result that is 0 or a negative errno, msg.payload 0,
 * a size within max_payload and within the buffer, padding zero. A call that failed, a SEND
 * and a NOTIFY carry no message (msg all zero); a received message has a source generation
 * and the fields of its kind (plain, request, notification); a sendrec's reply is flagged
 * DVK_MSG_REPLY with the request id it answers. Returns the record's length, or 0 with the
 * reason in `why`.
 */
static inline size_t cq_record_check(const unsigned char *buf, size_t len, size_t off,
				     uint32_t max_payload, char *why, size_t why_len)
{
	static const struct dvk_msg none;
	struct dvk_completion c;
	size_t n;

	if (len - off < sizeof(c)) {
		snprintf(why, why_len, "%zu bytes left at %zu: a truncated record", len - off, off);
		return 0;
	}
	memcpy(&c, buf + off, sizeof(c));
	n = cq_record_size(c.msg.size);
	if (c.msg.size > max_payload || n > len - off) {
		snprintf(why, why_len, "record at %zu: size %u in %zu bytes left", off, c.msg.size,
			 len - off);
		return 0;
	}
	for (size_t i = sizeof(c) + c.msg.size; i < n; i++) {
		if (buf[off + i]) {
			snprintf(why, why_len, "record at %zu: padding byte %zu is 0x%02x", off,
				 i - sizeof(c) - c.msg.size, buf[off + i]);
			return 0;
		}
	}
	why[0] = 0;
	if (!c.token)
		snprintf(why, why_len, "token 0");
	else if (c.op < DVK_OP_SEND || c.op > DVK_OP_NOTIFY)
		snprintf(why, why_len, "op %u", c.op);
	else if (c.result > 0 || c.result <= -4096)
		snprintf(why, why_len, "result %d", c.result);
	else if (c.msg.payload)
		snprintf(why, why_len, "msg.payload 0x%llx", (unsigned long long)c.msg.payload);
	else if ((c.result || c.op == DVK_OP_SEND || c.op == DVK_OP_NOTIFY) &&
		 memcmp(&c.msg, &none, sizeof(none)))
		snprintf(why, why_len, "op %u, result %d with a message (flags 0x%x, size %u)",
			 c.op, c.result, c.msg.flags, c.msg.size);
	else if (c.result || c.op == DVK_OP_SEND || c.op == DVK_OP_NOTIFY)
		;
	else if (!c.msg.peer_gen || c.msg.peer == DVK_ANY)
		snprintf(why, why_len, "op %u from %u generation %u", c.op, c.msg.peer,
			 c.msg.peer_gen);
	else if (c.op == DVK_OP_SENDREC && (c.msg.flags != DVK_MSG_REPLY || !c.msg.request_id ||
					    c.msg.bits))
		snprintf(why, why_len, "a reply with flags 0x%x, request_id %llu, bits 0x%x",
			 c.msg.flags, (unsigned long long)c.msg.request_id, c.msg.bits);
	else if (c.op == DVK_OP_RECEIVE && c.msg.flags == DVK_MSG_NOTIFY) {
		if (!c.msg.bits || c.msg.size || c.msg.request_id || c.msg.type)
			snprintf(why, why_len, "a notification with bits 0x%x, size %u, id %llu",
				 c.msg.bits, c.msg.size, (unsigned long long)c.msg.request_id);
	} else if (c.op == DVK_OP_RECEIVE && c.msg.flags == DVK_MSG_REQUEST) {
		if (!c.msg.request_id || c.msg.bits)
			snprintf(why, why_len, "a request with id %llu, bits 0x%x",
				 (unsigned long long)c.msg.request_id, c.msg.bits);
	} else if (c.op == DVK_OP_RECEIVE && c.msg.flags == 0) {
		if (c.msg.request_id || c.msg.bits)
			snprintf(why, why_len, "a plain message with id %llu, bits 0x%x",
				 (unsigned long long)c.msg.request_id, c.msg.bits);
	} else if (c.op == DVK_OP_RECEIVE) {
		snprintf(why, why_len, "a received message with flags 0x%x", c.msg.flags);
	}
	if (why[0]) {
		char what[200];

		snprintf(what, sizeof(what), "record at %zu (token %llu): %s", off,
			 (unsigned long long)c.token, why);
		snprintf(why, why_len, "%s", what);
		return 0;
	}
	return n;
}

#endif /* DVK_TESTS_TAP_H */
