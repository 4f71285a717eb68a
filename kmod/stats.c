// SPDX-License-Identifier: GPL-2.0
/*
 * Counters and state readable without a debugger:
 *   /proc/dvk/stats      live object counts ("name value" lines); all 0 once every file is
 *                        closed and every DC destroyed, which is what leak tests check.
 *   /proc/dvk/dcs        one line per DC: id, name, slots, bound endpoints.
 *   /proc/dvk/endpoints  one line per bound endpoint with its queue depths and counters.
 */
#include <linux/list.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

#include "dvk.h"

struct dvk_stats dvk_stats;

static struct proc_dir_entry *dvk_proc_dir;

static int stats_show(struct seq_file *s, void *unused)
{
	seq_printf(s, "dcs %ld\n", atomic_long_read(&dvk_stats.dcs));
	seq_printf(s, "endpoints %ld\n", atomic_long_read(&dvk_stats.endpoints));
	seq_printf(s, "files %ld\n", atomic_long_read(&dvk_stats.files));
	seq_printf(s, "messages %ld\n", atomic_long_read(&dvk_stats.messages));
	seq_printf(s, "calls %ld\n", atomic_long_read(&dvk_stats.calls));
	seq_printf(s, "notes %ld\n", atomic_long_read(&dvk_stats.notes));
	seq_printf(s, "bytes %ld\n", atomic_long_read(&dvk_stats.bytes));
	seq_printf(s, "remotes %ld\n", atomic_long_read(&dvk_stats.remotes));
	return 0;
}

static int dcs_show(struct seq_file *s, void *unused)
{
	struct dvk_dc *dc;

	seq_puts(s, "id name slots bound queue_length queue_bytes\n");
	mutex_lock(&dvk_dcs_lock);
	list_for_each_entry(dc, &dvk_dcs, node) {
		spin_lock(&dc->lock);
		seq_printf(s, "%u %s %u %u %u %u\n", dc->id, dc->name, dc->slots, dc->nr_bound,
			   dc->queue_length, dc->queue_bytes);
		spin_unlock(&dc->lock);
	}
	mutex_unlock(&dvk_dcs_lock);
	return 0;
}

static unsigned int count(struct list_head *head)
{
	struct list_head *pos;
	unsigned int n = 0;

	list_for_each(pos, head)
		n++;
	return n;
}

static int endpoints_show(struct seq_file *s, void *unused)
{
	struct dvk_dc *dc;
	u32 i;

	seq_puts(s, "dc endpoint generation pid queued bytes held notes receivers owed calls "
		    "sent received replies replies_dropped notified node\n");
	mutex_lock(&dvk_dcs_lock);
	list_for_each_entry(dc, &dvk_dcs, node) {
		spin_lock(&dc->lock);
		for (i = 0; i < dc->slots; i++) {
			struct dvk_endpoint *ep = dc->bound[i];

			if (!ep)
				continue;
			/*
			 * The pid as the reader's pid namespace sees it (0: not visible there, or a
			 * remote endpoint); node: where a remote endpoint lives, -1 for local ones.
			 */
			seq_printf(s,
				   "%u %u %u %d %u %u %u %u %u %u %u %llu %llu %llu %llu %llu %lld\n",
				   dc->id, ep->nr, ep->gen, pid_vnr(ep->pid), ep->queued,
				   ep->queued_bytes,
				   count(&ep->held), count(&ep->notes), count(&ep->receivers),
				   count(&ep->owed), count(&ep->calls), ep->sent, ep->received,
				   ep->replies, ep->replies_dropped, ep->notified,
				   ep->remote_of ? (long long)ep->node : -1LL);
		}
		spin_unlock(&dc->lock);
	}
	mutex_unlock(&dvk_dcs_lock);
	return 0;
}

int dvk_stats_init(void)
{
	dvk_proc_dir = proc_mkdir("dvk", NULL);
	if (!dvk_proc_dir)
		return -ENOMEM;
	if (!proc_create_single("stats", 0444, dvk_proc_dir, stats_show) ||
	    !proc_create_single("dcs", 0444, dvk_proc_dir, dcs_show) ||
	    !proc_create_single("endpoints", 0444, dvk_proc_dir, endpoints_show)) {
		proc_remove(dvk_proc_dir);
		return -ENOMEM;
	}
	return 0;
}

void dvk_stats_exit(void)
{
	proc_remove(dvk_proc_dir);
}
