/* mode=net-ping: resolves peer= by ARP from ip=, sends count= ICMP echo
 * requests one at a time and times the replies with the TSC.  Answers ARP
 * and echo for its own address meanwhile. */
#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "modes.h"
#include "netmode.h"

#define ECHO_ID 0x5644
#define ECHO_PAYLOAD 56
#define REPLY_TIMEOUT_MS 1000

static struct net_dev dev;

enum guest_status mode_net_ping(void)
{
	struct net_host host;
	struct net_event want = { 0 }, got;
	uint64_t count, seconds, end, received = 0, rtt_sum = 0, rtt_min = ~0ull, rtt_max = 0, start;
	uint64_t arp_us;
	uint32_t peer;
	bool has_peer;
	uint8_t peer_mac[6];
	char mac_text[18], ip_text[16];
	enum guest_status st;

	if (!cmdline_u64("count", 3, &count) || !cmdline_u64("seconds", 10, &seconds) ||
	    !cmdline_u64("end", 1, &end) || !cmdline_ipv4("peer", &peer, &has_peer))
		return STATUS_BAD_CMDLINE;
	if (!has_peer || !count || count > 65535) {
		console_write("VDFS-GUEST ERROR net-ping needs peer= and count= 1..65535\n");
		return STATUS_BAD_CMDLINE;
	}
	st = net_mode_start(&dev, &host, true);
	if (st != STATUS_PASS)
		return st;
	format_ipv4(ip_text, peer);
	start = rdtsc();
	if (!net_resolve(&host, peer, seconds * 1000, peer_mac)) {
		console_printf("RESULT mode=net-ping peer=%s arp=timeout sent=0 received=0\n", ip_text);
		return STATUS_TEST_FAILED;
	}
	arp_us = clock_us_from_ticks(rdtsc() - start);
	want.ip = peer;
	want.id = ECHO_ID;
	for (uint64_t seq = 1; seq <= count; seq++) {
		want.seq = (uint16_t)seq;
		start = rdtsc();
		if (!net_send_echo_request(&host, peer_mac, peer, ECHO_ID, (uint16_t)seq, ECHO_PAYLOAD))
			continue;
		if (net_host_wait(&host, NET_EV_ECHO_REPLY, &want, REPLY_TIMEOUT_MS, &got)) {
			uint64_t rtt = clock_us_from_ticks(rdtsc() - start);

			received++;
			rtt_sum += rtt;
			rtt_min = rtt < rtt_min ? rtt : rtt_min;
			rtt_max = rtt > rtt_max ? rtt : rtt_max;
		}
	}
	format_mac(mac_text, peer_mac);
	console_printf("RESULT mode=net-ping peer=%s peer_mac=%s arp_us=%lu sent=%lu received=%lu", ip_text,
		       mac_text, arp_us, count, received);
	if (received)
		console_printf(" rtt_min_us=%lu rtt_avg_us=%lu rtt_max_us=%lu", rtt_min, rtt_sum / received,
			       rtt_max);
	console_write("\n");
	if (end)
		blast_send_end(&host, peer_mac, 0);
	return received == count ? STATUS_PASS : STATUS_TEST_FAILED;
}
