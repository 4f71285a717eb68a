// SPDX-License-Identifier: GPL-2.0
/*
 * uapi: TAP tests of /dev/dvk against include/uapi/linux/dvk.h and docs/semantics.md.
 *
 *   uapi [SUBSTRING...]     run every case, or those whose name contains one of the arguments
 *
 * Each case runs in a forked process of its own (its own process group, with a watchdog), so a
 * crash or hang fails that case only. Cases fork further processes for servers, clients and
 * callers to kill, and synchronise through pipes and by polling /proc/dvk/endpoints, never by
 * sleeping alone. After every case the runner kills what is left of it, destroys the DCs it
 * used and checks that every counter in /proc/dvk/stats is back to its value before the case.
 */

#include "harness.h"

#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

/* The loaded module's limits, read by the runner before it forks the cases. */
static uint32_t max_payload, queue_length, queue_bytes;

/* The DC ids a case may use: dc_base .. dc_base + DCS_PER_CASE - 1; the runner destroys them. */
#define DCS_PER_CASE 16

const struct harness_config harness_config = {
	.dc_prefix = "uapi",
	.dc_first = 1000,
	.dcs_per_case = DCS_PER_CASE,
	.dc_queue_length = 0,
};

/* ====================================================================================== */
/* DCs                                                                                     */
/* ====================================================================================== */

static int dc_create_named(uint32_t id, uint32_t slots, const char *name, size_t len)
{
	struct dvk_dc_config c = { .id = id, .slots = slots };

	memcpy(c.name, name, len);
	return dc_ioctl(DVK_IOC_DC_CREATE, &c);
}

/* ====================================================================================== */
/* Endpoints and calls; each returns 0 or -errno.                                         */
/* ====================================================================================== */

static int msendrec(int fd, uint32_t dst, uint32_t gen, int32_t type, const void *p, uint32_t len,
		    void *rbuf, uint32_t rcap, uint64_t deadline, struct dvk_msg *reply)
{
	struct dvk_sendrec s;
	int rc;

	sendrec_init(&s, dst, gen, type, p, len, rbuf, rcap, deadline);
	rc = dvk_ioctl(fd, DVK_IOC_SENDREC, &s);
	if (reply)
		*reply = s.reply;
	return rc;
}

static void reply_init(struct dvk_reply *r, const struct dvk_msg *req, int32_t type,
		       const void *p, uint32_t len)
{
	memset(r, 0, sizeof(*r));
	r->msg = (struct dvk_msg){ .peer = req->peer, .peer_gen = req->peer_gen, .type = type,
				   .request_id = req->request_id, .payload = (uintptr_t)p,
				   .size = len };
}

static int mreply(int fd, const struct dvk_msg *req, int32_t type, const void *p, uint32_t len)
{
	struct dvk_reply r;

	reply_init(&r, req, type, p, len);
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

/* Receives a numbered message: its number in *n (or ~0 if it was not one), the message in *m. */
static int recv_num(int fd, uint32_t from, uint32_t from_gen, uint32_t flags, uint64_t deadline,
		    uint64_t *n, struct dvk_msg *m)
{
	uint64_t v = ~0ull;
	struct dvk_msg msg;
	int rc = mrecv(fd, from, from_gen, &v, sizeof(v), flags, deadline, &msg);

	if (rc == 0 && (msg.size != sizeof(v) || msg.type != (int32_t)v))
		v = ~0ull;
	if (n)
		*n = v;
	if (m)
		*m = msg;
	return rc;
}

/* Expects the next message (from `from`) to be number `want`; returns its source. */
#define EXPECT_NUM(fd, from, want)                                                        \
	({                                                                                \
		uint64_t got_n_;                                                          \
		struct dvk_msg got_m_ = { 0 };                                            \
		CHECK_RC(recv_num(fd, from, 0, 0, SOON, &got_n_, &got_m_), 0);            \
		CHECK_EQ(got_n_, want);                                                   \
		got_m_.peer;                                                              \
	})

/* Expects nothing receivable right now. */
#define EXPECT_EMPTY(fd) CHECK_RC(mrecv(fd, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), \
				  -EAGAIN)

/* ====================================================================================== */
/* Helper processes                                                                        */
/* ====================================================================================== */

/* ---- a client helper many cases share ---- */

/* One sendrec of number `num` (type `type`) and what its outcome must be. */
struct call_arg {
	int fd;
	uint32_t dst, dst_gen;
	int32_t type;
	uint64_t num;
	int deadline_ms;	/* 0: LONG_MS */
	int want_rc;
	int32_t want_type;	/* with want_rc 0: the reply's type and number */
	uint64_t want_num;
};

static void client_call(void *p)
{
	struct call_arg *a = p;
	uint64_t n = a->num, r = ~0ull;
	struct dvk_msg rep;
	int rc = msendrec(a->fd, a->dst, a->dst_gen, a->type, &n, sizeof(n), &r, sizeof(r),
			  in_ms(a->deadline_ms ? a->deadline_ms : LONG_MS), &rep);

	CHECK_RC(rc, a->want_rc);
	if (rc == 0 && a->want_rc == 0) {
		CHECK_EQ(rep.type, a->want_type);
		CHECK_EQ(rep.size, sizeof(r));
		CHECK_EQ(r, a->want_num);
		CHECK_EQ(rep.flags, DVK_MSG_REPLY);
		CHECK_EQ(rep.peer, a->dst);
	}
}

/* ====================================================================================== */
/* VERSION and argument checking                                                          */
/* ====================================================================================== */

static void t_version(void)
{
	int fd = dev_open();
	struct dvk_version v;

	/* Garbage in: VERSION only writes, so the kernel must not read (or reject) it. */
	memset(&v, 0xa5, sizeof(v));
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_VERSION, &v), 0);
	CHECK_EQ(v.abi, DVK_ABI_VERSION);
	CHECK(v.features & DVK_FEATURE_IPC);
	CHECK(v.features & DVK_FEATURE_REPLY_RECEIVE);
	CHECK_EQ(v.max_payload, param_read("max_payload", -1));
	CHECK_EQ(v.queue_length, param_read("queue_length", -1));
	CHECK_EQ(v.queue_bytes, param_read("queue_bytes", -1));
	for (int i = 0; i < 4; i++)
		CHECK_EQ(v.reserved[i], 0);
}

/* Command numbers the module must not know: other numbers, sizes, directions and magics. */
static const unsigned long unknown_cmds[] = {
	_IO(DVK_IOC_MAGIC, 0x04),
	_IOWR(DVK_IOC_MAGIC, 0x04, struct dvk_bind),
	_IOW(DVK_IOC_MAGIC, 0x0f, __u32),
	_IOWR(DVK_IOC_MAGIC, 0x16, struct dvk_notify),
	_IOWR(DVK_IOC_MAGIC, 0x20, struct dvk_send),
	_IOWR(DVK_IOC_MAGIC, 0xff, __u64),
	_IO(DVK_IOC_MAGIC, 0x00),			/* VERSION without its struct */
	_IOW(DVK_IOC_MAGIC, 0x00, struct dvk_version),	/* VERSION, wrong direction */
	_IOR(DVK_IOC_MAGIC, 0x00, __u32),		/* VERSION, wrong size */
	_IOWR(DVK_IOC_MAGIC, 0x01, struct dvk_dc_config),	/* DC_CREATE, wrong direction */
	_IOW(DVK_IOC_MAGIC, 0x02, __u64),		/* DC_DESTROY, wrong size */
	_IOW(DVK_IOC_MAGIC, 0x03, struct dvk_bind),	/* BIND, wrong direction */
	_IOW(DVK_IOC_MAGIC, 0x10, __u32),		/* SEND, wrong size */
	_IOR(DVK_IOC_MAGIC, 0x10, struct dvk_send),	/* SEND, wrong direction */
	_IOWR(DVK_IOC_MAGIC, 0x11, struct dvk_send),	/* RECEIVE with SEND's size */
	_IOW(DVK_IOC_MAGIC, 0x12, struct dvk_sendrec),	/* SENDREC, wrong direction */
	_IOWR(DVK_IOC_MAGIC, 0x13, struct dvk_reply),	/* REPLY, wrong direction */
	_IOWR(DVK_IOC_MAGIC, 0x14, struct dvk_reply),	/* REPLY_RECEIVE, wrong size */
	_IOR(DVK_IOC_MAGIC, 0x15, struct dvk_notify),	/* NOTIFY, wrong direction */
	_IOWR(DVK_IOC_MAGIC + 1, 0x11, struct dvk_receive), /* RECEIVE, wrong magic */
	_IOW(DVK_IOC_MAGIC - 1, 0x10, struct dvk_send),	/* SEND, wrong magic */
	0,
	0x00345678,
};

static void t_unknown_ioctl(void)
{
	uint32_t dc = dc_new(4);
	int fds[2] = { ep_open(dc, 0, NULL), dev_open() };
	char *buf = calloc(1, 16384);

	for (int f = 0; f < 2; f++) {
		for (size_t i = 0; i < sizeof(unknown_cmds) / sizeof(unknown_cmds[0]); i++) {
			int rc = dvk_ioctl(fds[f], unknown_cmds[i], buf);

			CHECKF(rc == -ENOTTY, "cmd 0x%lx on the %s file: %s", unknown_cmds[i],
			       f ? "unbound" : "bound", rcname(rc));
		}
	}
	EXPECT_EMPTY(fds[0]);
	free(buf);
}

/* Every ioctl, each on a file where only its argument can be wrong. */
struct cmd_on {
	unsigned long cmd;
	size_t size;
	bool bound;
	const char *name;
};

static const struct cmd_on all_cmds[] = {
	{ DVK_IOC_VERSION, sizeof(struct dvk_version), false, "VERSION" },
	{ DVK_IOC_DC_CREATE, sizeof(struct dvk_dc_config), false, "DC_CREATE" },
	{ DVK_IOC_DC_DESTROY, sizeof(__u32), false, "DC_DESTROY" },
	{ DVK_IOC_BIND, sizeof(struct dvk_bind), false, "BIND" },
	{ DVK_IOC_SEND, sizeof(struct dvk_send), true, "SEND" },
	{ DVK_IOC_RECEIVE, sizeof(struct dvk_receive), true, "RECEIVE" },
	{ DVK_IOC_SENDREC, sizeof(struct dvk_sendrec), true, "SENDREC" },
	{ DVK_IOC_REPLY, sizeof(struct dvk_reply), true, "REPLY" },
	{ DVK_IOC_REPLY_RECEIVE, sizeof(struct dvk_reply_receive), true, "REPLY_RECEIVE" },
	{ DVK_IOC_NOTIFY, sizeof(struct dvk_notify), true, "NOTIFY" },
};
#define N_CMDS (sizeof(all_cmds) / sizeof(all_cmds[0]))

static void t_efault_null(void)
{
	uint32_t dc = dc_new(4);
	int bound = ep_open(dc, 0, NULL), unbound = dev_open();
	struct dvk_stats before, after;

	CHECK_RC(stats_read(&before), 0);
	for (size_t i = 0; i < N_CMDS; i++) {
		int rc = dvk_ioctl(all_cmds[i].bound ? bound : unbound, all_cmds[i].cmd, NULL);

		CHECKF(rc == -EFAULT, "%s(NULL): %s", all_cmds[i].name, rcname(rc));
	}
	CHECK_RC(stats_read(&after), 0);
	CHECK_EQ(stats_get(&after, "dcs"), stats_get(&before, "dcs"));
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(bind_rc(unbound, dc, 1, NULL), 0); /* the failed BIND left it unbound */
}

static void t_efault_bad_pointers(void)
{
	uint32_t dc = dc_new(4);
	int bound = ep_open(dc, 0, NULL), unbound = dev_open();
	void *none = bad_page();

	for (size_t i = 0; i < N_CMDS; i++) {
		const struct cmd_on *c = &all_cmds[i];
		int fd = c->bound ? bound : unbound;
		/* The struct's last 4 bytes fall into an inaccessible page. */
		char *straddle = (char *)before_hole(c->size - 4);
		void *bad[] = { (void *)1, none, KERNEL_ADDR, straddle };

		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			int rc = dvk_ioctl(fd, c->cmd, bad[b]);

			CHECKF(rc == -EFAULT, "%s(%p): %s", c->name, bad[b], rcname(rc));
		}
	}
	/* VERSION writes only: a read-only struct cannot take the answer. */
	{
		void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		REQUIRE(ro != MAP_FAILED);
		CHECK_RC(dvk_ioctl(unbound, DVK_IOC_VERSION, ro), -EFAULT);
	}
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(bind_rc(unbound, dc, 1, NULL), 0);
}

/* Bad payload pointers: nothing is sent, and the message or request stays where it was. */
static void t_efault_payloads(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	void *none = bad_page();
	struct call_arg ca = { .fd = client, .dst = 0, .type = 1, .num = 5, .want_type = 2,
			       .want_num = 42 };
	struct dvk_msg req;
	uint64_t answer = 42;
	char buf[64];
	pid_t pid;

	CHECK_RC(msend(client, 0, 0, 1, none, 16, 0, SOON), -EFAULT);
	CHECK_RC(msend(client, 0, 0, 1, NULL, 16, 0, SOON), -EFAULT);
	CHECK_RC(msend(client, 0, 0, 1, KERNEL_ADDR, 16, 0, SOON), -EFAULT);
	CHECK_RC(msend(client, 0, 0, 1, before_hole(8), 16, 0, SOON), -EFAULT);
	CHECK_RC(msendrec(client, 0, 0, 1, none, 16, buf, sizeof(buf), in_ms(200), NULL), -EFAULT);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	EXPECT_EMPTY(server);

	/* A reply with a bad payload fails and leaves the request owed: a good one still goes. */
	pid = SPAWN(client_call, &ca, client);
	CHECK_RC(mrecv(server, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &req), 0);
	CHECK(req.flags & DVK_MSG_REQUEST);
	CHECK_RC(mreply(server, &req, 2, none, 8), -EFAULT);
	CHECK_RC(mreply(server, &req, 2, NULL, 8), -EFAULT);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_RC(mreply(server, &req, 2, &answer, sizeof(answer)), 0);
	CHECK_CHILD(pid);
}

/* Non-zero reserved fields of DC_CREATE and BIND fail, and change nothing. */
static void t_reserved_dc_bind(void)
{
	uint32_t id = dc_id(), gen = 0;
	struct dvk_dc_config c = { .id = id, .slots = 4, .reserved = 1 };
	struct dvk_bind b = { .dc = id, .endpoint = 0 };
	int fd;

	dc_name_of(id, c.name);
	CHECK_RC(dc_ioctl(DVK_IOC_DC_CREATE, &c), -EINVAL);
	c.reserved = 0;
	CHECK_RC(dc_ioctl(DVK_IOC_DC_CREATE, &c), 0);

	fd = dev_open();
	b.reserved[0] = 1;
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), -EINVAL);
	b.reserved[0] = 0;
	b.reserved[1] = 1ull << 63;
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), -EINVAL);
	b.reserved[1] = 0;
	/* dc_name is input only with DVK_BIND_BY_NAME, "otherwise zero". */
	b.dc_name[5] = 'x';
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), -EINVAL);
	CHECK_EQ(ep_get(id, 0, "endpoint"), -1);
	/* None of the failed binds used up a generation. */
	CHECK_RC(bind_rc(fd, id, 0, &gen), 0);
	CHECK_EQ(gen, 1);
}

