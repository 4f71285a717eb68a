// SPDX-License-Identifier: GPL-2.0
/*
 * dvk.ko: endpoint IPC for DVK, the distributed virtualization kernel for services.
 * Module parameters, and bringing the parts up and down in order.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>

#include "dvk.h"

unsigned int dvk_max_payload = 65536;
module_param_named(max_payload, dvk_max_payload, uint, 0444);
MODULE_PARM_DESC(max_payload, "Largest message payload in bytes (64 KiB to 16 MiB)");

unsigned int dvk_queue_length = 64;
module_param_named(queue_length, dvk_queue_length, uint, 0444);
MODULE_PARM_DESC(queue_length, "Messages an endpoint queues before senders wait (1 to 65536)");

unsigned int dvk_queue_bytes = 4 << 20;
module_param_named(queue_bytes, dvk_queue_bytes, uint, 0444);
MODULE_PARM_DESC(queue_bytes, "Payload bytes an endpoint queues before senders wait (at least 1)");

#define DVK_PAYLOAD_LIMIT (16U << 20)

static int __init dvk_init(void)
{
	int ret;

	if (dvk_max_payload < 65536 || dvk_max_payload > DVK_PAYLOAD_LIMIT ||
	    dvk_queue_length < 1 || dvk_queue_length > 65536 || dvk_queue_bytes < 1) {
		pr_err("bad parameters: max_payload %u, queue_length %u, queue_bytes %u\n",
		       dvk_max_payload, dvk_queue_length, dvk_queue_bytes);
		return -EINVAL;
	}
	ret = dvk_stats_init();
	if (ret)
		goto err;
	ret = dvk_chardev_init();
	if (ret)
		goto err_stats;
	return 0;

err_stats:
	dvk_stats_exit();
err:
	return ret;
}

static void __exit dvk_exit(void)
{
	dvk_chardev_exit();
	dvk_dc_destroy_all();
	dvk_stats_exit();
}

module_init(dvk_init);
module_exit(dvk_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DVK endpoint IPC");
MODULE_AUTHOR("The DVK authors");
