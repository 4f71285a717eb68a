// SPDX-License-Identifier: GPL-2.0
/*
 * The test harness shared by uapi.c, proxy.c and async.c: see harness.h.
 */
#include "harness.h"

#include <grp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

volatile int tap_failed;

uint32_t dc_base;
int dc_used;

/* ====================================================================================== */
/* Files of /dev/dvk. Every one is registered so that a forked helper can close the ones it   */
/* must not hold: a process that keeps a copy of a file keeps its endpoint bound.             */
/* ====================================================================================== */

#define MAX_FDS 256
static int open_fds[MAX_FDS];
static int n_open_fds;

int dev_open(void)
{
	int fd = open(DVK_DEV, O_RDWR | O_CLOEXEC);

	REQUIRE(fd >= 0);
	REQUIRE(n_open_fds < MAX_FDS);
	open_fds[n_open_fds++] = fd;
	return fd;
}

void dev_close(int fd)
{
	for (int i = 0; i < n_open_fds; i++) {
		if (open_fds[i] == fd) {
			open_fds[i] = open_fds[--n_open_fds];
			break;
		}
	}
	CHECK(close(fd) == 0);
}

/* ====================================================================================== */
/* DCs                                                                                     */
/* ====================================================================================== */

/* A DC management ioctl on a file of its own, so that it never disturbs a bound one. */
int dc_ioctl(unsigned long cmd, void *arg)
{
	int fd = dev_open(), rc = dvk_ioctl(fd, cmd, arg);

	dev_close(fd);
	return rc;
}

void dc_name_of(uint32_t id, char name[DVK_NAME_MAX])
{
	memset(name, 0, DVK_NAME_MAX);
	snprintf(name, DVK_NAME_MAX, "%s-%u", harness_config.dc_prefix, id);
}

/* Creates DC `id` named after it, with the program's queue length (harness_config). */
int dc_create(uint32_t id, uint32_t slots)
{
	struct dvk_dc_config c = { .id = id, .slots = slots,
				   .queue_length = harness_config.dc_queue_length };

	dc_name_of(id, c.name);
	return dc_ioctl(DVK_IOC_DC_CREATE, &c);
}

int dc_destroy(uint32_t id)
{
	return dc_ioctl(DVK_IOC_DC_DESTROY, &id);
}

/* A fresh id from this case's range, not created. */
uint32_t dc_id(void)
{
	REQUIRE(dc_used < (int)harness_config.dcs_per_case);
	return dc_base + dc_used++;
}

/* A new DC with `slots` endpoints; the case ends if it cannot be created. */
uint32_t dc_new(uint32_t slots)
{
	uint32_t id = dc_id();
	int rc = dc_create(id, slots);

	if (rc) {
		tap_fail("creating DC %u with %u slots: %s", id, slots, errname(-rc));
		_exit(1);
	}
	return id;
}

/* ====================================================================================== */
/* Endpoints and calls; each returns 0 or -errno.                                         */
/* ====================================================================================== */

int bind_rc(int fd, uint32_t dc, uint32_t ep, uint32_t *gen)
{
	struct dvk_bind b = { .dc = dc, .endpoint = ep };
	int rc = dvk_ioctl(fd, DVK_IOC_BIND, &b);

	if (rc == 0 && gen)
		*gen = b.generation;
	return rc;
}

/* Opens a file and binds it to (dc, ep); the case ends if that fails. */
int ep_open(uint32_t dc, uint32_t ep, uint32_t *gen)
{
	int fd = dev_open(), rc = bind_rc(fd, dc, ep, gen);

	if (rc) {
		tap_fail("binding dc %u endpoint %u: %s", dc, ep, errname(-rc));
		_exit(1);
	}
	return fd;
}

int msend(int fd, uint32_t dst, uint32_t gen, int32_t type, const void *p, uint32_t len,
		 uint32_t flags, uint64_t deadline)
{
	struct dvk_send s = {
		.msg = { .peer = dst, .peer_gen = gen, .type = type,
			 .payload = (uintptr_t)p, .size = len },
		.deadline_ns = deadline,
		.flags = flags,
	};

	return dvk_ioctl(fd, DVK_IOC_SEND, &s);
}

/* Receives into buf/cap; the message (with size = its length) lands in *out if given. */
int mrecv(int fd, uint32_t from, uint32_t from_gen, void *buf, uint32_t cap,
		 uint32_t flags, uint64_t deadline, struct dvk_msg *out)
{
	struct dvk_receive r = {
		.from = from, .from_gen = from_gen, .deadline_ns = deadline, .flags = flags,
		.msg = { .payload = (uintptr_t)buf, .size = cap },
	};
	int rc = dvk_ioctl(fd, DVK_IOC_RECEIVE, &r);

	if (out)
		*out = r.msg;
	return rc;
}