/* Non-zero reserved fields of SEND, RECEIVE, SENDREC and NOTIFY fail, and change nothing. */
static void t_reserved_calls(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	uint64_t n = 7, back;
	struct dvk_send snd = {
		.msg = { .peer = 0, .type = 7, .payload = (uintptr_t)&n, .size = sizeof(n) },
		.deadline_ns = in_ms(200), .flags = DVK_CALL_NONBLOCK, .reserved = 1,
	};
	struct dvk_notify nt = { .peer = 0, .bits = 1, .reserved = 0x80000000u };
	struct dvk_sendrec sr;
	struct dvk_receive rcv = {
		.from = DVK_ANY, .deadline_ns = in_ms(200), .flags = DVK_CALL_NONBLOCK,
		.reserved = 1, .msg = { .payload = (uintptr_t)&back, .size = sizeof(back) },
	};

	CHECK_RC(dvk_ioctl(s, DVK_IOC_SEND, &snd), -EINVAL);
	CHECK_RC(dvk_ioctl(s, DVK_IOC_NOTIFY, &nt), -EINVAL);
	sendrec_init(&sr, 0, 0, 7, &n, sizeof(n), &back, sizeof(back), in_ms(200));
	sr.reserved = 1;
	CHECK_RC(dvk_ioctl(s, DVK_IOC_SENDREC, &sr), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(ep_get(dc, 0, "notes"), 0);
	CHECK_EQ(ep_get(dc, 1, "calls"), 0);

	/* A message waits; a receive with a reserved field set must not take it. */
	CHECK_RC(send_num(s, 0, 8, 0, SOON), 0);
	CHECK_RC(dvk_ioctl(r, DVK_IOC_RECEIVE, &rcv), -EINVAL);
	EXPECT_NUM(r, DVK_ANY, 8);
	EXPECT_EMPTY(r);
}

/* A client whose request the server answers only after the bad replies below. */
static void t_reserved_reply(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	struct call_arg ca = { .fd = client, .dst = 0, .type = 1, .num = 5, .want_type = 3,
			       .want_num = 9 };
	pid_t pid = SPAWN(client_call, &ca, client);
	uint64_t in, answer = 9;
	struct dvk_msg req;
	struct dvk_reply rep;
	struct dvk_reply_receive rr;

	dev_close(client);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, sizeof(in), 0, SOON, &req), 0);

	reply_init(&rep, &req, 3, &answer, sizeof(answer));
	rep.reserved = 1;
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY, &rep), -EINVAL);
	reply_init(&rep, &req, 3, &answer, sizeof(answer));
	rep.msg.flags = DVK_MSG_REPLY; /* out-going message flags must be zero */
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY, &rep), -EINVAL);
	reply_init(&rep, &req, 3, &answer, sizeof(answer));
	rep.msg.bits = 1; /* and so must its bits */
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY, &rep), -EINVAL);

	/* REPLY_RECEIVE checks both halves before it replies. */
	memset(&rr, 0, sizeof(rr));
	reply_init(&rr.reply, &req, 3, &answer, sizeof(answer));
	rr.reply.reserved = 1;
	rr.receive = (struct dvk_receive){ .from = DVK_ANY, .flags = DVK_CALL_NONBLOCK };
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY_RECEIVE, &rr), -EINVAL);
	rr.reply.reserved = 0;
	rr.receive.reserved = 1;
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY_RECEIVE, &rr), -EINVAL);
	rr.receive.reserved = 0;
	rr.receive.flags = 1u << 7;
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY_RECEIVE, &rr), -EINVAL);

	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_RC(mreply(server, &req, 3, &answer, sizeof(answer)), 0);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
}

/* Flags this header does not define fail with EINVAL, and change nothing. */
static void t_unknown_flags(void)
{
	uint32_t id = dc_id(), dc = dc_new(4);
	struct dvk_dc_config c = { .id = id, .slots = 4 };
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL), u = dev_open();
	uint64_t n = 3, back;
	static const uint32_t bad_call_flags[] = { 1u << 2, 1u << 15, 1u << 31 };
	static const uint32_t bad_bind_flags[] = { 1u << 1, 1u << 31 };

	dc_name_of(id, c.name);
	c.flags = 1;
	CHECK_RC(dc_ioctl(DVK_IOC_DC_CREATE, &c), -EINVAL);
	c.flags = 0x80000000u;
	CHECK_RC(dc_ioctl(DVK_IOC_DC_CREATE, &c), -EINVAL);
	CHECK_RC(dc_destroy(id), -ENOENT);

	for (size_t i = 0; i < 2; i++) {
		struct dvk_bind b = { .dc = dc, .endpoint = 2, .flags = bad_bind_flags[i] };

		CHECKF(dvk_ioctl(u, DVK_IOC_BIND, &b) == -EINVAL, "bind flags 0x%x",
		       bad_bind_flags[i]);
	}
	CHECK_EQ(ep_get(dc, 2, "endpoint"), -1);

	CHECK_RC(send_num(s, 0, 1, 0, SOON), 0); /* a message that must stay queued */
	for (size_t i = 0; i < 3; i++) {
		uint32_t f = bad_call_flags[i];
		struct dvk_send snd = {
			.msg = { .peer = 0, .type = 3, .payload = (uintptr_t)&n, .size = 8 },
			.deadline_ns = in_ms(200), .flags = f,
		};
		struct dvk_receive rcv = {
			.from = DVK_ANY, .deadline_ns = in_ms(200), .flags = f,
			.msg = { .payload = (uintptr_t)&back, .size = sizeof(back) },
		};
		struct dvk_sendrec sr;

		sendrec_init(&sr, 0, 0, 3, &n, sizeof(n), &back, sizeof(back), in_ms(200));
		sr.flags = f;
		CHECKF(dvk_ioctl(s, DVK_IOC_SEND, &snd) == -EINVAL, "send flags 0x%x", f);
		CHECKF(dvk_ioctl(r, DVK_IOC_RECEIVE, &rcv) == -EINVAL, "receive flags 0x%x", f);
		CHECKF(dvk_ioctl(s, DVK_IOC_SENDREC, &sr) == -EINVAL, "sendrec flags 0x%x", f);
	}
	/* Message flags are the kernel's to set: out-going ones must be zero. */
	for (uint32_t f = DVK_MSG_REQUEST; f <= DVK_MSG_REPLY; f <<= 1) {
		struct dvk_send snd = {
			.msg = { .peer = 0, .type = 3, .flags = f, .payload = (uintptr_t)&n,
				 .size = 8 },
			.deadline_ns = in_ms(200),
		};
		struct dvk_sendrec sr;

		sendrec_init(&sr, 0, 0, 3, &n, sizeof(n), &back, sizeof(back), in_ms(200));
		sr.request.flags = f;
		CHECKF(dvk_ioctl(s, DVK_IOC_SEND, &snd) == -EINVAL, "send msg.flags 0x%x", f);
		CHECKF(dvk_ioctl(s, DVK_IOC_SENDREC, &sr) == -EINVAL, "sendrec request.flags 0x%x",
		       f);
	}
	/* So must the other fields the kernel sets: request_id and bits. */
	for (int field = 0; field < 2; field++) {
		struct dvk_send snd = {
			.msg = { .peer = 0, .type = 3, .payload = (uintptr_t)&n, .size = 8 },
			.deadline_ns = in_ms(200),
		};
		struct dvk_sendrec sr;

		sendrec_init(&sr, 0, 0, 3, &n, sizeof(n), &back, sizeof(back), in_ms(200));
		if (field == 0) {
			snd.msg.request_id = 1;
			sr.request.request_id = 1;
		} else {
			snd.msg.bits = 1;
			sr.request.bits = 1;
		}
		CHECKF(dvk_ioctl(s, DVK_IOC_SEND, &snd) == -EINVAL, "send with %s set",
		       field ? "bits" : "request_id");
		CHECKF(dvk_ioctl(s, DVK_IOC_SENDREC, &sr) == -EINVAL, "sendrec with %s set",
		       field ? "bits" : "request_id");
	}
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	EXPECT_NUM(r, DVK_ANY, 1);
	EXPECT_EMPTY(r);
}

/* ====================================================================================== */
/* DC management                                                                           */
/* ====================================================================================== */

static void t_dc_create_destroy(void)
{
	struct dvk_stats before, during, after;
	uint32_t id = dc_id();

	CHECK_RC(stats_read(&before), 0);
	CHECK_RC(dc_create(id, 8), 0);
	CHECK_RC(stats_read(&during), 0);
	CHECK_EQ(stats_get(&during, "dcs"), stats_get(&before, "dcs") + 1);
	CHECK_RC(dc_destroy(id), 0);
	CHECK_RC(stats_read(&after), 0);
	CHECK_EQ(stats_get(&after, "dcs"), stats_get(&before, "dcs"));
	CHECK_RC(dc_destroy(id), -ENOENT);
	/* The id and the name are free again. */
	CHECK_RC(dc_create(id, 8), 0);
	CHECK_RC(dc_destroy(id), 0);
}

struct unpriv_arg {
	int fd;
	uint32_t dc, spare; /* an existing DC, and an id that is free */
};

/* Without the capability: DC management fails, everything else works. */
static void unprivileged(void *p)
{
	struct unpriv_arg *a = p;
	struct dvk_dc_config c = { .id = a->spare, .slots = 4 };
	struct dvk_version v;
	uint32_t id = a->dc, gen = 0;

	drop_privileges();
	dc_name_of(c.id, c.name);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_DC_CREATE, &c), -EPERM);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_DC_DESTROY, &id), -EPERM);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_VERSION, &v), 0);
	CHECK_RC(bind_rc(a->fd, a->dc, 1, &gen), 0);
	CHECK_EQ(gen, 1);
	CHECK_RC(send_num(a->fd, 1, 5, 0, SOON), 0);
	EXPECT_NUM(a->fd, DVK_ANY, 5);
}

static void t_dc_eperm(void)
{
	uint32_t dc = dc_new(4), spare = dc_id();
	struct unpriv_arg a = { .fd = dev_open(), .dc = dc, .spare = spare };
	pid_t pid = SPAWN(unprivileged, &a, a.fd);

	CHECK_CHILD(pid);
	CHECK_RC(dc_create(a.spare, 4), 0); /* the unprivileged create made nothing */
	CHECK_RC(dc_create(a.dc, 4), -EEXIST); /* nor destroyed anything */
}

static void t_dc_eexist(void)
{
	uint32_t a = dc_id(), b = dc_id();
	char name[DVK_NAME_MAX];

	CHECK_RC(dc_create(a, 4), 0);
	dc_name_of(b, name);
	CHECK_RC(dc_create_named(a, 4, name, sizeof(name)), -EEXIST); /* same id */
	dc_name_of(a, name);
	CHECK_RC(dc_create_named(b, 4, name, sizeof(name)), -EEXIST); /* same name */
	CHECK_RC(dc_destroy(b), -ENOENT);
	CHECK_RC(dc_create(b, 4), 0);
}

static void t_dc_names(void)
{
	static const struct {
		const char *name;
		size_t len; /* bytes copied into the zero-filled field */
		int rc;
	} names[] = {
		{ "", 1, -EINVAL },
		{ "a b", 4, -EINVAL },
		{ "a/b", 4, -EINVAL },
		{ "tab\t", 5, -EINVAL },
		{ "caf\xc3\xa9", 6, -EINVAL },
		{ "x:y", 4, -EINVAL },
		{ "ab\0x", 4, -EINVAL }, /* garbage after the NUL */
		{ "ab\0\0\0\0\0\0\0z", 10, -EINVAL },
		{ "Az09_.-", 8, 0 },
		{ "-", 2, 0 },
	};
	char full[DVK_NAME_MAX];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint32_t id = dc_id();
		int rc = dc_create_named(id, 4, names[i].name, names[i].len);

		CHECKF(rc == names[i].rc, "name #%zu \"%s\": %s", i, names[i].name, rcname(rc));
		if (rc == 0)
			CHECK_RC(dc_destroy(id), 0);
	}
	/* 64 characters leave no room for the NUL; 63 are the most. */
	memset(full, 'n', sizeof(full));
	CHECK_RC(dc_create_named(dc_id(), 4, full, sizeof(full)), -EINVAL);
	full[63] = 0;
	CHECK_RC(dc_create_named(dc_id(), 4, full, sizeof(full)), 0);
}

static void t_dc_slots(void)
{
	uint32_t big = dc_id();
	int fd;

	CHECK_RC(dc_create(dc_id(), 0), -EINVAL);
	CHECK_RC(dc_create(dc_id(), DVK_SLOTS_MAX + 1), -EINVAL);
	CHECK_RC(dc_create(dc_id(), 0xffffffffu), -EINVAL);
	CHECK_RC(dc_create(dc_id(), 1), 0);
	CHECK_RC(dc_create(big, DVK_SLOTS_MAX), 0);
	fd = dev_open();
	CHECK_RC(bind_rc(fd, big, DVK_SLOTS_MAX, NULL), -EINVAL);
	CHECK_RC(bind_rc(fd, big, DVK_SLOTS_MAX - 1, NULL), 0);
	CHECK_RC(send_num(fd, DVK_SLOTS_MAX - 1, 1, 0, SOON), 0);
	EXPECT_NUM(fd, DVK_ANY, 1);
}

static void t_dc_ebusy(void)
{
	uint32_t dc = dc_new(4);
	int fd = ep_open(dc, 2, NULL);
	struct dvk_stats before, after;

	CHECK_RC(dc_destroy(dc), -EBUSY);
	/* The DC and its endpoint go on working. */
	CHECK_RC(send_num(fd, 2, 1, 0, SOON), 0);
	EXPECT_NUM(fd, DVK_ANY, 1);
	CHECK_RC(stats_read(&before), 0);
	dev_close(fd);
	CHECK_RC(dc_destroy(dc), 0);
	CHECK_RC(stats_read(&after), 0);
	CHECK_EQ(stats_get(&after, "dcs"), stats_get(&before, "dcs") - 1);
	CHECK_EQ(stats_get(&after, "endpoints"), stats_get(&before, "endpoints") - 1);
}

static void t_dc_enoent(void)
{
	uint32_t dc = dc_new(4);
	int fd = dev_open();

	CHECK_RC(dc_destroy(dc + 1), -ENOENT);
	CHECK_RC(dc_destroy(0xfffffff0u), -ENOENT);
	CHECK_RC(dc_destroy(dc), 0);
	CHECK_RC(bind_rc(fd, dc, 0, NULL), -ENOENT);
	CHECK_RC(dc_destroy(dc), -ENOENT);
}

