/* mode=net-responder: answers ARP and ICMP echo for ip=, and counts the
 * generator's frames (mode=net-blast in another guest), until an END frame
 * arrives or seconds= (default 30) pass. */
#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "modes.h"
#include "netmode.h"

static struct net_dev dev;

enum guest_status mode_net_responder(void)
{
	struct net_host host;
	struct net_event ev;
	uint64_t seconds, deadline, first = 0, last = 0, frames = 0, bytes = 0, total = 0;
	bool ended = false;
	enum guest_status st;

	if (!cmdline_u64("seconds", 30, &seconds))
		return STATUS_BAD_CMDLINE;
	st = net_mode_start(&dev, &host, true);
	if (st != STATUS_PASS)
		return st;
	deadline = rdtsc() + clock_ticks_from_ms(seconds * 1000);
	while (!ended) {
		uint16_t id;
		uint8_t *frame;
		uint32_t len;
		bool any = false;

		while (net_rx_poll(&dev, &id, &frame, &len)) {
			net_host_input(&host, frame, len, &ev);
			net_rx_release(&dev, id);
			any = true;
			if (ev.kind != NET_EV_BLAST)
				continue;
			if (ev.blast_kind == BLAST_KIND_DATA) {
				last = rdtsc();
				if (!frames)
					first = last;
				frames++;
				bytes += len;
			} else if (ev.blast_kind == BLAST_KIND_END) {
				total = ev.blast_total;
				ended = true;
				break;
			}
		}
		if (any)
			net_rx_publish(&dev);
		else if (rdtsc() > deadline)
			break;
		net_tx_reclaim(&dev);
	}
	console_printf("RESULT mode=net-responder arp_requests=%lu arp_replies=%lu echo_requests=%lu "
		       "echo_replies=%lu rx_frames=%lu rx_bad=%lu ignored=%lu ended=%s\n",
		       host.arp_requests, host.arp_replies_sent, host.echo_requests, host.echo_replies_sent,
		       dev.rx_frames, dev.rx_bad, host.ignored, ended ? "end-frame" : "timeout");
	if (frames || total) {
		console_write("RESULT blast_rx ");
		print_rate(frames, bytes, last - first);
		console_printf(" sender_total=%lu lost=%lu\n", total, total > frames ? total - frames : 0);
	}
	return STATUS_PASS;
}
