#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "netstack.h"
#include "platform.h"

#define ETH_HEADER 14
#define ARP_BYTES 28
#define IP_HEADER 20
#define ICMP_HEADER 8
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define IP_PROTO_ICMP 1
#define MIN_FRAME 60

static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/* RFC 1071 Internet checksum. */
static uint16_t inet_checksum(const uint8_t *p, uint32_t len)
{
	uint64_t sum = 0;

	for (; len > 1; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void eth_header(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, type);
}

static bool send_arp(struct net_host *h, uint16_t oper, const uint8_t eth_dst[6], const uint8_t tha[6],
		     uint32_t tpa)
{
	uint8_t f[MIN_FRAME] = { 0 };
	uint8_t *a = f + ETH_HEADER;

	eth_header(f, eth_dst, h->dev->mac, ETHERTYPE_ARP);
	put16(a, 1);              /* Ethernet */
	put16(a + 2, ETHERTYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, oper);
	memcpy(a + 8, h->dev->mac, 6);
	put32(a + 14, h->ip);
	memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	return net_send(h->dev, f, sizeof(f));
}

bool net_send_arp_request(struct net_host *h, uint32_t target_ip)
{
	static const uint8_t zero[6];

	return send_arp(h, 1, broadcast, zero, target_ip);
}

static void arp_input(struct net_host *h, const uint8_t *f, uint32_t len, struct net_event *ev)
{
	const uint8_t *a = f + ETH_HEADER;

	if (len < ETH_HEADER + ARP_BYTES || get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 ||
	    a[5] != 4) {
		h->ignored++;
		return;
	}
	if (get16(a + 6) == 1 && h->ip && get32(a + 24) == h->ip) {
		h->arp_requests++;
		if (send_arp(h, 2, a + 8, a + 8, get32(a + 14)))
			h->arp_replies_sent++;
		return;
	}
	if (get16(a + 6) == 2) {
		ev->kind = NET_EV_ARP_REPLY;
		memcpy(ev->mac, a + 8, 6);
		ev->ip = get32(a + 14);
		return;
	}
	h->ignored++;
}

static void echo_reply(struct net_host *h, const uint8_t *f, uint32_t ip_len, uint32_t ihl)
{
	uint16_t id;
	uint8_t *r = net_tx_buffer(h->dev, &id);
	uint32_t frame_len = ETH_HEADER + ip_len;
	uint8_t *ip, *icmp;

	if (!r)
		return;
	memcpy(r, f, frame_len);
	eth_header(r, f + 6, h->dev->mac, ETHERTYPE_IPV4);
	ip = r + ETH_HEADER;
	memcpy(ip + 16, f + ETH_HEADER + 12, 4);
	put32(ip + 12, h->ip);
	ip[8] = 64;
	put16(ip + 10, 0);
	put16(ip + 10, inet_checksum(ip, ihl));
	icmp = ip + ihl;
	icmp[0] = ICMP_ECHO_REPLY;
	put16(icmp + 2, 0);
	put16(icmp + 2, inet_checksum(icmp, ip_len - ihl));
	if (frame_len < MIN_FRAME) {
		memset(r + frame_len, 0, MIN_FRAME - frame_len);
		frame_len = MIN_FRAME;
	}
	net_tx_queue(h->dev, id, frame_len);
	net_tx_publish(h->dev);
	h->echo_replies_sent++;
}

static void ipv4_input(struct net_host *h, const uint8_t *f, uint32_t len, struct net_event *ev)
{
	const uint8_t *ip = f + ETH_HEADER, *icmp;
	uint32_t ihl, ip_len;

	if (len < ETH_HEADER + IP_HEADER || (ip[0] >> 4) != 4)
		goto ignore;
	ihl = (ip[0] & 15u) * 4;
	ip_len = get16(ip + 2);
	/* Whole, unfragmented ICMP with a valid header checksum only. */
	if (ihl < IP_HEADER || ip_len < ihl + ICMP_HEADER || ip_len > len - ETH_HEADER ||
	    (get16(ip + 6) & 0x3fff) || ip[9] != IP_PROTO_ICMP || inet_checksum(ip, ihl) != 0 ||
	    !h->ip || get32(ip + 16) != h->ip)
		goto ignore;
	icmp = ip + ihl;
	if (inet_checksum(icmp, ip_len - ihl) != 0)
		goto ignore;
	if (icmp[0] == ICMP_ECHO_REQUEST && icmp[1] == 0) {
		h->echo_requests++;
		echo_reply(h, f, ip_len, ihl);
		return;
	}
	if (icmp[0] == ICMP_ECHO_REPLY && icmp[1] == 0) {
		ev->kind = NET_EV_ECHO_REPLY;
		memcpy(ev->mac, f + 6, 6);
		ev->ip = get32(ip + 12);
		ev->id = get16(icmp + 4);
		ev->seq = get16(icmp + 6);
		return;
	}
ignore:
	h->ignored++;
}

void net_host_input(struct net_host *h, const uint8_t *f, uint32_t len, struct net_event *ev)
{
	uint16_t type = get16(f + 12);

	memset(ev, 0, sizeof(*ev));
	ev->len = len;
	if (type == ETHERTYPE_ARP) {
		arp_input(h, f, len, ev);
	} else if (type == ETHERTYPE_IPV4) {
		ipv4_input(h, f, len, ev);
	} else if (type == ETHERTYPE_BLAST && len >= BLAST_HEADER_BYTES && get32(f + 14) == BLAST_MAGIC) {
		ev->kind = NET_EV_BLAST;
		memcpy(ev->mac, f + 6, 6);
		ev->blast_kind = f[18];
		ev->blast_seq = get64(f + 22);
		ev->blast_total = get64(f + 30);
	} else {
		h->ignored++;
	}
}

static bool matches(const struct net_event *got, enum net_event_kind kind, const struct net_event *want)
{
	static const uint8_t zero[6];

	if (kind == NET_EV_NONE || got->kind != kind)
		return false;
	if (!want)
		return true;
	return (!memcmp(want->mac, zero, 6) || !memcmp(want->mac, got->mac, 6)) &&
	       (!want->ip || want->ip == got->ip) && (!want->id || want->id == got->id) &&
	       (!want->seq || want->seq == got->seq);
}

bool net_host_wait(struct net_host *h, enum net_event_kind kind, const struct net_event *want,
		   uint64_t timeout_ms, struct net_event *got)
{
	uint64_t start = rdtsc(), limit = clock_ticks_from_ms(timeout_ms);

	for (;;) {
		uint16_t id;
		uint8_t *frame;
		uint32_t len;
		bool found = false, any = false;

		while (!found && net_rx_poll(h->dev, &id, &frame, &len)) {
			net_host_input(h, frame, len, got);
			net_rx_release(h->dev, id);
			found = matches(got, kind, want);
			any = true;
		}
		if (any)
			net_rx_publish(h->dev);
		net_tx_reclaim(h->dev);
		if (found)
			return true;
		if (rdtsc() - start > limit)
			return false;
		cpu_relax();
	}
}

bool net_send_echo_request(struct net_host *h, const uint8_t dst_mac[6], uint32_t dst_ip, uint16_t id,
			   uint16_t seq, uint32_t payload_bytes)
{
	uint8_t f[ETH_HEADER + IP_HEADER + ICMP_HEADER + 256] = { 0 };
	uint8_t *ip = f + ETH_HEADER, *icmp = ip + IP_HEADER;
	uint32_t ip_len = IP_HEADER + ICMP_HEADER + payload_bytes, frame_len = ETH_HEADER + ip_len;

	if (payload_bytes > 256)
		return false;
	eth_header(f, dst_mac, h->dev->mac, ETHERTYPE_IPV4);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)ip_len);
	put16(ip + 4, seq);
	ip[8] = 64;
	ip[9] = IP_PROTO_ICMP;
	put32(ip + 12, h->ip);
	put32(ip + 16, dst_ip);
	put16(ip + 10, inet_checksum(ip, IP_HEADER));
	icmp[0] = ICMP_ECHO_REQUEST;
	put16(icmp + 4, id);
	put16(icmp + 6, seq);
	for (uint32_t i = 0; i < payload_bytes; i++)
		icmp[ICMP_HEADER + i] = (uint8_t)i;
	put16(icmp + 2, inet_checksum(icmp, ICMP_HEADER + payload_bytes));
	return net_send(h->dev, f, frame_len < MIN_FRAME ? MIN_FRAME : frame_len);
}