/* ====================================================================================== */
/* BIND                                                                                    */
/* ====================================================================================== */

static void t_bind_generations(void)
{
	uint32_t dc = dc_new(4);

	for (uint32_t want = 1; want <= 3; want++) {
		int fd = dev_open();
		struct dvk_bind b = { .dc = dc, .endpoint = 2 };

		CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), 0);
		CHECK_EQ(b.generation, want);
		CHECK_EQ(b.dc, dc);
		CHECK_EQ(ep_get(dc, 2, "generation"), want);
		CHECK_EQ(ep_get(dc, 2, "pid"), getpid());
		dev_close(fd);
		CHECK_EQ(ep_get(dc, 2, "endpoint"), -1);
	}
	/* Generations are per endpoint number. */
	{
		uint32_t gen = 0;
		int fd = ep_open(dc, 3, &gen);

		CHECK_EQ(gen, 1);
		dev_close(fd);
	}
}

static void t_bind_by_name(void)
{
	uint32_t dc = dc_new(4);
	struct dvk_bind b = { .endpoint = 1, .flags = DVK_BIND_BY_NAME };
	int fd = dev_open();

	dc_name_of(dc, b.dc_name);
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), 0);
	CHECK_EQ(b.dc, dc);
	CHECK_EQ(b.generation, 1);
	CHECK_EQ(ep_get(dc, 1, "generation"), 1);

	fd = dev_open();
	memset(&b, 0, sizeof(b));
	b.endpoint = 1;
	b.flags = DVK_BIND_BY_NAME;
	snprintf(b.dc_name, sizeof(b.dc_name), "uapi-no-such-dc");
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_BIND, &b), -ENOENT);
}

static void t_bind_eaddrinuse(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int a = ep_open(dc, 0, NULL), b = dev_open();

	CHECK_RC(bind_rc(b, dc, 0, NULL), -EADDRINUSE);
	CHECK_EQ(ep_get(dc, 0, "generation"), 1);
	/* The failed bind left b unbound and free to bind elsewhere. */
	CHECK_RC(bind_rc(b, dc, 1, &gen), 0);
	CHECK_EQ(gen, 1);
	dev_close(a);
}

static void t_bind_eisconn(void)
{
	uint32_t dc = dc_new(4);
	int fd = ep_open(dc, 0, NULL);

	CHECK_RC(bind_rc(fd, dc, 1, NULL), -EISCONN);
	CHECK_RC(bind_rc(fd, dc, 0, NULL), -EISCONN);
	CHECK_EQ(ep_get(dc, 1, "endpoint"), -1);
	CHECK_EQ(ep_get(dc, 0, "generation"), 1);
}

static void t_bind_einval(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int fd = dev_open();

	CHECK_RC(bind_rc(fd, dc, 4, NULL), -EINVAL);
	CHECK_RC(bind_rc(fd, dc, DVK_ANY, NULL), -EINVAL);
	CHECK_RC(bind_rc(fd, dc, 0x7fffffff, NULL), -EINVAL);
	CHECK_RC(bind_rc(fd, dc, 3, &gen), 0);
	CHECK_EQ(gen, 1);
}

static void t_bind_enoent(void)
{
	uint32_t dc = dc_new(4);
	int fd = dev_open();

	CHECK_RC(bind_rc(fd, dc + 1, 0, NULL), -ENOENT);
	CHECK_RC(bind_rc(fd, 0xfffffff1u, 0, NULL), -ENOENT);
	CHECK_RC(bind_rc(fd, dc, 0, NULL), 0);
}

/* Every call but VERSION needs a bound file. */
static void t_enotconn(void)
{
	uint32_t dc = dc_new(4);
	int bound = ep_open(dc, 0, NULL), fd = dev_open();
	uint64_t n = 1, back;
	struct dvk_msg fake = { .peer = 0, .peer_gen = 1, .request_id = 1 };
	struct dvk_reply_receive rr;
	struct dvk_version v;

	CHECK_RC(send_num(fd, 0, 1, DVK_CALL_NONBLOCK, in_ms(200)), -ENOTCONN);
	CHECK_RC(mrecv(fd, DVK_ANY, 0, &back, 8, DVK_CALL_NONBLOCK, in_ms(200), NULL), -ENOTCONN);
	CHECK_RC(msendrec(fd, 0, 0, 1, &n, 8, &back, 8, in_ms(200), NULL), -ENOTCONN);
	CHECK_RC(mreply(fd, &fake, 1, &n, 8), -ENOTCONN);
	memset(&rr, 0, sizeof(rr));
	reply_init(&rr.reply, &fake, 1, &n, 8);
	rr.receive = (struct dvk_receive){ .from = DVK_ANY, .flags = DVK_CALL_NONBLOCK };
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_REPLY_RECEIVE, &rr), -ENOTCONN);
	CHECK_RC(mnotify(fd, 0, 0, 1), -ENOTCONN);
	CHECK_RC(dvk_ioctl(fd, DVK_IOC_VERSION, &v), 0);
	EXPECT_EMPTY(bound);
}

/* ====================================================================================== */
/* SEND and RECEIVE                                                                        */
/* ====================================================================================== */

static void t_payload_empty(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	char buf[16];
	struct dvk_msg m;

	CHECK_RC(msend(s, 0, 0, 11, NULL, 0, 0, SOON), 0);
	CHECK_RC(msend(s, 0, 0, 12, buf, 0, 0, SOON), 0);
	CHECK_RC(mrecv(r, DVK_ANY, 0, buf, sizeof(buf), 0, SOON, &m), 0);
	CHECK_EQ(m.type, 11);
	CHECK_EQ(m.size, 0);
	/* An empty message fits a receive without a buffer. */
	CHECK_RC(mrecv(r, DVK_ANY, 0, NULL, 0, 0, SOON, &m), 0);
	CHECK_EQ(m.type, 12);
	CHECK_EQ(m.size, 0);
	EXPECT_EMPTY(r);
}

static void t_payload_max(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	char *out = malloc(max_payload), *in = malloc(max_payload + 64);
	struct dvk_msg m;

	REQUIRE(out && in);
	pattern(out, max_payload, 3);
	memset(in, 0, max_payload + 64);
	CHECK_RC(msend(s, 0, 0, 1, out, max_payload, 0, SOON), 0);
	CHECK_EQ(ep_get(dc, 0, "bytes"), max_payload);
	CHECK_RC(mrecv(r, DVK_ANY, 0, in, max_payload + 64, 0, SOON, &m), 0);
	CHECK_EQ(m.size, max_payload);
	CHECK(is_pattern(in, max_payload, 3));
	CHECK_EQ(in[max_payload], 0); /* nothing written past the payload */
	free(out);
	free(in);
}

static void t_payload_too_big(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	char *big = calloc(1, max_payload + 1), back[8];

	REQUIRE(big);
	CHECK_RC(msend(s, 0, 0, 1, big, max_payload + 1, 0, SOON), -EMSGSIZE);
	CHECK_RC(msend(s, 0, 0, 1, big, 0xffffffffu, 0, SOON), -EMSGSIZE);
	CHECK_RC(msendrec(s, 0, 0, 1, big, max_payload + 1, back, 8, in_ms(300), NULL), -EMSGSIZE);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(ep_get(dc, 1, "calls"), 0);
	EXPECT_EMPTY(r);
	free(big);
}

static void t_types(void)
{
	static const int32_t types[] = { INT32_MIN, INT32_MAX, -1, 0, 1 };
	uint32_t dc = dc_new(4), sgen = 0;
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 3, &sgen);

	for (size_t i = 0; i < 5; i++)
		CHECK_RC(msend(s, 0, 0, types[i], NULL, 0, 0, SOON), 0);
	for (size_t i = 0; i < 5; i++) {
		struct dvk_msg m;

		memset(&m, 0xee, sizeof(m));
		CHECK_RC(mrecv(r, DVK_ANY, 0, NULL, 0, 0, SOON, &m), 0);
		CHECK_EQ(m.type, types[i]);
		CHECK_EQ(m.peer, 3);
		CHECK_EQ(m.peer_gen, sgen);
		CHECK_EQ(m.flags, 0);
		CHECK_EQ(m.request_id, 0);
		CHECK_EQ(m.bits, 0);
		CHECK_EQ(m.size, 0);
	}
}

static void t_source_generation(void)
{
	uint32_t dc = dc_new(4), rgen = 0, sgen = 0;
	int r = ep_open(dc, 0, &rgen), s = ep_open(dc, 2, &sgen);
	struct dvk_msg m;

	CHECK_EQ(sgen, 1);
	dev_close(s);
	s = ep_open(dc, 2, &sgen);
	CHECK_EQ(sgen, 2);
	/* A destination with its exact generation, and with 0 meaning the current one. */
	CHECK_RC(msend(s, 0, rgen, 5, NULL, 0, 0, SOON), 0);
	CHECK_RC(msend(s, 0, 0, 6, NULL, 0, 0, SOON), 0);
	CHECK_RC(mrecv(r, DVK_ANY, 0, NULL, 0, 0, SOON, &m), 0);
	CHECK_EQ(m.peer, 2);
	CHECK_EQ(m.peer_gen, 2);
	CHECK_EQ(m.type, 5);
	CHECK_RC(mrecv(r, 2, 2, NULL, 0, 0, SOON, &m), 0);
	CHECK_EQ(m.type, 6);
}

static void t_send_self(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int fd = ep_open(dc, 1, &gen);
	struct dvk_msg m;

	CHECK_RC(send_num(fd, 1, 77, 0, SOON), 0);
	EXPECT_NUM(fd, 1, 77);
	CHECK_RC(send_num(fd, 1, 78, 0, SOON), 0);
	CHECK_RC(recv_num(fd, 1, gen, 0, SOON, NULL, &m), 0);
	CHECK_EQ(m.peer, 1);
	CHECK_EQ(m.peer_gen, gen);
}

struct sender_arg {
	int fd;
	uint32_t dst;
	uint64_t first, count; /* sends numbers first .. first + count - 1 */
};

static void sender(void *p)
{
	struct sender_arg *a = p;

	for (uint64_t i = 0; i < a->count; i++) {
		int rc = send_num(a->fd, a->dst, a->first + i, 0, SOON);

		if (rc) {
			tap_fail("send #%" PRIu64 ": %s", i, errname(-rc));
			return;
		}
	}
}

/* Receives `count` messages and checks that each source's numbers come in order. */
static void receive_in_order(int r, int nsrc, const uint32_t *src, const uint64_t *first,
			     uint64_t count)
{
	uint64_t next[8];

	memcpy(next, first, nsrc * sizeof(next[0]));
	for (uint64_t i = 0; i < count; i++) {
		uint64_t n;
		struct dvk_msg m;
		int rc = recv_num(r, DVK_ANY, 0, 0, SOON, &n, &m), k;

		if (rc) {
			tap_fail("receive #%" PRIu64 ": %s", i, errname(-rc));
			return;
		}
		for (k = 0; k < nsrc && src[k] != m.peer; k++)
			;
		if (k == nsrc || n != next[k]) {
			tap_fail("receive #%" PRIu64 ": number %" PRIu64 " from %u, want %" PRIu64,
				 i, n, m.peer, k < nsrc ? next[k] : 0);
			return;
		}
		next[k]++;
	}
}

static void t_fifo_one_sender(void)
{
	uint32_t dc = dc_new(4), src = 1;
	int r = ep_open(dc, 0, NULL);
	struct sender_arg a = { .fd = ep_open(dc, 1, NULL), .dst = 0, .first = 1000,
				.count = 5000 };
	pid_t pid = SPAWN(sender, &a, a.fd);

	dev_close(a.fd);
	receive_in_order(r, 1, &src, &a.first, a.count);
	CHECK_CHILD(pid);
	EXPECT_EMPTY(r);
}

static void t_fifo_two_senders(void)
{
	uint32_t dc = dc_new(4), src[2] = { 1, 2 };
	uint64_t first[2] = { 0, 1000000 };
	int r = ep_open(dc, 0, NULL);
	struct sender_arg a[2];
	pid_t pid[2];

	for (int i = 0; i < 2; i++) {
		a[i] = (struct sender_arg){ .fd = ep_open(dc, src[i], NULL), .dst = 0,
					    .first = first[i], .count = 3000 };
		pid[i] = SPAWN(sender, &a[i], a[i].fd);
		dev_close(a[i].fd);
	}
	receive_in_order(r, 2, src, first, 6000);
	CHECK_CHILD(pid[0]);
	CHECK_CHILD(pid[1]);
	EXPECT_EMPTY(r);
}

