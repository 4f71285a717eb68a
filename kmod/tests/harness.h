/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The test harness shared by uapi.c, proxy.c and async.c (stress.c has its own): files of
 * /dev/dvk, DCs, blocking calls, byte patterns, helper processes, pipes, signals, memory the
 * kernel cannot touch, and the runner that forks each case with a watchdog and checks that it
 * left nothing behind. Definitions are in harness.c, linked into each program.
 *
 * Each program defines `harness_config` (its DC name prefix, id range and queue length) and
 * its table of cases, and hands the table to run_cases() from main().
 */
#ifndef DVK_TESTS_HARNESS_H
#define DVK_TESTS_HARNESS_H

/* tap_failed is one variable of the program, defined in harness.c, not one per file. */
#define TAP_SHARED_STATE
#include "tap.h"

#include <signal.h>
#include <sys/types.h>

/* How long a call that should complete may wait: long, but never forever. */
#define LONG_MS 10000
#define SOON in_ms(LONG_MS)

/* ---- what differs between the programs; each defines harness_config ---- */

struct harness_config {
	const char *dc_prefix;	   /* DCs are named "<prefix>-<id>" */
	uint32_t dc_first;	   /* the first DC id of case 0 */
	uint32_t dcs_per_case;	   /* case i uses dc_first + dcs_per_case * i and up */
	uint32_t dc_queue_length;  /* the queue length dc_new() gives a DC; 0: the module's */
};

extern const struct harness_config harness_config;

/* The DC ids a case may use: dc_base .. dc_base + dcs_per_case - 1; the runner destroys them. */
extern uint32_t dc_base;
extern int dc_used;

/* ---- files of /dev/dvk, registered so that a forked helper can close the ones it must not hold ---- */

int dev_open(void);
void dev_close(int fd);

/* ---- DCs ---- */

int dc_ioctl(unsigned long cmd, void *arg);
void dc_name_of(uint32_t id, char name[DVK_NAME_MAX]);
int dc_create(uint32_t id, uint32_t slots);
int dc_destroy(uint32_t id);
uint32_t dc_id(void);
uint32_t dc_new(uint32_t slots);

/* ---- endpoints and calls; each returns 0 or -errno ---- */

int bind_rc(int fd, uint32_t dc, uint32_t ep, uint32_t *gen);
int ep_open(uint32_t dc, uint32_t ep, uint32_t *gen);
int msend(int fd, uint32_t dst, uint32_t gen, int32_t type, const void *p, uint32_t len,
	  uint32_t flags, uint64_t deadline);
int mrecv(int fd, uint32_t from, uint32_t from_gen, void *buf, uint32_t cap, uint32_t flags,
	  uint64_t deadline, struct dvk_msg *out);
void sendrec_init(struct dvk_sendrec *s, uint32_t dst, uint32_t gen, int32_t type,
		  const void *p, uint32_t len, void *rbuf, uint32_t rcap, uint64_t deadline);
int mnotify(int fd, uint32_t dst, uint32_t gen, uint32_t bits);
long long stat_now(const char *name);

/* ---- byte patterns ---- */

void pattern(void *buf, size_t len, unsigned seed);
bool is_pattern(const void *buf, size_t len, unsigned seed);
unsigned char *pattern_new(size_t len, unsigned seed);

/* ---- helper processes ---- */

typedef void (*child_fn)(void *arg);

pid_t spawn_keep(child_fn fn, void *arg, const int *keep, int nkeep);

#define SPAWN(fn, arg, ...)                                                               \
	spawn_keep(fn, arg, (const int[]){ -1, __VA_ARGS__ },                              \
		   (int)(sizeof((const int[]){ -1, __VA_ARGS__ }) / sizeof(int)))

bool reap_child(pid_t pid, int ms, int *status);

#define CHECK_CHILD(pid) check_child_at(__FILE__, __LINE__, pid)
void check_child_at(const char *file, int line, pid_t pid);
void kill_child(pid_t pid);
void drop_privileges(void);

/* ---- pipes to say "I got there" between processes ---- */

void pipe_new(int p[2]);
void put_byte(int fd, char c);
int get_byte(int fd, int ms);

#define EXPECT_BYTE(fd, c) CHECK_EQ(get_byte(fd, 3 * LONG_MS), c)

/* ---- waiting for a helper to sleep in a call ---- */

/*
 * Waits until thread `tid` of process `pid` (tid 0: the process) is in state `want` in its
 * stat file: 'S' sleeping interruptibly, 'D' killably. Helpers announce a call just before
 * they make it, so once they sleep they sleep in that call.
 */
bool wait_state_at(const char *file, int line, pid_t pid, pid_t tid, char want);

/* ---- signals for the interrupted-wait cases ---- */

extern volatile sig_atomic_t sig_count;
extern int sig_pipe_w; /* the handler writes 'S' here, so the parent knows it ran */

void catch_signal(int sig, bool restart);

/* ---- memory the kernel cannot touch ---- */

void *bad_page(void);
void *before_hole(size_t len);

/* An address user space can never own. */
#define KERNEL_ADDR ((void *)0xffff888000000000ull)

/* ---- the runner ---- */

struct test_case {
	void (*fn)(void);
	const char *name;
	int timeout_s; /* 0: 20 */
};

#define T(f, n, ...) { .fn = f, .name = n, __VA_ARGS__ }

/* Opens /dev/dvk for its version and reads /proc/dvk/stats; false after a "Bail out!" line. */
bool harness_probe(struct dvk_version *v, struct dvk_stats *s);

/*
 * Runs the cases selected by argv (all, or those whose name contains an argument), printing
 * the plan, then `header` as a diagnostic line, then one result line per case; returns main's
 * exit status.
 */
int run_cases(const struct test_case *cases, int n, int argc, char **argv, const char *header);

#endif /* DVK_TESTS_HARNESS_H */
