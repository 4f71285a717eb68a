// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dvk: the misc device, its file operations and the ioctl dispatch. Arguments are copied
 * in and checked here (reserved fields, flags, sizes); ipc.c and dc.c get them validated.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "dvk.h"

static int dvk_open(struct inode *inode, struct file *file)
{
	struct dvk_endpoint *ep = kzalloc(sizeof(*ep), GFP_KERNEL_ACCOUNT);

	if (!ep)
		return -ENOMEM;
	dvk_endpoint_init(ep);
	file->private_data = ep;
	atomic_long_inc(&dvk_stats.files);
	return 0;
}

static int dvk_release(struct inode *inode, struct file *file)
{
	struct dvk_endpoint *ep = file->private_data;

	struct dvk_dc *dc = ep->dc;

	if (ep->proxy)
		dvk_proxy_detach(ep);
	dvk_unbind(ep, -ESRCH);
	/* After dvk_unbind: the report follows every record the endpoint queued for the proxy. */
	if (dc)
		dvk_proxy_unbound(ep, dc->id);
	put_pid(ep->pid);
	kfree(ep);
	atomic_long_dec(&dvk_stats.files);
	return 0;
}

static int dvk_flush_file(struct file *file, fl_owner_t id)
{
	dvk_flush(file->private_data, id);
	return 0;
}

static __poll_t dvk_poll(struct file *file, poll_table *wait)
{
	struct dvk_endpoint *ep = file->private_data;

	poll_wait(file, &ep->wait, wait);
	return dvk_poll_mask(ep);
}

static bool may_manage(void)
{
	/* Without audit first, so that a holder of CAP_NET_ADMIN alone logs no denial. */
	return ns_capable_noaudit(&init_user_ns, CAP_SYS_ADMIN) || capable(CAP_NET_ADMIN);
}

static bool deadline_valid(u64 deadline_ns)
{
	return deadline_ns <= KTIME_MAX;
}

/* An out-going message: flags, request id and bits are the kernel's to set. */
static bool outgoing_valid(const struct dvk_msg *msg)
{
	return !msg->flags && !msg->bits && msg->peer != DVK_ANY;
}

static bool receive_valid(const struct dvk_receive *r)
{
	return !(r->flags & ~DVK_CALL_NONBLOCK) && !r->reserved && deadline_valid(r->deadline_ns) &&
	       (r->from != DVK_ANY || !r->from_gen);
}

static bool reply_valid(const struct dvk_reply *r)
{
	return !r->reserved && !r->msg.flags && !r->msg.bits && r->msg.peer != DVK_ANY &&
	       r->msg.peer_gen;
}

static bool submit_valid(const struct dvk_submit *s)
{
	static const struct dvk_msg none;

	if (s->reserved || (s->flags && (s->op != DVK_OP_SEND || s->flags & ~DVK_CALL_NONBLOCK)))
		return false;
	switch (s->op) {
	case DVK_OP_NOTIFY:
		return !s->from && !s->from_gen && s->msg.bits && s->msg.peer != DVK_ANY &&
		       !s->msg.type && !s->msg.flags && !s->msg.request_id && !s->msg.payload &&
		       !s->msg.size;
	case DVK_OP_SEND:
	case DVK_OP_SENDREC:
		return !s->from && !s->from_gen && outgoing_valid(&s->msg) && !s->msg.request_id;
	case DVK_OP_RECEIVE:
		return (s->from != DVK_ANY || !s->from_gen) && !memcmp(&s->msg, &none, sizeof(none));
	}
	return false;
}

static bool sendrec_valid(const struct dvk_sendrec *s)
{
	if (s->flags & ~DVK_CALL_RESUME || s->reserved || !deadline_valid(s->deadline_ns))
		return false;
	if (s->flags & DVK_CALL_RESUME)
		return s->call != 0;
	return !s->call && outgoing_valid(&s->request) && !s->request.request_id;
}