static void t_receive_from(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), a = ep_open(dc, 1, NULL), b = ep_open(dc, 2, NULL);

	CHECK_RC(send_num(a, 0, 11, 0, SOON), 0);
	CHECK_RC(send_num(b, 0, 21, 0, SOON), 0);
	CHECK_RC(send_num(a, 0, 12, 0, SOON), 0);
	CHECK_RC(send_num(b, 0, 22, 0, SOON), 0);
	EXPECT_NUM(r, 2, 21);
	EXPECT_NUM(r, 2, 22);
	CHECK_RC(recv_num(r, 2, 0, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECK_RC(recv_num(r, 3, 0, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECK_EQ(EXPECT_NUM(r, DVK_ANY, 11), 1);
	CHECK_EQ(EXPECT_NUM(r, DVK_ANY, 12), 1);
	EXPECT_EMPTY(r);
}

/* from with a generation: what a gone incarnation left is still received, then ENOENT. */
static void t_receive_from_generation(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, &gen);

	CHECK_RC(recv_num(r, 1, gen + 1, DVK_CALL_NONBLOCK, 0, NULL, NULL), -ENOENT);
	CHECK_RC(recv_num(r, 1, gen + 1, 0, in_ms(200), NULL, NULL), -ENOENT);
	CHECK_RC(recv_num(r, 1, gen, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECK_RC(send_num(s, 0, 5, 0, SOON), 0);
	CHECK_RC(send_num(s, 0, 6, 0, SOON), 0);
	dev_close(s);
	/* Messages accepted before the sender left stay receivable, by its generation too. */
	CHECK_RC(recv_num(r, 1, gen, DVK_CALL_NONBLOCK, 0, NULL, NULL), 0);
	CHECK_RC(recv_num(r, 1, gen, 0, SOON, NULL, NULL), 0);
	CHECK_RC(recv_num(r, 1, gen, DVK_CALL_NONBLOCK, 0, NULL, NULL), -ENOENT);
	CHECK_RC(recv_num(r, 1, gen, 0, SOON, NULL, NULL), -ENOENT);
	/* A number alone may still be bound again: that waits. */
	CHECK_RC(recv_num(r, 1, 0, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECK_RC(recv_num(r, 7, 3, DVK_CALL_NONBLOCK, 0, NULL, NULL), -ENOENT);
}

static void t_receive_nonblock(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL);
	uint64_t t0 = now_ns();

	CHECK_RC(recv_num(r, DVK_ANY, 0, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECK_RC(recv_num(r, DVK_ANY, 0, DVK_CALL_NONBLOCK, SOON, NULL, NULL), -EAGAIN);
	CHECK_RC(recv_num(r, 2, 0, DVK_CALL_NONBLOCK, 0, NULL, NULL), -EAGAIN);
	CHECKF(now_ns() - t0 < 1000000000ull, "took %" PRIu64 " ms", (now_ns() - t0) / 1000000);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
}

static void t_deadline_past(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);

	CHECK_RC(recv_num(r, DVK_ANY, 0, 0, now_ns() - 1000000, NULL, NULL), -ETIMEDOUT);
	CHECK_RC(recv_num(r, DVK_ANY, 0, 0, 1, NULL, NULL), -ETIMEDOUT);
	/* A deadline only matters to a call that has to wait. */
	CHECK_RC(send_num(s, 0, 4, 0, 1), 0);
	CHECK_RC(recv_num(r, DVK_ANY, 0, 0, 1, NULL, NULL), 0);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
}

static void t_deadline_50ms(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL);
	uint64_t t0 = now_ns(), took;

	CHECK_RC(recv_num(r, DVK_ANY, 0, 0, t0 + 50000000ull, NULL, NULL), -ETIMEDOUT);
	took = now_ns() - t0;
	CHECKF(took >= 49000000ull, "took %" PRIu64 " us", took / 1000);
	CHECKF(took < 3000000000ull, "took %" PRIu64 " us", took / 1000);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 0);
}

static void t_receive_too_small(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	char out[100], in[100];
	struct dvk_msg m;

	pattern(out, sizeof(out), 9);
	CHECK_RC(msend(s, 0, 0, 1, out, sizeof(out), 0, SOON), 0);
	CHECK_RC(msend(s, 0, 0, 2, out, 1, 0, SOON), 0);
	CHECK_RC(mrecv(r, DVK_ANY, 0, in, 99, 0, SOON, &m), -EMSGSIZE);
	CHECK_EQ(m.size, 100);
	/* It stays first: the small message behind it is not taken instead. */
	CHECK_RC(mrecv(r, DVK_ANY, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, &m), -EMSGSIZE);
	CHECK_EQ(m.size, 100);
	CHECK_EQ(ep_get(dc, 0, "queued"), 2);
	CHECK_RC(mrecv(r, DVK_ANY, 0, in, sizeof(in), 0, SOON, &m), 0);
	CHECK_EQ(m.type, 1);
	CHECK_EQ(m.size, 100);
	CHECK(is_pattern(in, sizeof(in), 9));
	CHECK_RC(mrecv(r, DVK_ANY, 0, in, 1, 0, SOON, &m), 0);
	CHECK_EQ(m.type, 2);
	CHECK_EQ(m.size, 1);
}

static void t_receive_efault(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	char out[64], in[64];
	struct dvk_msg m;

	pattern(out, sizeof(out), 4);
	CHECK_RC(msend(s, 0, 0, 9, out, sizeof(out), 0, SOON), 0);
	CHECK_RC(mrecv(r, DVK_ANY, 0, bad_page(), sizeof(in), 0, SOON, &m), -EFAULT);
	CHECK_RC(mrecv(r, DVK_ANY, 0, KERNEL_ADDR, sizeof(in), 0, SOON, &m), -EFAULT);
	/* Half the buffer is writable, half is not. */
	CHECK_RC(mrecv(r, DVK_ANY, 0, before_hole(32), sizeof(in), 0, SOON, &m), -EFAULT);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	CHECK_RC(mrecv(r, DVK_ANY, 0, in, sizeof(in), 0, SOON, &m), 0);
	CHECK_EQ(m.type, 9);
	CHECK_EQ(m.size, sizeof(in));
	CHECK_EQ(m.peer, 1);
	CHECK(memcmp(in, out, sizeof(in)) == 0);
}

/* A receive's msg is read for payload and size only: one struct serves call after call. */
static void t_receive_reuse(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, &gen);
	uint64_t in = 0;
	struct dvk_receive rcv = {
		.from = DVK_ANY,
		.msg = { .peer = 0xdead, .peer_gen = 77, .type = 5, .flags = 0xffffffffu,
			 .request_id = ~0ull, .payload = (uintptr_t)&in, .size = sizeof(in),
			 .bits = 0xffffffffu },
	};

	for (uint64_t i = 0; i < 3; i++)
		CHECK_RC(send_num(s, 0, 100 + i, 0, SOON), 0);
	CHECK_RC(mnotify(s, 0, 0, 2), 0);
	for (uint64_t i = 0; i < 4; i++) {
		rcv.deadline_ns = SOON;
		CHECK_RC(dvk_ioctl(r, DVK_IOC_RECEIVE, &rcv), 0);
		CHECK_EQ(rcv.msg.peer, 1);
		CHECK_EQ(rcv.msg.peer_gen, gen);
		if (i == 0) { /* the notification first */
			CHECK_EQ(rcv.msg.flags, DVK_MSG_NOTIFY);
			CHECK_EQ(rcv.msg.bits, 2);
			CHECK_EQ(rcv.msg.size, 0);
			rcv.msg.size = sizeof(in); /* the one field a caller must set again */
			continue;
		}
		CHECK_EQ(rcv.msg.flags, 0);
		CHECK_EQ(rcv.msg.bits, 0);
		CHECK_EQ(rcv.msg.size, sizeof(in));
		CHECK_EQ(in, 100 + i - 1);
	}
}

static void t_send_enoent(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int s = ep_open(dc, 0, NULL), r = ep_open(dc, 1, &gen);

	CHECK_RC(send_num(s, 2, 1, 0, SOON), -ENOENT);
	CHECK_RC(msend(s, 1, gen + 1, 1, NULL, 0, 0, SOON), -ENOENT);
	dev_close(r);
	CHECK_RC(send_num(s, 1, 1, 0, SOON), -ENOENT);
	r = ep_open(dc, 1, NULL);
	CHECK_RC(msend(s, 1, gen, 1, NULL, 0, 0, SOON), -ENOENT); /* the stale incarnation */
	CHECK_RC(msend(s, 1, gen + 1, 2, NULL, 0, 0, SOON), 0);
	CHECK_EQ(ep_get(dc, 1, "queued"), 1);
}

struct recv_arg {
	int fd;
	uint32_t from, from_gen;
	int want_rc;
	uint64_t want;	/* with want_rc 0: the number */
	int deadline_ms; /* 0: LONG_MS */
	int ready;	/* a pipe to write 'R' to just before receiving, or -1 */
};

static void receiver(void *p)
{
	struct recv_arg *a = p;
	uint64_t n;

	if (a->ready >= 0)
		put_byte(a->ready, 'R');
	CHECK_RC(recv_num(a->fd, a->from, a->from_gen, 0,
			  in_ms(a->deadline_ms ? a->deadline_ms : LONG_MS), &n, NULL),
		 a->want_rc);
	if (a->want_rc == 0)
		CHECK_EQ(n, a->want);
}

static void t_receive_wakes(void)
{
	uint32_t dc = dc_new(4);
	int s = ep_open(dc, 1, NULL);
	struct recv_arg a = { .fd = ep_open(dc, 0, NULL), .from = DVK_ANY, .want = 31, .ready = -1 };
	pid_t pid = SPAWN(receiver, &a, a.fd);

	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK_RC(send_num(s, 0, 31, 0, SOON), 0);
	CHECK_CHILD(pid);
}

/* Waiting receives are served in call order, each message to the first whose filter fits. */
static void t_receivers_in_order(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), y = ep_open(dc, 2, NULL);
	struct recv_arg any1 = { .fd = r, .from = DVK_ANY, .want = 1, .ready = -1 };
	struct recv_arg any2 = { .fd = r, .from = DVK_ANY, .want = 2, .ready = -1 };
	pid_t p1, p2;

	p1 = SPAWN(receiver, &any1, r);
	WAIT_EP(dc, 0, "receivers", 1);
	p2 = SPAWN(receiver, &any2, r);
	WAIT_EP(dc, 0, "receivers", 2);
	CHECK_RC(send_num(x, 0, 1, 0, SOON), 0);
	CHECK_CHILD(p1);
	CHECK_RC(send_num(y, 0, 2, 0, SOON), 0);
	CHECK_CHILD(p2);
	EXPECT_EMPTY(r);
}

static void t_receivers_filters(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), x = ep_open(dc, 1, NULL), y = ep_open(dc, 2, NULL);
	struct recv_arg from_x = { .fd = r, .from = 1, .want = 10, .ready = -1 };
	struct recv_arg any = { .fd = r, .from = DVK_ANY, .want = 20, .ready = -1 };
	pid_t p1, p2;

	p1 = SPAWN(receiver, &from_x, r);
	WAIT_EP(dc, 0, "receivers", 1);
	p2 = SPAWN(receiver, &any, r);
	WAIT_EP(dc, 0, "receivers", 2);
	/* y's message passes over the first receive, which waits for x only. */
	CHECK_RC(send_num(y, 0, 20, 0, SOON), 0);
	CHECK_CHILD(p2);
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	CHECK_RC(send_num(x, 0, 10, 0, SOON), 0);
	CHECK_CHILD(p1);
	EXPECT_EMPTY(r);
}

/* ====================================================================================== */
/* Backpressure                                                                            */
/* ====================================================================================== */

/* Fills dst's queue from fd with numbers first .. first + queue_length - 1. */
static void fill_queue(int fd, uint32_t dst, uint64_t first)
{
	for (uint64_t i = 0; i < queue_length; i++) {
		int rc = send_num(fd, dst, first + i, DVK_CALL_NONBLOCK, 0);

		if (rc) {
			tap_fail("filling: send #%" PRIu64 ": %s", i, errname(-rc));
			return;
		}
	}
}

/* Receives numbers first .. first + count - 1, in order, from `from`. */
static void drain(int fd, uint32_t from, uint64_t first, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		uint64_t n;
		int rc = recv_num(fd, from, 0, 0, SOON, &n, NULL);

		if (rc || n != first + i) {
			tap_fail("drain #%" PRIu64 ": %s, number %" PRIu64 ", want %" PRIu64, i,
				 errname(-rc), n, first + i);
			return;
		}
	}
}

static void t_queue_full(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL), o = ep_open(dc, 2, NULL);
	uint64_t t0;

	fill_queue(f, 0, 0);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	CHECK_EQ(ep_get(dc, 0, "bytes"), 8 * queue_length);
	t0 = now_ns();
	CHECK_RC(send_num(f, 0, 999, DVK_CALL_NONBLOCK, 0), -EAGAIN);
	CHECK_RC(send_num(o, 0, 999, DVK_CALL_NONBLOCK, SOON), -EAGAIN);
	CHECK(now_ns() - t0 < 1000000000ull);
	/* A full queue holds up senders to it only. */
	CHECK_RC(send_num(f, 2, 5, DVK_CALL_NONBLOCK, 0), 0);
	EXPECT_NUM(o, DVK_ANY, 5);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
}

static void t_held_send_completes(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct sender_arg a = { .fd = f, .dst = 0, .first = queue_length, .count = 1 };
	pid_t pid;

	fill_queue(f, 0, 0);
	pid = SPAWN(sender, &a, f);
	WAIT_EP(dc, 0, "held", 1);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	EXPECT_NUM(r, DVK_ANY, 0);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 1, queue_length);
	EXPECT_EMPTY(r);
}

static void t_held_send_timeout(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	uint64_t t0;

	fill_queue(f, 0, 0);
	t0 = now_ns();
	CHECK_RC(send_num(f, 0, 500, 0, in_ms(100)), -ETIMEDOUT);
	CHECK(now_ns() - t0 >= 99000000ull);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
	/* The sender is not stuck behind its own ghost. */
	CHECK_RC(send_num(f, 0, 501, 0, SOON), 0);
	EXPECT_NUM(r, DVK_ANY, 501);
}

static void t_held_send_killed(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct sender_arg a = { .fd = ep_open(dc, 2, NULL), .dst = 0, .first = 7000, .count = 1 };
	pid_t pid;

	fill_queue(f, 0, 0);
	pid = SPAWN(sender, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "held", 1);
	kill_child(pid);
	WAIT_UNBOUND(dc, 2);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
}

/* receive(from X) takes X's message although it is held behind a queue full of others. */
static void t_held_taken_by_from(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct sender_arg a = { .fd = ep_open(dc, 3, NULL), .dst = 0, .first = 30, .count = 2 };
	pid_t pid;

	fill_queue(f, 0, 0);
	pid = SPAWN(sender, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "held", 1);
	EXPECT_NUM(r, 3, 30);
	EXPECT_NUM(r, 3, 31); /* the second send, held in turn, or waited for */
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
}

/* A receive(from X) already waiting gets X's send although the queue is full. */
static void t_waiting_from_full_queue(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL), x = ep_open(dc, 3, NULL);
	struct recv_arg a = { .fd = r, .from = 3, .want = 33, .ready = -1 };
	pid_t pid;

	fill_queue(f, 0, 0);
	pid = SPAWN(receiver, &a, r);
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK_RC(send_num(x, 0, 33, 0, SOON), 0);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "queued"), queue_length);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 0, queue_length);
}

struct expect_send_arg {
	int fd;
	uint32_t dst;
	int want_rc;
};

static void send_expecting(void *p)
{
	struct expect_send_arg *a = p;

	CHECK_RC(send_num(a->fd, a->dst, 1, 0, SOON), a->want_rc);
}

/* A sender waiting for room when its destination unbinds gets ESRCH. */
static void t_held_destination_gone(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct expect_send_arg a = { .fd = ep_open(dc, 2, NULL), .dst = 0, .want_rc = -ESRCH };
	pid_t pid;

	fill_queue(f, 0, 0);
	pid = SPAWN(send_expecting, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "held", 1);
	dev_close(r);
	CHECK_CHILD(pid);
}

/* ====================================================================================== */
/* SENDREC, REPLY and REPLY_RECEIVE                                                        */
/* ====================================================================================== */

/* The server's answer to a request: type + 1, every payload byte inverted. */
static void transform(unsigned char *out, const unsigned char *in, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		out[i] = in[i] ^ 0xff;
}

struct serve_arg {
	int fd;
	int count;
	bool reply_receive; /* serve with REPLY_RECEIVE instead of RECEIVE + REPLY */
};

