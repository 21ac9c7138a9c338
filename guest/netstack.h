/* The guest's tiny network stack: Ethernet, ARP, IPv4 and ICMP echo, plus
 * the frame generator's own frames (EtherType 0x88b5, "local experimental"). */
#ifndef GUEST_NETSTACK_H
#define GUEST_NETSTACK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_net.h"

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ETHERTYPE_BLAST 0x88b5

/* Generator frame: Ethernet header, then this (big endian fields). */
#define BLAST_MAGIC 0x56444642u /* "VDFB" */
#define BLAST_KIND_DATA 1
#define BLAST_KIND_END 2
#define BLAST_HEADER_BYTES (14 + 24)
#define BLAST_MIN_FRAME 60

struct net_host {
	struct net_dev *dev;
	uint32_t ip; /* host order; 0: answers no ARP or echo */
	uint64_t arp_requests, arp_replies_sent, echo_requests, echo_replies_sent, ignored;
};

enum net_event_kind {
	NET_EV_NONE,       /* consumed (answered) or ignored */
	NET_EV_ARP_REPLY,  /* mac, ip */
	NET_EV_ECHO_REPLY, /* ip, id, seq */
	NET_EV_BLAST,      /* blast_kind, seq, total */
};

struct net_event {
	enum net_event_kind kind;
	uint8_t mac[6];
	uint32_t ip;
	uint16_t id, seq;
	uint8_t blast_kind;
	uint64_t blast_seq, blast_total;
	uint32_t len;
};

/* Answers ARP requests and ICMP echo requests for h->ip and describes the
 * other frames the modes care about in *ev.  Replies are published at once. */
void net_host_input(struct net_host *h, const uint8_t *frame, uint32_t len, struct net_event *ev);
/* Polls the device (answering as net_host_input does) until an event of
 * the given kind arrives that matches (mac/ip/id/seq of *want when non-zero),
 * or timeout_ms passes.  NET_EV_NONE never matches: it just serves for
 * timeout_ms. */
bool net_host_wait(struct net_host *h, enum net_event_kind kind, const struct net_event *want,
		   uint64_t timeout_ms, struct net_event *got);

bool net_send_arp_request(struct net_host *h, uint32_t target_ip);
bool net_send_echo_request(struct net_host *h, const uint8_t dst_mac[6], uint32_t dst_ip, uint16_t id,
			   uint16_t seq, uint32_t payload_bytes);
/* Resolves ip by ARP, retrying every 200 ms until timeout_ms. */
bool net_resolve(struct net_host *h, uint32_t ip, uint64_t timeout_ms, uint8_t mac_out[6]);

/* Writes a generator frame of size bytes (>= BLAST_MIN_FRAME) at f. */
void blast_build(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t size, uint8_t kind,
		 uint64_t seq, uint64_t total);
static inline void blast_set_seq(uint8_t *f, uint64_t seq)
{
	for (int i = 0; i < 8; i++)
		f[22 + i] = (uint8_t)(seq >> (56 - 8 * i));
}
/* Sends END frames (three, 100 ms apart, so one survives a full queue). */
void blast_send_end(struct net_host *h, const uint8_t dst[6], uint64_t total);

/* Command-line helpers: dotted-quad IPv4 and colon-separated MAC values. */
bool cmdline_ipv4(const char *key, uint32_t *out, bool *present);
bool cmdline_mac(const char *key, uint8_t out[6], bool *present);
void format_mac(char out[18], const uint8_t mac[6]);
void format_ipv4(char out[16], uint32_t ip);
/* "frames=.. elapsed_us=.. fps=.. gbps=.." for a timed run. */
void print_rate(uint64_t frames, uint64_t bytes, uint64_t ticks);

#endif