static long ioctl_version(void __user *uarg)
{
	struct dvk_version v = {
		.abi = DVK_ABI_VERSION,
		.max_payload = dvk_max_payload,
		.features = DVK_FEATURE_IPC | DVK_FEATURE_REPLY_RECEIVE | DVK_FEATURE_PROXY |
			    DVK_FEATURE_ASYNC | DVK_FEATURE_CLAIMS | DVK_FEATURE_VERDICTS,
		.queue_length = dvk_queue_length,
		.queue_bytes = dvk_queue_bytes,
	};

	return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long ioctl_dc(unsigned int cmd, void __user *uarg)
{
	struct dvk_dc_config config;
	u32 id;

	if (!may_manage())
		return -EPERM;
	if (cmd == DVK_IOC_DC_DESTROY) {
		if (get_user(id, (u32 __user *)uarg))
			return -EFAULT;
		return dvk_dc_destroy(id);
	}
	if (copy_from_user(&config, uarg, sizeof(config)))
		return -EFAULT;
	return dvk_dc_create(&config);
}

static long ioctl_bind(struct dvk_endpoint *ep, void __user *uarg)
{
	struct dvk_bind args;
	int ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	ret = dvk_bind(ep, &args);
	if (ret)
		return ret;
	/* Bound even if the result cannot be written back: closing the file unbinds. */
	return copy_to_user(uarg, &args, sizeof(args)) ? -EFAULT : 0;
}

/* The calls an endpoint makes once bound. */
static long ioctl_ipc(struct dvk_endpoint *ep, unsigned int cmd, void __user *uarg)
{
	union {
		struct dvk_send send;
		struct dvk_receive receive;
		struct dvk_sendrec sendrec;
		struct dvk_reply reply;
		struct dvk_reply_receive reply_receive;
		struct dvk_notify notify;
		struct dvk_submit submit;
		struct dvk_reap reap;
		struct dvk_cancel cancel;
	} a;
	int ret;

	if (copy_from_user(&a, uarg, _IOC_SIZE(cmd)))
		return -EFAULT;
	switch (cmd) {
	case DVK_IOC_SUBMIT:
		if (!submit_valid(&a.submit))
			return -EINVAL;
		ret = dvk_submit(ep, &a.submit);
		if (!ret && put_user(a.submit.token, &((struct dvk_submit __user *)uarg)->token))
			return -EFAULT;	/* the call runs; its completion names the token */
		return ret;
	case DVK_IOC_REAP:
		if (a.reap.reserved)
			return -EINVAL;
		ret = dvk_reap(ep, &a.reap, uarg);
		if (ret == -EMSGSIZE && put_user(a.reap.size, &((struct dvk_reap __user *)uarg)->size))
			return -EFAULT;
		return ret;
	case DVK_IOC_CANCEL:
		if (a.cancel.reserved)
			return -EINVAL;
		return dvk_cancel(ep, &a.cancel);
	case DVK_IOC_SEND:
		if (a.send.flags & ~DVK_CALL_NONBLOCK || a.send.reserved ||
		    !deadline_valid(a.send.deadline_ns) || !outgoing_valid(&a.send.msg) ||
		    a.send.msg.request_id)
			return -EINVAL;
		return dvk_send(ep, &a.send);
	case DVK_IOC_RECEIVE:
		if (!receive_valid(&a.receive))
			return -EINVAL;
		return dvk_receive(ep, &a.receive, uarg);
	case DVK_IOC_SENDREC:
		if (!sendrec_valid(&a.sendrec))
			return -EINVAL;
		return dvk_sendrec(ep, &a.sendrec, uarg);
	case DVK_IOC_REPLY:
		if (!reply_valid(&a.reply))
			return -EINVAL;
		return dvk_reply(ep, &a.reply);
	case DVK_IOC_REPLY_RECEIVE:
		if (!reply_valid(&a.reply_receive.reply) || !receive_valid(&a.reply_receive.receive))
			return -EINVAL;
		return dvk_reply_receive(ep, &a.reply_receive, uarg);
	case DVK_IOC_NOTIFY:
		if (!a.notify.bits || a.notify.reserved || a.notify.peer == DVK_ANY)
			return -EINVAL;
		return dvk_notify(ep, &a.notify);
	}
	return -ENOTTY;
}

/* The proxy's calls; only on the file attached as the proxy. */
static long ioctl_proxy(struct dvk_endpoint *ep, unsigned int cmd, void __user *uarg)
{
	struct dvk_proxy *px = smp_load_acquire(&ep->proxy);
	union {
		struct dvk_remote remote;
		struct dvk_proxy_batch batch;
	} a;
	int ret;

	if (!px)
		return -EPERM;
	if (copy_from_user(&a, uarg, _IOC_SIZE(cmd)))
		return -EFAULT;
	switch (cmd) {
	case DVK_IOC_REMOTE_ADD:
		return dvk_remote_add(px, &a.remote);
	case DVK_IOC_REMOTE_DEL:
		return dvk_remote_del(px, &a.remote);
	case DVK_IOC_PROXY_DRAIN:
		ret = dvk_proxy_drain(px, &a.batch);
		break;
	case DVK_IOC_PROXY_INJECT:
		ret = dvk_proxy_inject(px, &a.batch);
		break;
	default:
		return -ENOTTY;
	}
	/* Drain reports the size it needs with EMSGSIZE; inject reports how far it got. */
	if ((!ret || ret == -EMSGSIZE) && copy_to_user(uarg, &a.batch, sizeof(a.batch)))
		return -EFAULT;
	return ret;
}

static long ioctl_attach(struct dvk_endpoint *ep, void __user *uarg)
{
	struct dvk_proxy_attach args;

	if (!may_manage())
		return -EPERM;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	return dvk_proxy_attach(ep, &args);
}

static long dvk_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct dvk_endpoint *ep = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case DVK_IOC_VERSION:
		return ioctl_version(uarg);
	case DVK_IOC_DC_CREATE:
	case DVK_IOC_DC_DESTROY:
		return ioctl_dc(cmd, uarg);
	case DVK_IOC_BIND:
		return ioctl_bind(ep, uarg);
	case DVK_IOC_SEND:
	case DVK_IOC_RECEIVE:
	case DVK_IOC_SENDREC:
	case DVK_IOC_REPLY:
	case DVK_IOC_REPLY_RECEIVE:
	case DVK_IOC_NOTIFY:
	case DVK_IOC_SUBMIT:
	case DVK_IOC_REAP:
	case DVK_IOC_CANCEL:
		if (!dvk_ep_dc(ep))
			return -ENOTCONN;
		return ioctl_ipc(ep, cmd, uarg);
	case DVK_IOC_PROXY_ATTACH:
		return ioctl_attach(ep, uarg);
	case DVK_IOC_REMOTE_ADD:
	case DVK_IOC_REMOTE_DEL:
	case DVK_IOC_PROXY_DRAIN:
	case DVK_IOC_PROXY_INJECT:
		return ioctl_proxy(ep, cmd, uarg);
	}
	return -ENOTTY;
}

static const struct file_operations dvk_fops = {
	.owner = THIS_MODULE,
	.open = dvk_open,
	.flush = dvk_flush_file,
	.release = dvk_release,
	.poll = dvk_poll,
	.unlocked_ioctl = dvk_ioctl,
	/* Every argument has one layout for 32- and 64-bit callers. */
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice dvk_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dvk",
	.fops = &dvk_fops,
	/* Plain endpoints need no privilege; DC management checks capabilities itself. */
	.mode = 0666,
};

int dvk_chardev_init(void)
{
	return misc_register(&dvk_misc);
}

void dvk_chardev_exit(void)
{
	misc_deregister(&dvk_misc);
}