/* Answers `count` requests with transform(). */
static void serve(void *p)
{
	struct serve_arg *a = p;
	unsigned char in[256], out[256];
	struct dvk_msg m;
	int rc = mrecv(a->fd, DVK_ANY, 0, in, sizeof(in), 0, in_ms(3 * LONG_MS), &m);

	for (int i = 0; i < a->count; i++) {
		if (rc) {
			tap_fail("server: receiving request %d: %s", i, errname(-rc));
			return;
		}
		if (m.flags != DVK_MSG_REQUEST || m.request_id == 0) {
			tap_fail("server: message %d has flags 0x%x, request id %llu", i, m.flags,
				 (unsigned long long)m.request_id);
			return;
		}
		transform(out, in, m.size);
		if (a->reply_receive && i + 1 < a->count) {
			struct dvk_reply_receive rr;

			memset(&rr, 0, sizeof(rr));
			reply_init(&rr.reply, &m, m.type + 1, out, m.size);
			rr.receive = (struct dvk_receive){
				.from = DVK_ANY, .deadline_ns = in_ms(3 * LONG_MS),
				.msg = { .payload = (uintptr_t)in, .size = sizeof(in) },
			};
			rc = dvk_ioctl(a->fd, DVK_IOC_REPLY_RECEIVE, &rr);
			m = rr.receive.msg;
			continue;
		}
		rc = mreply(a->fd, &m, m.type + 1, out, m.size);
		if (rc) {
			tap_fail("server: reply %d: %s", i, errname(-rc));
			return;
		}
		if (i + 1 < a->count)
			rc = mrecv(a->fd, DVK_ANY, 0, in, sizeof(in), 0, in_ms(3 * LONG_MS), &m);
	}
}

struct client_arg {
	int fd;
	uint32_t dst;
	int count;
	unsigned seed;
};

/* Makes `count` sendrecs of 1..200 bytes and checks every reply against transform(). */
static void client_many(void *p)
{
	struct client_arg *a = p;
	unsigned char out[256], want[256], in[256];

	for (int i = 0; i < a->count; i++) {
		uint32_t len = 1 + (i * 7 + a->seed) % 200;
		int32_t type = (int32_t)(a->seed * 100000 + i);
		struct dvk_msg rep;
		int rc;

		pattern(out, len, a->seed * 7919 + i);
		transform(want, out, len);
		rc = msendrec(a->fd, a->dst, 0, type, out, len, in, sizeof(in), in_ms(3 * LONG_MS),
			      &rep);
		if (rc || rep.type != type + 1 || rep.size != len || memcmp(in, want, len) ||
		    rep.flags != DVK_MSG_REPLY || rep.peer != a->dst) {
			tap_fail("client %u call %d: %s, type %d, size %u, flags 0x%x, payload %s",
				 a->seed, i, errname(-rc), rep.type, rep.size, rep.flags,
				 memcmp(in, want, len) ? "wrong" : "right");
			return;
		}
	}
}

static bool read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 3 * LONG_MS) != 1)
			return false;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return false;
		got += n;
	}
	return true;
}

struct roundtrip_arg {
	int fd, out;
	uint32_t sgen;
};

static void roundtrip_client(void *p)
{
	struct roundtrip_arg *a = p;
	char in[64];
	struct dvk_msg rep;

	memset(&rep, 0xee, sizeof(rep));
	CHECK_RC(msendrec(a->fd, 0, a->sgen, -7, "question", 8, in, sizeof(in), SOON, &rep), 0);
	CHECK_EQ(rep.type, INT32_MAX);
	CHECK_EQ(rep.size, 6);
	CHECK(memcmp(in, "answer", 6) == 0);
	CHECK_EQ(rep.flags, DVK_MSG_REPLY);
	CHECK_EQ(rep.peer, 0);
	CHECK_EQ(rep.peer_gen, a->sgen);
	CHECK_EQ(rep.bits, 0);
	CHECK(rep.request_id != 0);
	CHECK(write(a->out, &rep.request_id, 8) == 8);
}

static void t_sendrec_roundtrip(void)
{
	uint32_t dc = dc_new(4), sgen = 0, cgen = 0;
	int server = ep_open(dc, 0, &sgen);
	int pfd[2];
	struct roundtrip_arg a = { .fd = ep_open(dc, 1, &cgen), .sgen = sgen };
	char in[64];
	struct dvk_msg req;
	uint64_t id = 0;
	pid_t pid;

	pipe_new(pfd);
	a.out = pfd[1];
	pid = SPAWN(roundtrip_client, &a, a.fd);
	dev_close(a.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, in, sizeof(in), 0, SOON, &req), 0);
	CHECK_EQ(req.flags, DVK_MSG_REQUEST);
	CHECK(req.request_id != 0);
	CHECK_EQ(req.peer, 1);
	CHECK_EQ(req.peer_gen, cgen);
	CHECK_EQ(req.type, -7);
	CHECK_EQ(req.size, 8);
	CHECK_EQ(req.bits, 0);
	CHECK(memcmp(in, "question", 8) == 0);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_EQ(ep_get(dc, 1, "calls"), 1);
	CHECK_RC(mreply(server, &req, INT32_MAX, "answer", 6), 0);
	CHECK(read_full(pfd[0], &id, sizeof(id)));
	CHECK_EQ(id, req.request_id);
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
}

static void empty_reply_client(void *p)
{
	int fd = *(int *)p;
	char in[16];
	struct dvk_msg rep;

	CHECK_RC(msendrec(fd, 0, 0, 9, "x", 1, in, sizeof(in), SOON, &rep), 0);
	CHECK_EQ(rep.type, 0);
	CHECK_EQ(rep.size, 0);
	CHECK_EQ(rep.flags, DVK_MSG_REPLY);
}

static void t_sendrec_empty_reply(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	pid_t pid = SPAWN(empty_reply_client, &client, client);
	struct dvk_msg req;
	char in[16];

	CHECK_RC(mrecv(server, DVK_ANY, 0, in, sizeof(in), 0, SOON, &req), 0);
	CHECK_RC(mreply(server, &req, 0, NULL, 0), 0);
	CHECK_CHILD(pid);
}

static void plain_kept_client(void *p)
{
	int fd = *(int *)p;
	uint64_t n = 1, r = 0;
	struct dvk_msg rep, m;

	CHECK_RC(msendrec(fd, 0, 0, 1, &n, 8, &r, 8, SOON, &rep), 0);
	CHECK_EQ(rep.type, 88);
	CHECK_EQ(r, 3);
	CHECK_RC(recv_num(fd, DVK_ANY, 0, DVK_CALL_NONBLOCK, 0, &n, &m), 0);
	CHECK_EQ(n, 77);
	CHECK_EQ(m.flags, 0);
	EXPECT_EMPTY(fd);
}

/* A plain message from the server during a sendrec is no reply: it stays queued. */
static void t_sendrec_plain_kept(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	pid_t pid = SPAWN(plain_kept_client, &client, client);
	struct dvk_msg req;
	uint64_t in, three = 3;

	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	CHECK_RC(send_num(server, 1, 77, 0, SOON), 0);
	CHECK_RC(mreply(server, &req, 88, &three, 8), 0);
	CHECK_CHILD(pid);
}

/* A server process answering 4 client processes, with REPLY_RECEIVE. */
static void t_sendrec_many_clients(void)
{
	uint32_t dc = dc_new(8);
	struct serve_arg s = { .fd = ep_open(dc, 0, NULL), .count = 4 * 250, .reply_receive = true };
	pid_t server = SPAWN(serve, &s, s.fd), client[4];

	dev_close(s.fd);
	for (int c = 0; c < 4; c++) {
		struct client_arg a = { .fd = ep_open(dc, 1 + c, NULL), .dst = 0, .count = 250,
					.seed = c + 1 };

		client[c] = SPAWN(client_many, &a, a.fd);
		dev_close(a.fd);
	}
	for (int c = 0; c < 4; c++)
		CHECK_CHILD(client[c]);
	CHECK_CHILD(server);
}

static void t_reply_twice(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = 0, .type = 1, .num = 5,
			       .want_type = 1, .want_num = 10 };
	pid_t pid = SPAWN(client_call, &ca, ca.fd);
	struct dvk_msg req;
	uint64_t in, ten = 10, eleven = 11;

	dev_close(ca.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	CHECK_RC(mreply(server, &req, 1, &ten, 8), 0);
	CHECK_RC(mreply(server, &req, 2, &eleven, 8), -EINVAL);
	CHECK_CHILD(pid);
	CHECK_RC(mreply(server, &req, 2, &eleven, 8), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
}

/* Replies to plain messages, to made-up requests or to the wrong caller fail. */
static void t_reply_invalid(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), other = ep_open(dc, 2, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = 0, .type = 4, .num = 4,
			       .want_type = 4, .want_num = 44 };
	pid_t pid;
	struct dvk_msg plain, req, fake;
	uint64_t in, v = 44;

	CHECK_RC(send_num(other, 0, 9, 0, SOON), 0);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &plain), 0);
	CHECK_EQ(plain.request_id, 0);
	CHECK_RC(mreply(server, &plain, 1, &v, 8), -EINVAL);
	EXPECT_EMPTY(other);

	pid = SPAWN(client_call, &ca, ca.fd);
	dev_close(ca.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	fake = req;
	fake.request_id += 1000;
	CHECK_RC(mreply(server, &fake, 1, &v, 8), -EINVAL);
	fake = req;
	fake.peer_gen++;
	CHECK_RC(mreply(server, &fake, 1, &v, 8), -EINVAL);
	fake = req;
	fake.peer = 2;
	CHECK_RC(mreply(server, &fake, 1, &v, 8), -EINVAL);
	fake = req;
	fake.request_id = 0;
	CHECK_RC(mreply(server, &fake, 1, &v, 8), -EINVAL);
	/* Only the request's receiver may answer it. */
	CHECK_RC(mreply(other, &req, 1, &v, 8), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_RC(mreply(server, &req, 4, &v, 8), 0);
	CHECK_CHILD(pid);
	EXPECT_EMPTY(other);
}

static void t_sendrec_timeout_queued(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	uint64_t n = 1, r, t0 = now_ns();

	CHECK_RC(msendrec(client, 0, 0, 1, &n, 8, &r, 8, in_ms(100), NULL), -ETIMEDOUT);
	CHECK(now_ns() - t0 >= 99000000ull);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	CHECK_EQ(ep_get(dc, 1, "calls"), 0);
	EXPECT_EMPTY(server);
	EXPECT_EMPTY(client);
}

static void t_sendrec_timeout_held(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL), client = ep_open(dc, 2, NULL);
	uint64_t n = 1, r;

	fill_queue(f, 0, 0);
	CHECK_RC(msendrec(client, 0, 0, 1, &n, 8, &r, 8, in_ms(100), NULL), -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	CHECK_EQ(ep_get(dc, 2, "calls"), 0);
	drain(server, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(server);
}

struct late_arg {
	int fd, out;
};

static void late_reply_client(void *p)
{
	struct late_arg *a = p;
	uint64_t n = 1, r = 0;
	struct dvk_msg m;

	CHECK_RC(msendrec(a->fd, 0, 0, 1, &n, 8, &r, 8, in_ms(1000), NULL), -ETIMEDOUT);
	put_byte(a->out, 'T');
	/* A receive waiting while the late reply comes in must not get it. */
	CHECK_RC(recv_num(a->fd, DVK_ANY, 0, 0, SOON, &n, &m), 0);
	CHECK_EQ(n, 5);
	CHECK_EQ(m.flags, 0);
	EXPECT_EMPTY(a->fd);
	/* The next call gets its own reply. */
	n = 2;
	CHECK_RC(msendrec(a->fd, 0, 0, 2, &n, 8, &r, 8, SOON, &m), 0);
	CHECK_EQ(m.type, 22);
	CHECK_EQ(r, 22);
}

/* A caller that timed out after the server took its request: the reply goes nowhere. */
static void t_sendrec_timeout_received(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), pfd[2];
	struct late_arg a = { .fd = ep_open(dc, 1, NULL) };
	struct dvk_msg req;
	uint64_t in, v;
	pid_t pid;

	pipe_new(pfd);
	a.out = pfd[1];
	pid = SPAWN(late_reply_client, &a, a.fd);
	dev_close(a.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	EXPECT_BYTE(pfd[0], 'T');
	v = 66;
	CHECK_RC(mreply(server, &req, 66, &v, 8), 0);
	CHECK_RC(send_num(server, 1, 5, 0, SOON), 0);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	CHECK_EQ(in, 2);
	v = 22;
	CHECK_RC(mreply(server, &req, 22, &v, 8), 0);
	CHECK_CHILD(pid);
}

struct hold_arg {
	int fd, out, count;
};

/* Receives `count` requests, says 'R' after each, and never answers. */
static void hold_requests(void *p)
{
	struct hold_arg *a = p;

	for (int i = 0; i < a->count; i++) {
		struct dvk_msg m;
		uint64_t in;

		CHECK_RC(mrecv(a->fd, DVK_ANY, 0, &in, 8, 0, SOON, &m), 0);
		put_byte(a->out, 'R');
	}
	sleep_ms(6 * LONG_MS);
}

static void t_server_dies_holding(void)
{
	uint32_t dc = dc_new(4);
	int pfd[2];
	struct hold_arg h = { .fd = ep_open(dc, 0, NULL), .count = 1 };
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = 0, .num = 1, .want_rc = -ESRCH };
	pid_t server, client;

	pipe_new(pfd);
	h.out = pfd[1];
	server = SPAWN(hold_requests, &h, h.fd);
	client = SPAWN(client_call, &ca, ca.fd);
	dev_close(h.fd);
	dev_close(ca.fd);
	EXPECT_BYTE(pfd[0], 'R');
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	kill_child(server);
	CHECK_CHILD(client);
}

/* Two requests queued and one held behind the full queue: all three callers get ESRCH. */
static void t_server_dies_queued(void)
{
	uint32_t dc = dc_new(8);
	int f = ep_open(dc, 7, NULL);
	struct hold_arg h = { .fd = ep_open(dc, 0, NULL), .count = 0 };
	struct call_arg ca[3];
	pid_t server, client[3];

	for (uint64_t i = 0; i + 2 < queue_length; i++)
		CHECK_RC(send_num(f, 0, i, DVK_CALL_NONBLOCK, 0), 0);
	server = SPAWN(hold_requests, &h, h.fd);
	dev_close(h.fd);
	for (int i = 0; i < 3; i++) {
		ca[i] = (struct call_arg){ .fd = ep_open(dc, 1 + i, NULL), .dst = 0, .num = i,
					   .want_rc = -ESRCH };
		client[i] = SPAWN(client_call, &ca[i], ca[i].fd);
		dev_close(ca[i].fd);
		if (i < 2)
			WAIT_EP(dc, 0, "queued", queue_length - 1 + i);
	}
	WAIT_EP(dc, 0, "held", 1);
	kill_child(server);
	for (int i = 0; i < 3; i++)
		CHECK_CHILD(client[i]);
}

static void t_client_dies_received(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = 0, .num = 1 };
	pid_t client = SPAWN(client_call, &ca, ca.fd);
	struct dvk_msg req;
	uint64_t in, v = 2;

	dev_close(ca.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	kill_child(client);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	CHECK_RC(mreply(server, &req, 2, &v, 8), 0);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
	EXPECT_EMPTY(server);
}

static void t_client_dies_queued(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct call_arg ca = { .fd = ep_open(dc, 1, NULL), .dst = 0, .num = 1 };
	pid_t client = SPAWN(client_call, &ca, ca.fd);

	dev_close(ca.fd);
	WAIT_EP(dc, 0, "queued", 1);
	kill_child(client);
	WAIT_UNBOUND(dc, 1);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	EXPECT_EMPTY(server);
}

struct seq_arg {
	int fd, count;
};

/* Makes `count` sendrecs one after the other; reply i must be transform(i). */
static void client_seq(void *p)
{
	struct seq_arg *a = p;

	for (int i = 0; i < a->count; i++) {
		uint64_t n = i, r = 0;
		struct dvk_msg rep;
		int rc = msendrec(a->fd, 0, 0, i, &n, 8, &r, 8, SOON, &rep);

		if (rc || r != ~(uint64_t)i || rep.type != i + 1) {
			tap_fail("call %d: %s, type %d, number 0x%" PRIx64, i, errname(-rc),
				 rep.type, r);
			return;
		}
	}
}

/* REPLY_RECEIVE serves a loop: each call answers one request and takes the next. */
static void t_reply_receive_loop(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct seq_arg a = { .fd = ep_open(dc, 1, NULL), .count = 100 };
	pid_t pid = SPAWN(client_seq, &a, a.fd);
	struct dvk_reply_receive rr;
	struct dvk_msg req;
	uint64_t in = ~0ull, out;

	dev_close(a.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	for (int i = 0; i < a.count; i++) {
		bool last = i + 1 == a.count;

		CHECK_EQ(in, i);
		CHECK_EQ(req.flags, DVK_MSG_REQUEST);
		out = ~in;
		memset(&rr, 0, sizeof(rr));
		reply_init(&rr.reply, &req, req.type + 1, &out, 8);
		rr.receive = (struct dvk_receive){
			.from = DVK_ANY, .deadline_ns = SOON,
			.flags = last ? DVK_CALL_NONBLOCK : 0,
			.msg = { .payload = (uintptr_t)&in, .size = 8 },
		};
		/* After the last reply there is nothing to receive: the reply still went. */
		if (CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY_RECEIVE, &rr), last ? -EAGAIN : 0))
			break;
		req = rr.receive.msg;
	}
	CHECK_CHILD(pid);
	CHECK_EQ(ep_get(dc, 0, "owed"), 0);
}