bool net_resolve(struct net_host *h, uint32_t ip, uint64_t timeout_ms, uint8_t mac_out[6])
{
	uint64_t start = rdtsc(), limit = clock_ticks_from_ms(timeout_ms);
	struct net_event want = { .ip = ip }, got;

	do {
		net_send_arp_request(h, ip);
		if (net_host_wait(h, NET_EV_ARP_REPLY, &want, 200, &got)) {
			memcpy(mac_out, got.mac, 6);
			return true;
		}
	} while (rdtsc() - start < limit);
	return false;
}

void blast_build(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t size, uint8_t kind,
		 uint64_t seq, uint64_t total)
{
	memset(f, 0, size);
	eth_header(f, dst, src, ETHERTYPE_BLAST);
	put32(f + 14, BLAST_MAGIC);
	f[18] = kind;
	put64(f + 22, seq);
	put64(f + 30, total);
}

void blast_send_end(struct net_host *h, const uint8_t dst[6], uint64_t total)
{
	uint8_t f[BLAST_MIN_FRAME];
	struct net_event ignored;

	blast_build(f, dst, h->dev->mac, sizeof(f), BLAST_KIND_END, 0, total);
	for (int i = 0; i < 3; i++) {
		net_tx_reclaim(h->dev);
		net_send(h->dev, f, sizeof(f));
		/* Keeps answering ARP and echo while it waits. */
		net_host_wait(h, NET_EV_NONE, 0, 100, &ignored);
	}
}

