/* mode=net-blast: the frame generator.  Sends count= frames (or for
 * seconds=) of size= bytes to dst= (or to peer=, resolved by ARP), every TX
 * buffer pre-built once and only its sequence number rewritten, one publish
 * per refill round.  Timed with the TSC from the first publish to the last
 * buffer the device gives back; then END frames tell the receiver the total. */
#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "modes.h"
#include "netmode.h"

static struct net_dev dev;

/* Keeps the RX ring from filling (answering ARP, dropping the rest). */
static void drain_rx(struct net_host *host)
{
	struct net_event ev;
	uint16_t id;
	uint8_t *frame;
	uint32_t len;
	bool any = false;

	while (net_rx_poll(&dev, &id, &frame, &len)) {
		net_host_input(host, frame, len, &ev);
		net_rx_release(&dev, id);
		any = true;
	}
	if (any)
		net_rx_publish(&dev);
}

enum guest_status mode_net_blast(void)
{
	struct net_host host;
	uint64_t size, count, seconds, end, timeout_ms, sent = 0, start, deadline, last_progress, stop;
	uint32_t peer;
	bool has_peer, has_dst, timed;
	uint8_t dst[6];
	char mac_text[18];
	enum guest_status st;

	if (!cmdline_u64("size", 64, &size) || !cmdline_u64("count", 0, &count) ||
	    !cmdline_u64("seconds", 0, &seconds) || !cmdline_u64("end", 1, &end) ||
	    !cmdline_u64("timeout_ms", 5000, &timeout_ms) || !cmdline_ipv4("peer", &peer, &has_peer) ||
	    !cmdline_mac("dst", dst, &has_dst))
		return STATUS_BAD_CMDLINE;
	if (size < BLAST_MIN_FRAME || size > NET_FRAME_MAX || (!has_dst && !has_peer)) {
		console_printf("VDFS-GUEST ERROR net-blast needs dst= (or peer= with ip=) and size= %u..%u\n",
			       BLAST_MIN_FRAME, NET_FRAME_MAX);
		return STATUS_BAD_CMDLINE;
	}
	if (!clock_known()) {
		console_write("VDFS-GUEST ERROR net-blast needs tsc_khz= (the host's TSC rate)\n");
		return STATUS_BAD_CMDLINE;
	}
	if (!count && !seconds)
		seconds = 5;
	timed = count == 0;
	st = net_mode_start(&dev, &host, has_peer && !has_dst);
	if (st != STATUS_PASS)
		return st;
	if (!has_dst && !net_resolve(&host, peer, timeout_ms, dst)) {
		console_write("VDFS-GUEST ERROR peer= did not answer ARP\n");
		return STATUS_TEST_FAILED;
	}
	for (uint16_t id = 0; id < dev.tx.size; id++)
		blast_build(net_tx_frame(&dev, id), dst, dev.mac, (uint32_t)size, BLAST_KIND_DATA, 0, 0);

	start = last_progress = rdtsc();
	deadline = start + clock_ticks_from_ms(seconds * 1000);
	for (;;) {
		uint64_t now = rdtsc();
		bool more = timed ? now < deadline : sent < count;
		uint16_t before = dev.tx_free_count, id;
		uint8_t *frame;

		net_tx_reclaim(&dev);
		if (dev.tx_free_count != before)
			last_progress = now;
		if (!more && dev.tx_free_count == dev.tx.size)
			break;
		if (now - last_progress > clock_ticks_from_ms(timeout_ms)) {
			console_printf("VDFS-GUEST ERROR the device took no frame for %lu ms\n", timeout_ms);
			return STATUS_TEST_FAILED;
		}
		while (more && (frame = net_tx_buffer(&dev, &id))) {
			blast_set_seq(frame, sent);
			net_tx_queue(&dev, id, (uint32_t)size);
			sent++;
			more = timed || sent < count;
		}
		net_tx_publish(&dev);
		drain_rx(&host);
	}
	stop = rdtsc();
	format_mac(mac_text, dst);
	console_printf("RESULT mode=net-blast dst=%s size=%lu ", mac_text, size);
	print_rate(sent, sent * size, stop - start);
	console_printf(" kicks=%lu\n", dev.tx.kicks);
	if (end)
		blast_send_end(&host, dst, sent);
	return STATUS_PASS;
}