/* REPLY_RECEIVE whose reply fails receives nothing. */
static void t_reply_receive_bad_reply(void)
{
	uint32_t dc = dc_new(4), ogen = 0;
	int server = ep_open(dc, 0, NULL), other = ep_open(dc, 1, &ogen);
	struct dvk_msg fake = { .peer = 1, .peer_gen = ogen, .request_id = 12345 };
	struct dvk_reply_receive rr;
	uint64_t in;

	CHECK_RC(send_num(other, 0, 9, 0, SOON), 0);
	memset(&rr, 0, sizeof(rr));
	reply_init(&rr.reply, &fake, 1, NULL, 0);
	rr.receive = (struct dvk_receive){
		.from = DVK_ANY, .deadline_ns = SOON,
		.msg = { .payload = (uintptr_t)&in, .size = 8 },
	};
	CHECK_RC(dvk_ioctl(server, DVK_IOC_REPLY_RECEIVE, &rr), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "queued"), 1);
	EXPECT_NUM(server, DVK_ANY, 9);
	EXPECT_EMPTY(other);
}

static void t_sendrec_enoent(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int client = ep_open(dc, 0, NULL), server = ep_open(dc, 1, &gen);
	uint64_t n = 1, r;

	CHECK_RC(msendrec(client, 2, 0, 1, &n, 8, &r, 8, in_ms(300), NULL), -ENOENT);
	CHECK_RC(msendrec(client, 1, gen + 1, 1, &n, 8, &r, 8, in_ms(300), NULL), -ENOENT);
	dev_close(server);
	server = ep_open(dc, 1, NULL);
	CHECK_RC(msendrec(client, 1, gen, 1, &n, 8, &r, 8, in_ms(300), NULL), -ENOENT);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	CHECK_EQ(ep_get(dc, 0, "calls"), 0);
	/* A past deadline: nothing reaches the server. */
	CHECK_RC(msendrec(client, 1, 0, 1, &n, 8, &r, 8, now_ns() - 1000000, NULL), -ETIMEDOUT);
	CHECK_EQ(ep_get(dc, 1, "queued"), 0);
	EXPECT_EMPTY(server);
}

/* One dvk_sendrec, its reply filled with garbage, used for two calls in a row. */
static void reuse_client(void *p)
{
	int fd = *(int *)p;
	uint64_t n = 1, r = 0;
	struct dvk_sendrec s;

	sendrec_init(&s, 0, 0, 1, &n, 8, &r, 8, SOON);
	s.reply = (struct dvk_msg){ .peer = 0xdead, .peer_gen = 9, .type = -1, .flags = 0xff,
				    .request_id = 42, .payload = (uintptr_t)&r, .size = 8,
				    .bits = 3 };
	for (int i = 0; i < 2; i++) {
		n = i + 1;
		s.request.type = i + 1;
		s.deadline_ns = SOON;
		CHECK_RC(dvk_ioctl(fd, DVK_IOC_SENDREC, &s), 0);
		CHECK_EQ(s.reply.flags, DVK_MSG_REPLY);
		CHECK_EQ(s.reply.type, i + 2);
		CHECK_EQ(r, ~n);
		CHECK_EQ(s.flags, 0);
	}
}

static void t_sendrec_reuse(void)
{
	uint32_t dc = dc_new(4);
	struct serve_arg sv = { .fd = ep_open(dc, 0, NULL), .count = 2 };
	int client = ep_open(dc, 1, NULL);
	pid_t pid = SPAWN(reuse_client, &client, client);

	dev_close(client);
	serve(&sv);
	CHECK_CHILD(pid);
	EXPECT_EMPTY(sv.fd);
}

struct thread_call {
	pthread_t tid;
	int fd;
	uint64_t num, got, request_id;
	int rc;
	int32_t type;
};

static void *thread_sendrec(void *p)
{
	struct thread_call *t = p;
	struct dvk_msg rep;

	t->rc = msendrec(t->fd, 0, 0, (int32_t)t->num, &t->num, 8, &t->got, 8, SOON, &rep);
	t->type = rep.type;
	t->request_id = rep.request_id;
	return NULL;
}

static void threaded_client(void *p)
{
	int fd = *(int *)p;
	struct thread_call t[4];

	for (int i = 0; i < 4; i++) {
		t[i] = (struct thread_call){ .fd = fd, .num = i };
		REQUIRE(pthread_create(&t[i].tid, NULL, thread_sendrec, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i].tid, NULL);
		CHECK_RC(t[i].rc, 0);
		CHECK_EQ(t[i].got, i * 7);
		CHECK_EQ(t[i].type, 1000 + i);
		for (int j = 0; j < i; j++)
			CHECK(t[i].request_id != t[j].request_id);
	}
}

/* Four threads in sendrec on one file; replies in reverse order reach the right callers. */
static void t_sendrec_threads(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL), client = ep_open(dc, 1, NULL);
	pid_t pid = SPAWN(threaded_client, &client, client);
	struct dvk_msg req[4];
	uint64_t num[4];

	dev_close(client);
	for (int i = 0; i < 4; i++) {
		CHECK_RC(mrecv(server, DVK_ANY, 0, &num[i], 8, 0, SOON, &req[i]), 0);
		for (int j = 0; j < i; j++)
			CHECK(req[i].request_id != req[j].request_id);
	}
	CHECK_EQ(ep_get(dc, 0, "owed"), 4);
	CHECK_EQ(ep_get(dc, 1, "calls"), 4);
	for (int i = 3; i >= 0; i--) {
		uint64_t v = num[i] * 7;

		CHECK_RC(mreply(server, &req[i], 1000 + (int32_t)num[i], &v, 8), 0);
	}
	CHECK_CHILD(pid);
}

/* ====================================================================================== */
/* Interrupted waits                                                                       */
/* ====================================================================================== */

/* What a helper blocked in a call needs: its file, whether to restart, and two pipes. */
struct intr_arg {
	int fd;
	bool restart;
	int sig_w;	/* the handler writes 'S' here */
	int out_w;	/* the helper reports progress here */
	int in_r;	/* the parent says go here */
};

/* Sets up the helper's SIGUSR1 handler as the case asks. */
static void intr_setup(struct intr_arg *a)
{
	sig_pipe_w = a->sig_w;
	sig_count = 0;
	catch_signal(SIGUSR1, a->restart);
}

/* The parent side: pipes for a helper. */
struct intr_pipes {
	int sig[2], out[2], in[2];
};

static void intr_pipes(struct intr_pipes *p, struct intr_arg *a, int fd, bool restart)
{
	pipe_new(p->sig);
	pipe_new(p->out);
	pipe_new(p->in);
	*a = (struct intr_arg){ .fd = fd, .restart = restart, .sig_w = p->sig[1],
				.out_w = p->out[1], .in_r = p->in[0] };
}

static void intr_receive(void *p)
{
	struct intr_arg *a = p;
	uint64_t n;

	intr_setup(a);
	if (a->restart) {
		CHECK_RC(recv_num(a->fd, DVK_ANY, 0, 0, SOON, &n, NULL), 0);
		CHECK_EQ(n, 42);
	} else {
		CHECK_RC(recv_num(a->fd, DVK_ANY, 0, 0, SOON, &n, NULL), -EINTR);
		put_byte(a->out_w, 'E');
		/* Nothing was taken: what comes next is received whole. */
		CHECK_RC(recv_num(a->fd, DVK_ANY, 0, 0, SOON, &n, NULL), 0);
		CHECK_EQ(n, 41);
	}
	CHECK_EQ(sig_count, 1);
}

static void t_eintr_receive(void)
{
	uint32_t dc = dc_new(4);
	int s = ep_open(dc, 1, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 0, NULL), false);
	pid = SPAWN(intr_receive, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.out[0], 'E');
	CHECK_RC(send_num(s, 0, 41, 0, SOON), 0);
	CHECK_CHILD(pid);
}

static void t_restart_receive(void)
{
	uint32_t dc = dc_new(4);
	int s = ep_open(dc, 1, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 0, NULL), true);
	pid = SPAWN(intr_receive, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.sig[0], 'S');
	WAIT_EP(dc, 0, "receivers", 1); /* waiting again, restarted */
	CHECK_RC(send_num(s, 0, 42, 0, SOON), 0);
	CHECK_CHILD(pid);
}

static void intr_send(void *p)
{
	struct intr_arg *a = p;

	intr_setup(a);
	CHECK_RC(send_num(a->fd, 0, 900, 0, SOON), a->restart ? 0 : -EINTR);
	CHECK_EQ(sig_count, 1);
	put_byte(a->out_w, 'E');
}

static void t_eintr_send(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	fill_queue(f, 0, 0);
	intr_pipes(&ps, &a, ep_open(dc, 2, NULL), false);
	pid = SPAWN(intr_send, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "held", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.out[0], 'E');
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
	CHECK_CHILD(pid);
}

static void t_restart_send(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	fill_queue(f, 0, 0);
	intr_pipes(&ps, &a, ep_open(dc, 2, NULL), true);
	pid = SPAWN(intr_send, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "held", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.sig[0], 'S');
	WAIT_EP(dc, 0, "held", 1); /* held again, restarted */
	drain(r, DVK_ANY, 0, queue_length);
	CHECK_EQ(EXPECT_NUM(r, DVK_ANY, 900), 2);
	EXPECT_BYTE(ps.out[0], 'E');
	EXPECT_EMPTY(r);
	CHECK_CHILD(pid);
}

/* A sendrec interrupted before the server took the request: undone, not kept. */
static void intr_sendrec_queued(void *p)
{
	struct intr_arg *a = p;
	struct dvk_sendrec s;
	uint64_t n = 5, r = 0;

	intr_setup(a);
	sendrec_init(&s, 0, 0, 5, &n, 8, &r, 8, SOON);
	if (a->restart) {
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), 0);
		CHECK_EQ(r, ~(uint64_t)5);
		CHECK_EQ(s.reply.type, 6);
	} else {
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), -EINTR);
		CHECK_EQ(s.flags & DVK_CALL_RESUME, 0);
		put_byte(a->out_w, 'E');
	}
	CHECK_EQ(sig_count, 1);
}

static void t_eintr_sendrec_queued(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 1, NULL), false);
	pid = SPAWN(intr_sendrec_queued, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "queued", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.out[0], 'E');
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	EXPECT_EMPTY(server);
	CHECK_CHILD(pid);
}

static void t_restart_sendrec_queued(void)
{
	uint32_t dc = dc_new(4);
	struct serve_arg s = { .fd = ep_open(dc, 0, NULL), .count = 1 };
	struct intr_pipes ps;
	struct intr_arg a;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 1, NULL), true);
	pid = SPAWN(intr_sendrec_queued, &a, a.fd);
	dev_close(a.fd);
	WAIT_EP(dc, 0, "queued", 1);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.sig[0], 'S');
	serve(&s); /* the request, sent again by the restarted call */
	CHECK_CHILD(pid);
	EXPECT_EMPTY(s.fd); /* and only once */
}

/* A sendrec interrupted after the server took the request: kept, then resumed. */
static void intr_sendrec_received(void *p)
{
	struct intr_arg *a = p;
	struct dvk_sendrec s;
	uint64_t n = 5, r = 0;

	intr_setup(a);
	sendrec_init(&s, 0, 0, 5, &n, 8, &r, 8, SOON);
	if (!a->restart) {
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), -EINTR);
		CHECK(s.flags & DVK_CALL_RESUME);
		CHECK(s.call != 0);
		put_byte(a->out_w, 'E');
	}
	/* Restarted by the kernel, or resumed here with the same arguments. */
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), 0);
	CHECK_EQ(r, ~(uint64_t)5);
	CHECK_EQ(s.reply.type, 6);
	CHECK_EQ(s.reply.flags, DVK_MSG_REPLY);
	CHECK_EQ(sig_count, 1);
	/* Done for good: the struct is ready for a new call. */
	CHECK_EQ(s.flags, 0);
	CHECK_EQ(s.call, 0);
}

static void intr_received_case(bool restart)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	struct dvk_msg req;
	uint64_t in, out;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 1, NULL), restart);
	pid = SPAWN(intr_sendrec_received, &a, a.fd);
	dev_close(a.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(restart ? ps.sig[0] : ps.out[0], restart ? 'S' : 'E');
	CHECK_EQ(ep_get(dc, 0, "owed"), 1);
	out = ~in;
	CHECK_RC(mreply(server, &req, req.type + 1, &out, 8), 0);
	CHECK_CHILD(pid);
	EXPECT_EMPTY(server); /* the request ran once */
}

static void t_restart_sendrec_received(void)
{
	intr_received_case(true);
}

static void t_eintr_sendrec_resume(void)
{
	intr_received_case(false);
}