void sendrec_init(struct dvk_sendrec *s, uint32_t dst, uint32_t gen, int32_t type,
			 const void *p, uint32_t len, void *rbuf, uint32_t rcap, uint64_t deadline)
{
	memset(s, 0, sizeof(*s));
	s->request = (struct dvk_msg){ .peer = dst, .peer_gen = gen, .type = type,
				       .payload = (uintptr_t)p, .size = len };
	s->reply = (struct dvk_msg){ .payload = (uintptr_t)rbuf, .size = rcap };
	s->deadline_ns = deadline;
}

int mnotify(int fd, uint32_t dst, uint32_t gen, uint32_t bits)
{
	struct dvk_notify n = { .peer = dst, .peer_gen = gen, .bits = bits };

	return dvk_ioctl(fd, DVK_IOC_NOTIFY, &n);
}

long long stat_now(const char *name)
{
	struct dvk_stats s;

	REQUIRE(stats_read(&s) == 0);
	return stats_get(&s, name);
}

/* A byte pattern that differs per position and per seed. */
void pattern(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed * 7 + (i >> 8));
}

bool is_pattern(const void *buf, size_t len, unsigned seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 31 + seed * 7 + (i >> 8)))
			return false;
	return true;
}

/* A malloc'd pattern of len bytes (never NULL, even for 0). */
unsigned char *pattern_new(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);

	REQUIRE(p);
	pattern(p, len, seed);
	return p;
}

/* ====================================================================================== */
/* Helper processes                                                                        */
/* ====================================================================================== */

/*
 * Forks a helper that runs fn(arg) and exits 0, or 1 if a check failed. It keeps the dvk
 * files listed in `keep` and closes every other one, so that its parent alone decides when
 * those endpoints unbind.
 */
pid_t spawn_keep(child_fn fn, void *arg, const int *keep, int nkeep)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid > 0)
		return pid;
	tap_failed = 0;
	for (int i = 0; i < n_open_fds;) {
		bool kept = false;

		for (int k = 0; k < nkeep; k++)
			kept |= keep[k] == open_fds[i];
		if (kept) {
			i++;
			continue;
		}
		close(open_fds[i]);
		open_fds[i] = open_fds[--n_open_fds];
	}
	fn(arg);
	_exit(tap_failed ? 1 : 0);
}

bool reap_child(pid_t pid, int ms, int *status)
{
	uint64_t end = in_ms(ms);

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return true;
		if (r < 0 || now_ns() > end)
			return false;
		sleep_ms(1);
	}
}

/* Waits for a helper and checks that it exited 0. */
void check_child_at(const char *file, int line, pid_t pid)
{
	int st = 0;

	if (!reap_child(pid, 3 * LONG_MS, &st)) {
		kill(pid, SIGKILL);
		reap_child(pid, LONG_MS, &st);
		tap_failed = 1;
		tap_diag_at(file, line, "helper %d did not finish; killed it", (int)pid);
	} else if (WIFSIGNALED(st)) {
		tap_failed = 1;
		tap_diag_at(file, line, "helper %d was killed by signal %d (%s)", (int)pid,
			    WTERMSIG(st), strsignal(WTERMSIG(st)));
	} else if (WEXITSTATUS(st) != 0) {
		tap_failed = 1;
		tap_diag_at(file, line, "helper %d failed (exit %d)", (int)pid, WEXITSTATUS(st));
	}
}

/* Kills a helper with SIGKILL and reaps it. */
void kill_child(pid_t pid)
{
	int st;

	CHECK(kill(pid, SIGKILL) == 0);
	CHECK(reap_child(pid, LONG_MS, &st));
}

void drop_privileges(void)
{
	REQUIRE(setgroups(0, NULL) == 0);
	REQUIRE(setgid(65534) == 0);
	REQUIRE(setuid(65534) == 0);
}

/* ---- pipes to say "I got there" between processes ---- */

void pipe_new(int p[2])
{
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
}

void put_byte(int fd, char c)
{
	CHECK(write(fd, &c, 1) == 1);
}

/* The next byte from fd, or -1 after `ms` milliseconds or at end of file. */
int get_byte(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, ms) != 1 || read(fd, &c, 1) != 1)
		return -1;
	return c;
}

/* ---- signals for the interrupted-wait cases ---- */

volatile sig_atomic_t sig_count;
int sig_pipe_w = -1;

static void on_signal(int sig)
{
	char c = 'S';

	(void)sig;
	sig_count++;
	if (sig_pipe_w >= 0 && write(sig_pipe_w, &c, 1) < 0)
		sig_count += 1000; /* visible as a wrong count */
}

/* Catches `sig` with on_signal, with or without SA_RESTART. */
void catch_signal(int sig, bool restart)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(sig, &sa, NULL) == 0);
}

/* ---- memory the kernel cannot touch ---- */

void *bad_page(void)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	REQUIRE(p != MAP_FAILED);
	return p;
}

/* `len` zeroed bytes that end exactly where an inaccessible page begins. */
void *before_hole(size_t len)
{
	size_t pages = (len + 4095) / 4096 + 1;
	char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	REQUIRE(p != MAP_FAILED);
	REQUIRE(mprotect(p + (pages - 1) * 4096, 4096, PROT_NONE) == 0);
	return p + (pages - 1) * 4096 - len;
}

