// SPDX-License-Identifier: GPL-2.0
/*
 * The endpoint table: DCs, their slots and generations, and binding a file to an endpoint.
 */
#include <linux/ctype.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dvk.h"

DEFINE_MUTEX(dvk_dcs_lock);
LIST_HEAD(dvk_dcs);

/* 1..63 characters of [A-Za-z0-9_.-], NUL-terminated, and nothing but zeros after the NUL. */
bool dvk_name_valid(const char *name)
{
	size_t len = strnlen(name, DVK_NAME_MAX);
	size_t i;

	if (len == 0 || len == DVK_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		/* The kernel's isalnum() also accepts Latin-1 letters. */
		if (!(isascii(name[i]) && isalnum(name[i])) && name[i] != '_' && name[i] != '.' &&
		    name[i] != '-')
			return false;
	}
	for (; i < DVK_NAME_MAX; i++) {
		if (name[i])
			return false;
	}
	return true;
}

struct dvk_dc *dvk_dc_find(u32 id)
{
	struct dvk_dc *dc;

	lockdep_assert_held(&dvk_dcs_lock);
	list_for_each_entry(dc, &dvk_dcs, node) {
		if (dc->id == id)
			return dc;
	}
	return NULL;
}

static struct dvk_dc *find_by_name(const char *name)
{
	struct dvk_dc *dc;

	lockdep_assert_held(&dvk_dcs_lock);
	list_for_each_entry(dc, &dvk_dcs, node) {
		if (!strncmp(dc->name, name, DVK_NAME_MAX))
			return dc;
	}
	return NULL;
}

static void dc_free(struct dvk_dc *dc)
{
	kvfree(dc->bound);
	kvfree(dc->generation);
	kfree(dc);
}

int dvk_dc_create(const struct dvk_dc_config *config)
{
	struct dvk_dc *dc;
	int ret = 0;

	if (config->flags || config->reserved || !dvk_name_valid(config->name) ||
	    config->slots == 0 || config->slots > DVK_SLOTS_MAX || config->id == DVK_ANY ||
	    config->queue_length > 65536)
		return -EINVAL;
	dc = kzalloc(sizeof(*dc), GFP_KERNEL_ACCOUNT);
	if (!dc)
		return -ENOMEM;
	dc->id = config->id;
	dc->slots = config->slots;
	dc->queue_length = config->queue_length ?: dvk_queue_length;
	dc->queue_bytes = config->queue_bytes ?: dvk_queue_bytes;
	memcpy(dc->name, config->name, DVK_NAME_MAX);
	spin_lock_init(&dc->lock);
	dc->bound = kvcalloc(dc->slots, sizeof(*dc->bound), GFP_KERNEL_ACCOUNT);
	dc->generation = kvcalloc(dc->slots, sizeof(*dc->generation), GFP_KERNEL_ACCOUNT);
	if (!dc->bound || !dc->generation) {
		dc_free(dc);
		return -ENOMEM;
	}

	mutex_lock(&dvk_dcs_lock);
	if (dvk_dc_find(dc->id) || find_by_name(dc->name))
		ret = -EEXIST;
	else
		list_add_tail(&dc->node, &dvk_dcs);
	mutex_unlock(&dvk_dcs_lock);
	if (ret) {
		dc_free(dc);
		return ret;
	}
	atomic_long_inc(&dvk_stats.dcs);
	return 0;
}

int dvk_dc_destroy(u32 id)
{
	struct dvk_dc *dc;
	int ret = 0;

	mutex_lock(&dvk_dcs_lock);
	dc = dvk_dc_find(id);
	if (!dc) {
		ret = -ENOENT;
	} else {
		spin_lock(&dc->lock);
		if (dc->nr_bound)
			ret = -EBUSY;
		spin_unlock(&dc->lock);
		if (!ret)
			list_del(&dc->node);
	}
	mutex_unlock(&dvk_dcs_lock);
	if (ret)
		return ret;
	dc_free(dc);
	atomic_long_dec(&dvk_stats.dcs);
	return 0;
}