/* The reply to a kept call makes the file readable; resuming then returns at once. */
static void parked_poll_client(void *p)
{
	struct intr_arg *a = p;
	struct dvk_sendrec s;
	struct pollfd pf = { .fd = a->fd, .events = POLLIN };
	uint64_t n = 5, r = 0, t0;

	intr_setup(a);
	sendrec_init(&s, 0, 0, 5, &n, 8, &r, 8, SOON);
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), -EINTR);
	CHECK(s.flags & DVK_CALL_RESUME);
	CHECK_EQ(poll(&pf, 1, 0), 0);
	put_byte(a->out_w, 'E');
	CHECK_EQ(poll(&pf, 1, 3 * LONG_MS), 1);
	CHECK(pf.revents & POLLIN);
	t0 = now_ns();
	CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s), 0);
	CHECK(now_ns() - t0 < 1000000000ull);
	CHECK_EQ(r, ~(uint64_t)5);
	CHECK_EQ(s.flags, 0);
	CHECK_EQ(s.call, 0);
	CHECK_EQ(poll(&pf, 1, 0), 0);
}

static void t_parked_poll(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	struct dvk_msg req;
	uint64_t in, out;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 1, NULL), false);
	pid = SPAWN(parked_poll_client, &a, a.fd);
	dev_close(a.fd);
	CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req), 0);
	CHECK(kill(pid, SIGUSR1) == 0);
	EXPECT_BYTE(ps.out[0], 'E');
	out = ~in;
	CHECK_RC(mreply(server, &req, 6, &out, 8), 0);
	CHECK_CHILD(pid);
}

#define PARKED_CALLS (DVK_PARKED_MAX + 1)

/* Parks DVK_PARKED_MAX + 1 calls; the oldest is given up, the others resume. */
static void parked_many_client(void *p)
{
	struct intr_arg *a = p;
	static struct dvk_sendrec s[PARKED_CALLS];
	static uint64_t n[PARKED_CALLS], r[PARKED_CALLS];
	int rc;

	intr_setup(a);
	for (int i = 0; i < PARKED_CALLS; i++) {
		n[i] = i;
		sendrec_init(&s[i], 0, 0, i, &n[i], 8, &r[i], 8, SOON);
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s[i]), -EINTR);
		CHECK(s[i].flags & DVK_CALL_RESUME);
		put_byte(a->out_w, 'E');
	}
	CHECK_EQ(get_byte(a->in_r, 3 * LONG_MS), 'G');
	s[0].deadline_ns = in_ms(500);
	rc = dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s[0]);
	CHECKF(rc != 0, "the oldest call was resumed although %d were kept", PARKED_CALLS);
	if (rc)
		tap_diag("resuming the given-up call: %s", errname(-rc));
	for (int i = 1; i < PARKED_CALLS; i++) {
		CHECK_RC(dvk_ioctl(a->fd, DVK_IOC_SENDREC, &s[i]), 0);
		CHECK_EQ(r[i], i * 3);
	}
	EXPECT_EMPTY(a->fd);
}

static void t_parked_max(void)
{
	uint32_t dc = dc_new(4);
	int server = ep_open(dc, 0, NULL);
	struct intr_pipes ps;
	struct intr_arg a;
	struct dvk_msg req[PARKED_CALLS];
	uint64_t in;
	pid_t pid;

	intr_pipes(&ps, &a, ep_open(dc, 1, NULL), false);
	pid = SPAWN(parked_many_client, &a, a.fd);
	dev_close(a.fd);
	for (int i = 0; i < PARKED_CALLS; i++) {
		CHECK_RC(mrecv(server, DVK_ANY, 0, &in, 8, 0, SOON, &req[i]), 0);
		CHECK_EQ(in, i);
		CHECK(kill(pid, SIGUSR1) == 0);
		if (get_byte(ps.out[0], 3 * LONG_MS) != 'E') {
			tap_fail("call %d was not interrupted", i);
			break;
		}
	}
	for (int i = 0; i < PARKED_CALLS; i++) {
		uint64_t v = i * 3;

		CHECK_RC(mreply(server, &req[i], 1, &v, 8), 0);
	}
	put_byte(ps.in[1], 'G');
	CHECK_CHILD(pid);
}

/* ====================================================================================== */
/* NOTIFY                                                                                  */
/* ====================================================================================== */

/* Receives a notification and checks all of it. */
#define EXPECT_NOTE(fd, from, src, src_gen, want_bits)                                    \
	do {                                                                              \
		struct dvk_msg n_;                                                        \
		char b_[8];                                                               \
		CHECK_RC(mrecv(fd, from, 0, b_, sizeof(b_), 0, SOON, &n_), 0);            \
		CHECK_EQ(n_.flags, DVK_MSG_NOTIFY);                                       \
		CHECK_EQ(n_.bits, want_bits);                                             \
		CHECK_EQ(n_.peer, src);                                                   \
		CHECK_EQ(n_.peer_gen, src_gen);                                           \
		CHECK_EQ(n_.type, 0);                                                     \
		CHECK_EQ(n_.size, 0);                                                     \
		CHECK_EQ(n_.request_id, 0);                                               \
	} while (0)

static void t_notify_coalesce(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), n = ep_open(dc, 1, &gen);

	CHECK_RC(mnotify(n, 0, 0, 1), 0);
	CHECK_RC(mnotify(n, 0, 0, 2), 0);
	CHECK_RC(mnotify(n, 0, 0, 4), 0);
	CHECK_RC(mnotify(n, 0, 0, 2), 0);
	CHECK_EQ(ep_get(dc, 0, "notes"), 1);
	CHECK_EQ(ep_get(dc, 0, "queued"), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 7);
	EXPECT_EMPTY(r);
	CHECK_EQ(ep_get(dc, 0, "notes"), 0);
	/* After a receive, bits start afresh. */
	CHECK_RC(mnotify(n, 0, 0, 8), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 8);
	EXPECT_EMPTY(r);
}

static void t_notify_before_messages(void)
{
	uint32_t dc = dc_new(4), sgen = 0, ngen = 0;
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, &sgen), n = ep_open(dc, 2, &ngen);

	CHECK_RC(send_num(s, 0, 1, 0, SOON), 0);
	CHECK_RC(mnotify(s, 0, 0, 3), 0);
	CHECK_RC(mnotify(n, 0, 0, 4), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, sgen, 3);
	EXPECT_NOTE(r, DVK_ANY, 2, ngen, 4);
	EXPECT_NUM(r, DVK_ANY, 1);
	EXPECT_EMPTY(r);
}

static void t_notify_full_queue(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), f = ep_open(dc, 1, &gen);
	uint64_t t0;

	fill_queue(f, 0, 0);
	t0 = now_ns();
	CHECK_RC(mnotify(f, 0, 0, 0x10), 0);
	CHECK(now_ns() - t0 < 1000000000ull);
	CHECK_EQ(ep_get(dc, 0, "held"), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 0x10);
	drain(r, DVK_ANY, 0, queue_length);
	EXPECT_EMPTY(r);
}

static void t_notify_bits(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), n = ep_open(dc, 1, &gen);

	CHECK_RC(mnotify(n, 0, 0, 0), -EINVAL);
	CHECK_EQ(ep_get(dc, 0, "notes"), 0);
	EXPECT_EMPTY(r);
	CHECK_RC(mnotify(n, 0, 0, 0x80000000u), 0);
	CHECK_RC(mnotify(n, 0, 0, 1), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 0x80000001u);
	CHECK_RC(mnotify(n, 0, 0, 0xffffffffu), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 0xffffffffu);
	EXPECT_EMPTY(r);
}

static void t_notify_sources(void)
{
	uint32_t dc = dc_new(4), ga = 0, gb = 0;
	int r = ep_open(dc, 0, NULL), a = ep_open(dc, 1, &ga), b = ep_open(dc, 2, &gb);

	CHECK_RC(mnotify(a, 0, 0, 1), 0);
	CHECK_RC(mnotify(b, 0, 0, 2), 0);
	CHECK_RC(mnotify(a, 0, 0, 4), 0);
	CHECK_EQ(ep_get(dc, 0, "notes"), 2);
	EXPECT_NOTE(r, DVK_ANY, 1, ga, 5);
	EXPECT_NOTE(r, DVK_ANY, 2, gb, 2);
	EXPECT_EMPTY(r);
	/* Each incarnation is a source of its own. */
	CHECK_RC(mnotify(a, 0, 0, 1), 0);
	dev_close(a);
	a = ep_open(dc, 1, NULL);
	CHECK_RC(mnotify(a, 0, 0, 2), 0);
	EXPECT_NOTE(r, DVK_ANY, 1, ga, 1);
	EXPECT_NOTE(r, DVK_ANY, 1, ga + 1, 2);
	EXPECT_EMPTY(r);
}

struct notifier_arg {
	int fd, out;
};

static void notify_then_wait(void *p)
{
	struct notifier_arg *a = p;

	CHECK_RC(mnotify(a->fd, 0, 0, 0x10), 0);
	CHECK_RC(send_num(a->fd, 0, 12, 0, SOON), 0);
	put_byte(a->out, 'N');
	sleep_ms(6 * LONG_MS);
}

/* What a killed process notified and sent stays pending. */
static void t_notify_dead_notifier(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int r = ep_open(dc, 0, NULL), pfd[2];
	struct notifier_arg a = { .fd = ep_open(dc, 1, &gen) };
	pid_t pid;

	pipe_new(pfd);
	a.out = pfd[1];
	pid = SPAWN(notify_then_wait, &a, a.fd);
	dev_close(a.fd);
	EXPECT_BYTE(pfd[0], 'N');
	kill_child(pid);
	WAIT_UNBOUND(dc, 1);
	EXPECT_NOTE(r, DVK_ANY, 1, gen, 0x10);
	EXPECT_NUM(r, DVK_ANY, 12);
	EXPECT_EMPTY(r);
}

struct note_wait_arg {
	int fd;
	uint32_t from, src, src_gen, bits;
};

static void wait_note(void *p)
{
	struct note_wait_arg *a = p;

	EXPECT_NOTE(a->fd, a->from, a->src, a->src_gen, a->bits);
}

static void t_notify_wakes(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int n = ep_open(dc, 1, &gen);
	struct note_wait_arg a = { .fd = ep_open(dc, 0, NULL), .from = DVK_ANY, .src = 1,
				   .src_gen = gen, .bits = 0x40 };
	pid_t pid = SPAWN(wait_note, &a, a.fd);

	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK_RC(mnotify(n, 0, 0, 0x40), 0);
	CHECK_CHILD(pid);
}

static void t_notify_from(void)
{
	uint32_t dc = dc_new(8), ga = 0, gb = 0;
	int r = ep_open(dc, 0, NULL), a = ep_open(dc, 1, &ga), b = ep_open(dc, 2, &gb);

	CHECK_RC(mnotify(a, 0, 0, 1), 0);
	CHECK_RC(mnotify(b, 0, 0, 2), 0);
	EXPECT_NOTE(r, 2, 2, gb, 2);
	CHECK_RC(mrecv(r, 2, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), -EAGAIN);
	CHECK_RC(mrecv(r, 4, 0, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), -EAGAIN);
	CHECK_RC(mrecv(r, 1, ga + 1, NULL, 0, DVK_CALL_NONBLOCK, 0, NULL), -ENOENT);
	{
		struct dvk_msg m;

		CHECK_RC(mrecv(r, 1, ga, NULL, 0, DVK_CALL_NONBLOCK, 0, &m), 0);
		CHECK_EQ(m.bits, 1);
		CHECK_EQ(m.flags, DVK_MSG_NOTIFY);
	}
	EXPECT_EMPTY(r);
}

/* A receive waiting for one source is not woken by another's notification. */
static void t_notify_filtered_wait(void)
{
	uint32_t dc = dc_new(4), ga = 0, gb = 0;
	int a = ep_open(dc, 1, &ga), b = ep_open(dc, 2, &gb), r = ep_open(dc, 0, NULL);
	struct note_wait_arg w = { .fd = r, .from = 2, .src = 2, .src_gen = gb, .bits = 8 };
	pid_t pid = SPAWN(wait_note, &w, r);

	WAIT_EP(dc, 0, "receivers", 1);
	CHECK_RC(mnotify(a, 0, 0, 4), 0);
	sleep_ms(50); /* a wrong wake-up would need this long at most to show */
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	CHECK_EQ(ep_get(dc, 0, "notes"), 1);
	CHECK_RC(mnotify(b, 0, 0, 8), 0);
	CHECK_CHILD(pid);
	EXPECT_NOTE(r, DVK_ANY, 1, ga, 4);
	EXPECT_EMPTY(r);
}

static void t_notify_enoent(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int n = ep_open(dc, 0, NULL), r = ep_open(dc, 1, &gen);

	CHECK_RC(mnotify(n, 2, 0, 1), -ENOENT);
	CHECK_RC(mnotify(n, 1, gen + 1, 1), -ENOENT);
	dev_close(r);
	CHECK_RC(mnotify(n, 1, 0, 1), -ENOENT);
	r = ep_open(dc, 1, NULL);
	CHECK_RC(mnotify(n, 1, gen, 1), -ENOENT);
	CHECK_EQ(ep_get(dc, 1, "notes"), 0);
	EXPECT_EMPTY(r);
}

/* ====================================================================================== */
/* poll                                                                                    */
/* ====================================================================================== */

static int poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, 0);

	return n == 1 ? p.revents : n;
}

static void t_poll(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);

	CHECK_EQ(poll_now(r), 0);
	CHECK_RC(send_num(s, 0, 1, 0, SOON), 0);
	CHECK(poll_now(r) & POLLIN);
	CHECK_EQ(poll_now(s), 0);
	EXPECT_NUM(r, DVK_ANY, 1);
	CHECK_EQ(poll_now(r), 0);
	CHECK_RC(mnotify(s, 0, 0, 1), 0);
	CHECK(poll_now(r) & POLLIN);
	CHECK_RC(mrecv(r, DVK_ANY, 0, NULL, 0, 0, SOON, NULL), 0);
	CHECK_EQ(poll_now(r), 0);
}

struct poller_arg {
	int fd, out;
};

static void poller(void *p)
{
	struct poller_arg *a = p;
	struct pollfd pf = { .fd = a->fd, .events = POLLIN };

	put_byte(a->out, 'P');
	CHECK_EQ(poll(&pf, 1, 3 * LONG_MS), 1);
	CHECK(pf.revents & POLLIN);
}

static void t_poll_wakes(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL), pfd[2];
	struct poller_arg a = { .fd = r };
	pid_t pid;

	pipe_new(pfd);
	a.out = pfd[1];
	pid = SPAWN(poller, &a, r);
	EXPECT_BYTE(pfd[0], 'P');
	sleep_ms(100); /* let it sleep in poll; if it has not yet, the test is merely weaker */
	CHECK_RC(send_num(s, 0, 1, 0, SOON), 0);
	CHECK_CHILD(pid);
	EXPECT_NUM(r, DVK_ANY, 1);
}

/* ====================================================================================== */
/* Processes that die or unbind while others wait                                          */
/* ====================================================================================== */