/* ====================================================================================== */
/* The runner                                                                              */
/* ====================================================================================== */

/* Reaps whatever children are left (helpers of a case become ours: we are a subreaper). */
static void reap_all(int ms)
{
	uint64_t end = in_ms(ms);

	while (now_ns() < end) {
		pid_t r = waitpid(-1, NULL, WNOHANG);

		if (r < 0 && errno == ECHILD)
			return;
		if (r <= 0)
			sleep_ms(2);
	}
}

/* Destroys the case's DCs, waiting while their endpoints are still unbinding. */
static bool destroy_case_dcs(uint32_t base, char *why, size_t len)
{
	bool ok = true;

	for (uint32_t id = base; id < base + harness_config.dcs_per_case; id++) {
		uint64_t end = in_ms(3000);
		int rc;

		while ((rc = dc_destroy(id)) == -EBUSY && now_ns() < end)
			sleep_ms(5);
		if (rc != 0 && rc != -ENOENT) {
			snprintf(why, len, "destroying DC %u after the case: %s", id, errname(-rc));
			ok = false;
		}
	}
	return ok;
}

/* Runs one case in a process group of its own; true if it passed and left nothing behind. */
static bool run_case(int index, const struct test_case *c)
{
	int timeout = c->timeout_s ? c->timeout_s : 20, st = 0;
	uint32_t base = harness_config.dc_first + harness_config.dcs_per_case * index;
	struct dvk_stats before, after;
	char why[512];
	bool ok = true, exited;
	pid_t pid;

	REQUIRE(stats_read(&before) == 0);
	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGPIPE, SIG_IGN);
		alarm(timeout);
		dc_base = base;
		c->fn();
		_exit(tap_failed ? 1 : 0);
	}
	setpgid(pid, pid);
	exited = reap_child(pid, (timeout + 5) * 1000, &st);
	kill(-pid, SIGKILL);
	if (!exited) {
		tap_diag("timed out after %d s", timeout + 5);
		reap_child(pid, 5000, &st);
		ok = false;
	} else if (WIFSIGNALED(st)) {
		tap_diag("the case was killed by signal %d (%s)%s", WTERMSIG(st),
			 strsignal(WTERMSIG(st)), WTERMSIG(st) == SIGALRM ? ": its watchdog" : "");
		ok = false;
	} else if (WEXITSTATUS(st) != 0) {
		ok = false;
	}
	reap_all(5000);
	if (!destroy_case_dcs(base, why, sizeof(why))) {
		tap_diag("%s", why);
		ok = false;
	}
	/* Everything is closed and destroyed: every counter must be back where it was. */
	{
		uint64_t end = in_ms(3000);
		bool same;

		do {
			REQUIRE(stats_read(&after) == 0);
			same = stats_same(&before, &after, why, sizeof(why));
			if (!same)
				sleep_ms(5);
		} while (!same && now_ns() < end);
		if (!same) {
			tap_diag("counters not back after the case: %s", why);
			ok = false;
		}
	}
	return ok;
}

static bool selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (strstr(name, argv[i]))
			return true;
	return false;
}

bool harness_probe(struct dvk_version *v, struct dvk_stats *s)
{
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(DVK_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0 || dvk_ioctl(fd, DVK_IOC_VERSION, v) != 0 || stats_read(s) != 0) {
		printf("Bail out! %s or %s not usable: %s\n", DVK_DEV, DVK_STATS, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

int run_cases(const struct test_case *cases, int n, int argc, char **argv, const char *header)
{
	int planned = 0, number = 0, failed = 0;

	prctl(PR_SET_CHILD_SUBREAPER, 1);

	for (int i = 0; i < n; i++)
		planned += selected(cases[i].name, argc, argv);
	printf("1..%d\n", planned);
	printf("# %s\n", header);
	for (int i = 0; i < n; i++) {
		bool ok;

		if (!selected(cases[i].name, argc, argv))
			continue;
		ok = run_case(i, &cases[i]);
		failed += !ok;
		printf("%s %d - %s\n", ok ? "ok" : "not ok", ++number, cases[i].name);
	}
	if (failed)
		printf("# %d of %d failed\n", failed, planned);
	return failed ? 1 : 0;
}

/* ---- waiting for a helper to sleep in a call ---- */

bool wait_state_at(const char *file, int line, pid_t pid, pid_t tid, char want)
{
	uint64_t end = in_ms(5000);
	char path[96], buf[512], state = '?';

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	while (now_ns() < end) {
		FILE *f = fopen(path, "re");
		char *p;

		if (!f)
			break;
		p = fgets(buf, sizeof(buf), f);
		fclose(f);
		p = p ? strrchr(buf, ')') : NULL;
		if (p && p[1] == ' ')
			state = p[2];
		if (state == want)
			return true;
		sleep_ms(1);
	}
	tap_failed = 1;
	tap_diag_at(file, line, "process %d thread %d never reached state %c (state %c)", (int)pid,
		    (int)tid, want, state);
	return false;
}