/* Module exit: no file is open, so nothing is bound. */
void dvk_dc_destroy_all(void)
{
	struct dvk_dc *dc, *next;

	mutex_lock(&dvk_dcs_lock);
	list_for_each_entry_safe(dc, next, &dvk_dcs, node) {
		WARN_ON(dc->nr_bound);
		list_del(&dc->node);
		dc_free(dc);
		atomic_long_dec(&dvk_stats.dcs);
	}
	mutex_unlock(&dvk_dcs_lock);
}

int dvk_bind(struct dvk_endpoint *ep, struct dvk_bind *args)
{
	struct dvk_event *unbound, *claim;
	struct dvk_dc *dc;
	bool claiming = false;
	int ret = 0;

	if (args->flags & ~DVK_BIND_BY_NAME || args->generation || args->reserved[0] ||
	    args->reserved[1])
		return -EINVAL;
	if (args->flags & DVK_BIND_BY_NAME) {
		if (args->dc || !dvk_name_valid(args->dc_name))
			return -EINVAL;
	} else if (memchr_inv(args->dc_name, 0, DVK_NAME_MAX)) {
		return -EINVAL;
	}
	/* Allocated here so that neither a claim nor the unbind report can fail later. */
	unbound = kzalloc(sizeof(*unbound), GFP_KERNEL_ACCOUNT);
	claim = kzalloc(sizeof(*claim), GFP_KERNEL_ACCOUNT);
	if (!unbound || !claim) {
		ret = -ENOMEM;
		goto out_free;
	}

	mutex_lock(&ep->bind_lock);
	if (ep->dc || ep->proxy) {
		ret = -EISCONN;
		goto out;
	}
	mutex_lock(&dvk_dcs_lock);
	if (args->flags & DVK_BIND_BY_NAME)
		dc = find_by_name(args->dc_name);
	else
		dc = dvk_dc_find(args->dc);
	if (!dc) {
		ret = -ENOENT;
		goto out_dcs;
	}
	if (args->endpoint >= dc->slots) {
		ret = -EINVAL;
		goto out_dcs;
	}
	spin_lock(&dc->lock);
	if (dc->bound[args->endpoint]) {
		ret = -EADDRINUSE;
	} else {
		u32 *gen = &dc->generation[args->endpoint];

		/* Generation 0 means "any": skip it when the counter wraps. */
		*gen = *gen == U32_MAX ? 1 : *gen + 1;
		ep->nr = args->endpoint;
		ep->gen = *gen;
		ep->pid = get_pid(task_tgid(current));
		/* Holding the slot keeps the number; a claiming endpoint is not reachable yet. */
		claiming = dvk_proxy_claims();
		ep->claiming = claiming;
		ep->claim_dc = dc;
		dc->bound[ep->nr] = ep;
		dc->nr_bound++;
	}
	spin_unlock(&dc->lock);
	if (claiming) {
		dvk_proxy_claim(ep, claim);
		claim = NULL;
	}
	mutex_unlock(&dvk_dcs_lock);
	if (claiming)
		ret = dvk_proxy_claim_wait(ep);
	if (ret && claiming) {
		put_pid(ep->pid);
		ep->pid = NULL;
	}
	if (!ret) {
		ep->unbound_event = unbound;
		unbound = NULL;
		/* IPC calls on other threads read dc without bind_lock: publish it last. */
		smp_store_release(&ep->dc, dc);
		atomic_long_inc(&dvk_stats.endpoints);
		args->dc = dc->id;
		args->generation = ep->gen;
	}
	goto out;
out_dcs:
	mutex_unlock(&dvk_dcs_lock);
out:
	mutex_unlock(&ep->bind_lock);
out_free:
	kfree(unbound);
	kfree(claim);
	return ret;
}