static void t_kill_blocked_receive(void)
{
	uint32_t dc = dc_new(4);
	int s = ep_open(dc, 1, NULL);
	struct recv_arg a = { .fd = ep_open(dc, 0, NULL), .from = DVK_ANY, .ready = -1 };
	pid_t pid = SPAWN(receiver, &a, a.fd);

	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	kill_child(pid);
	WAIT_UNBOUND(dc, 0);
	CHECK_RC(send_num(s, 0, 1, 0, SOON), -ENOENT);
	CHECK_RC(mnotify(s, 0, 0, 1), -ENOENT);
}

/* A receive waiting for an exact incarnation ends with ESRCH when it unbinds. */
static void t_from_incarnation_gone(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int x = ep_open(dc, 1, &gen);
	struct recv_arg a = { .fd = ep_open(dc, 0, NULL), .from = 1, .from_gen = gen,
			      .want_rc = -ESRCH, .ready = -1 };
	pid_t pid = SPAWN(receiver, &a, a.fd);

	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	dev_close(x);
	CHECK_CHILD(pid);
}

/* A receive waiting for a number keeps waiting across incarnations. */
static void t_from_number_waits(void)
{
	uint32_t dc = dc_new(4), gen = 0;
	int x = ep_open(dc, 1, NULL);
	struct recv_arg a = { .fd = ep_open(dc, 0, NULL), .from = 1, .want = 77, .ready = -1 };
	pid_t pid = SPAWN(receiver, &a, a.fd);

	dev_close(a.fd);
	WAIT_EP(dc, 0, "receivers", 1);
	dev_close(x);
	sleep_ms(50); /* a wrong ESRCH would show by now */
	CHECK_EQ(ep_get(dc, 0, "receivers"), 1);
	x = ep_open(dc, 1, &gen);
	CHECK_EQ(gen, 2);
	CHECK_RC(send_num(x, 0, 77, 0, SOON), 0);
	CHECK_CHILD(pid);
}

/* Unbinding drops what was queued at the endpoint: the counters say so at once. */
static void t_unbind_discards(void)
{
	uint32_t dc = dc_new(4);
	int r = ep_open(dc, 0, NULL), s = ep_open(dc, 1, NULL);
	struct dvk_stats before, full, after;
	char buf[100] = { 0 };

	CHECK_RC(stats_read(&before), 0);
	for (int i = 0; i < 3; i++)
		CHECK_RC(msend(s, 0, 0, i, buf, sizeof(buf), 0, SOON), 0);
	CHECK_RC(stats_read(&full), 0);
	CHECK_EQ(stats_get(&full, "messages"), stats_get(&before, "messages") + 3);
	CHECK_EQ(stats_get(&full, "bytes"), stats_get(&before, "bytes") + 300);
	/* (A notification record may count as a message object too: only notes is checked.) */
	CHECK_RC(mnotify(s, 0, 0, 1), 0);
	CHECK_RC(stats_read(&full), 0);
	CHECK_EQ(stats_get(&full, "notes"), stats_get(&before, "notes") + 1);
	dev_close(r);
	CHECK_RC(stats_read(&after), 0);
	CHECK_EQ(stats_get(&after, "messages"), stats_get(&before, "messages"));
	CHECK_EQ(stats_get(&after, "bytes"), stats_get(&before, "bytes"));
	CHECK_EQ(stats_get(&after, "notes"), stats_get(&before, "notes"));
	CHECK_EQ(stats_get(&after, "endpoints"), stats_get(&before, "endpoints") - 1);
	CHECK_EQ(stats_get(&after, "files"), stats_get(&before, "files") - 1);
	/* A new incarnation starts empty. */
	r = ep_open(dc, 0, NULL);
	EXPECT_EMPTY(r);
}

/* ====================================================================================== */
/* Many calls in flight                                                                    */
/* ====================================================================================== */

static void t_many_in_flight(void)
{
	enum { CLIENTS = 8, CALLS = 1000 };
	uint32_t dc = dc_new(16);
	struct serve_arg s = { .fd = ep_open(dc, 0, NULL), .count = CLIENTS * CALLS };
	pid_t server = SPAWN(serve, &s, s.fd), client[CLIENTS];

	dev_close(s.fd);
	for (int c = 0; c < CLIENTS; c++) {
		struct client_arg a = { .fd = ep_open(dc, 1 + c, NULL), .dst = 0, .count = CALLS,
					.seed = 10 + c };

		client[c] = SPAWN(client_many, &a, a.fd);
		dev_close(a.fd);
	}
	for (int c = 0; c < CLIENTS; c++)
		CHECK_CHILD(client[c]);
	CHECK_CHILD(server);
}

/* ====================================================================================== */
/* The runner                                                                              */
/* ====================================================================================== */

/* --- close() while a thread waits ------------------------------------------------------- */

struct close_arg {
	int fd;
	int rc;
};

static void *close_receiver(void *p)
{
	struct close_arg *a = p;
	uint64_t n;

	a->rc = recv_num(a->fd, DVK_ANY, 0, 0, SOON, &n, NULL);
	return NULL;
}

static void t_close_wakes_waiters(void)
{
	uint32_t dc = dc_new(4);
	struct close_arg a = { .fd = ep_open(dc, 0, NULL), .rc = 1 };
	pthread_t th;
	pid_t pid;
	int status;

	CHECK(pthread_create(&th, NULL, close_receiver, &a) == 0);
	WAIT_EP(dc, 0, "receivers", 1);
	/* A child sharing the file closes its copy: the parent's receive keeps waiting. */
	pid = fork();
	if (!pid) {
		close(a.fd);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	WAIT_EP(dc, 0, "receivers", 1);
	CHECK_EQ(a.rc, 1);
	/* The process itself closes it: the waiting thread stops at once with EBADF. */
	CHECK(close(a.fd) == 0);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK_RC(a.rc, -EBADF);
}

static const struct test_case cases[] = {
	T(t_version, "VERSION reports the ABI, features and the module parameters"),
	T(t_unknown_ioctl, "unknown numbers, sizes, directions and magics fail with ENOTTY"),
	T(t_efault_null, "a NULL argument fails with EFAULT for every ioctl"),
	T(t_efault_bad_pointers, "unmapped, kernel and straddling arguments fail with EFAULT"),
	T(t_efault_payloads, "bad payload pointers fail with EFAULT and send nothing"),
	T(t_reserved_dc_bind, "reserved fields of DC_CREATE and BIND must be zero"),
	T(t_reserved_calls, "reserved fields of SEND, RECEIVE, SENDREC, NOTIFY must be zero"),
	T(t_reserved_reply, "reserved fields and flags of REPLY and REPLY_RECEIVE are checked"),
	T(t_unknown_flags, "undefined flags and kernel-set message fields fail with EINVAL"),
	T(t_dc_create_destroy, "DC create and destroy; the id and name are reusable"),
	T(t_dc_eperm, "DC management needs the capability; VERSION and BIND do not"),
	T(t_dc_eexist, "a DC id or name in use fails with EEXIST"),
	T(t_dc_names, "DC names: 1..63 characters of [A-Za-z0-9_.-], zero-filled"),
	T(t_dc_slots, "DC slots run from 1 to DVK_SLOTS_MAX"),
	T(t_dc_ebusy, "destroying a DC with a bound endpoint fails with EBUSY; after close it works"),
	T(t_dc_enoent, "destroying or binding in an unknown DC fails with ENOENT"),
	T(t_bind_generations, "rebinding a number gives generations 1, 2, 3"),
	T(t_bind_by_name, "BIND by name reports the DC id; an unknown name is ENOENT"),
	T(t_bind_eaddrinuse, "binding a bound endpoint fails with EADDRINUSE"),
	T(t_bind_eisconn, "binding a bound file again fails with EISCONN"),
	T(t_bind_einval, "binding outside 0..slots-1 or DVK_ANY fails with EINVAL"),
	T(t_bind_enoent, "binding in an unknown DC fails with ENOENT"),
	T(t_enotconn, "calls on an unbound file fail with ENOTCONN"),
	T(t_close_wakes_waiters, "close() by the process wakes its thread waiting on the file with EBADF"),
	T(t_payload_empty, "an empty payload round-trips, even without a buffer"),
	T(t_payload_max, "a payload of exactly max_payload bytes round-trips byte-exact"),
	T(t_payload_too_big, "a payload above max_payload fails with EMSGSIZE"),
	T(t_types, "types INT32_MIN..INT32_MAX round-trip with source and no flags"),
	T(t_source_generation, "the source generation is reported; 0 means current"),
	T(t_send_self, "an endpoint can send to itself"),
	T(t_fifo_one_sender, "5000 messages from another process arrive in order", .timeout_s = 60),
	T(t_fifo_two_senders, "two concurrent sender processes each arrive in order", .timeout_s = 60),
	T(t_receive_from, "receive(from) takes only that source and leaves others in order"),
	T(t_receive_from_generation, "receive(from, gen) of a gone incarnation: ENOENT once drained"),
	T(t_receive_nonblock, "a NONBLOCK receive on an empty queue fails with EAGAIN at once"),
	T(t_deadline_past, "a past deadline fails with ETIMEDOUT only where the call would wait"),
	T(t_deadline_50ms, "a deadline 50 ms ahead expires with ETIMEDOUT after 50 ms"),
	T(t_receive_too_small, "a small buffer fails with EMSGSIZE and the needed size; it stays"),
	T(t_receive_efault, "a bad receive buffer fails with EFAULT and the message stays"),
	T(t_receive_reuse, "a receive reads only payload and size of its msg: one struct reused"),
	T(t_send_enoent, "sending to an unbound endpoint or a stale generation fails with ENOENT"),
	T(t_receive_wakes, "a send wakes a receive waiting in another process"),
	T(t_receivers_in_order, "waiting receives are served in call order"),
	T(t_receivers_filters, "a message goes to the first waiting receive whose filter fits"),
	T(t_queue_full, "queue_length messages fill a queue; the next NONBLOCK send is EAGAIN"),
	T(t_held_send_completes, "a held send completes when the receiver takes one, in order"),
	T(t_held_send_timeout, "a held send that times out is never delivered"),
	T(t_held_send_killed, "a held sender killed with SIGKILL is never delivered"),
	T(t_held_taken_by_from, "receive(from X) takes X's message held behind a full queue"),
	T(t_waiting_from_full_queue, "a waiting receive(from X) gets X's send despite a full queue"),
	T(t_held_destination_gone, "a held send gets ESRCH when the destination unbinds"),
	T(t_sendrec_roundtrip, "sendrec: request and reply carry flags, ids, sources, payloads"),
	T(t_sendrec_empty_reply, "an empty reply arrives as an empty payload"),
	T(t_sendrec_plain_kept, "a plain message during a sendrec stays queued"),
	T(t_sendrec_many_clients, "a REPLY_RECEIVE server answers 4 client processes x 250", .timeout_s = 60),
	T(t_reply_twice, "a second reply fails with EINVAL"),
	T(t_reply_invalid, "replies to plain, made-up or others' requests fail with EINVAL"),
	T(t_sendrec_timeout_queued, "a sendrec timing out while queued is withdrawn"),
	T(t_sendrec_timeout_held, "a sendrec timing out while held is withdrawn"),
	T(t_sendrec_timeout_received, "a late reply succeeds, is dropped, and is never received"),
	T(t_server_dies_holding, "the server killed holding a request: the caller gets ESRCH"),
	T(t_server_dies_queued, "the server killed with requests queued or held: callers get ESRCH"),
	T(t_client_dies_received, "the caller killed after the server took it: reply returns 0"),
	T(t_client_dies_queued, "the caller killed while queued: the request is withdrawn"),
	T(t_reply_receive_loop, "REPLY_RECEIVE serves 100 requests, one call each"),
	T(t_reply_receive_bad_reply, "REPLY_RECEIVE with a bad reply receives nothing"),
	T(t_sendrec_enoent, "sendrec to an unbound or stale destination fails with ENOENT"),
	T(t_sendrec_reuse, "a sendrec reads only payload and size of its reply: one struct reused"),
	T(t_sendrec_threads, "four threads in sendrec on one file get their own replies"),
	T(t_eintr_receive, "a signal without SA_RESTART: RECEIVE fails with EINTR, took nothing"),
	T(t_restart_receive, "a signal with SA_RESTART: RECEIVE restarts and completes"),
	T(t_eintr_send, "a signal without SA_RESTART: a held SEND fails with EINTR, unqueued"),
	T(t_restart_send, "a signal with SA_RESTART: a held SEND restarts and is delivered once"),
	T(t_eintr_sendrec_queued, "EINTR before the server took the request: withdrawn, not kept"),
	T(t_restart_sendrec_queued, "SA_RESTART before the server took it: served once"),
	T(t_restart_sendrec_received, "SA_RESTART after the server took it: reply, served once"),
	T(t_eintr_sendrec_resume, "EINTR after the server took it: RESUME gets the reply"),
	T(t_parked_poll, "a kept call's reply makes the file readable"),
	T(t_parked_max, "beyond DVK_PARKED_MAX kept calls the oldest is given up"),
	T(t_notify_coalesce, "notify bits OR into one notification per source"),
	T(t_notify_before_messages, "notifications are received before queued messages"),
	T(t_notify_full_queue, "notify never blocks on a full queue"),
	T(t_notify_bits, "bits 0 fail with EINVAL; all 32 bits are accepted"),
	T(t_notify_sources, "notifications of separate sources and incarnations are not merged"),
	T(t_notify_dead_notifier, "what a killed process notified and sent is still delivered"),
	T(t_notify_wakes, "a notification wakes a waiting receive"),
	T(t_notify_from, "receive(from) takes only that source's notification"),
	T(t_notify_filtered_wait, "a filtered waiting receive ignores other sources' notifications"),
	T(t_notify_enoent, "notify to an unbound or stale destination fails with ENOENT"),
	T(t_poll, "poll: POLLIN after a send or notify, not when empty or drained"),
	T(t_poll_wakes, "poll in another process wakes on a send"),
	T(t_kill_blocked_receive, "a process killed in RECEIVE unbinds; senders get ENOENT"),
	T(t_from_incarnation_gone, "a receive waiting for an incarnation that unbinds gets ESRCH"),
	T(t_from_number_waits, "a receive waiting for a number survives its rebinding"),
	T(t_unbind_discards, "unbinding frees the endpoint's messages and notifications"),
	T(t_many_in_flight, "8 client processes x 1000 sendrecs against one server", .timeout_s = 120),
};
#define N_CASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(int argc, char **argv)
{
	struct dvk_version v;
	char header[200];
	struct dvk_stats s;

	if (!harness_probe(&v, &s))
		return 1;
	max_payload = param_read("max_payload", v.max_payload);
	queue_length = param_read("queue_length", v.queue_length);
	queue_bytes = param_read("queue_bytes", v.queue_bytes);
	snprintf(header, sizeof(header), "max_payload %u, queue_length %u, queue_bytes %u",
		 max_payload, queue_length, queue_bytes);
	return run_cases(cases, N_CASES, argc, argv, header);
}