static bool parse_ipv4(const char *s, size_t len, uint32_t *out)
{
	uint32_t ip = 0;
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		uint32_t v = 0;
		size_t digits = 0;

		while (i < len && s[i] >= '0' && s[i] <= '9' && digits < 3) {
			v = v * 10 + (uint32_t)(s[i++] - '0');
			digits++;
		}
		if (!digits || v > 255)
			return false;
		ip = ip << 8 | v;
		if (part < 3 && (i >= len || s[i++] != '.'))
			return false;
	}
	*out = ip;
	return i == len;
}

bool cmdline_ipv4(const char *key, uint32_t *out, bool *present)
{
	const char *value;
	size_t len;

	*present = cmdline_get(key, &value, &len);
	if (!*present)
		return true;
	if (parse_ipv4(value, len, out) && *out)
		return true;
	console_printf("VDFS-GUEST ERROR %s= needs an IPv4 address like 10.0.0.2\n", key);
	return false;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool cmdline_mac(const char *key, uint8_t out[6], bool *present)
{
	const char *value;
	size_t len;
	bool ok;

	*present = cmdline_get(key, &value, &len);
	if (!*present)
		return true;
	ok = len == 17;
	for (int i = 0; ok && i < 6; i++) {
		int hi = hex_digit(value[3 * i]), lo = hex_digit(value[3 * i + 1]);

		ok = hi >= 0 && lo >= 0 && (i == 5 || value[3 * i + 2] == ':');
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	if (ok)
		return true;
	console_printf("VDFS-GUEST ERROR %s= needs a MAC address like 02:00:00:00:00:01\n", key);
	return false;
}

void format_mac(char out[18], const uint8_t mac[6])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 6; i++) {
		out[3 * i] = hex[mac[i] >> 4];
		out[3 * i + 1] = hex[mac[i] & 15];
		out[3 * i + 2] = i == 5 ? 0 : ':';
	}
}

void format_ipv4(char out[16], uint32_t ip)
{
	char *p = out;

	for (int part = 3; part >= 0; part--) {
		uint32_t v = ip >> (8 * part) & 255;

		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
		if (part)
			*p++ = '.';
	}
	*p = 0;
}

void print_rate(uint64_t frames, uint64_t bytes, uint64_t ticks)
{
	uint64_t us = clock_us_from_ticks(ticks);
	uint64_t mbps;

	if (!us)
		us = 1;
	mbps = bytes * 8 / us; /* bits per microsecond = Mbit/s */
	console_printf("frames=%lu bytes=%lu elapsed_us=%lu fps=%lu gbps=%lu.%03lu", frames, bytes, us,
		       frames * 1000000 / us, mbps / 1000, mbps % 1000);
}
