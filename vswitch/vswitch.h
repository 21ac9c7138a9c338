/* Core data structures of the vdfs-switch daemon. */
#ifndef VDFS_VSWITCH_H
#define VDFS_VSWITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "protocol.h"

#define VSW_MAX_PORTS 256 /* port 0 is the uplink; VM ports are 1..255 */
#define VSW_UPLINK_PORT 0
#define VSW_BATCH 64
#define VSW_BUF_SIZE (VDSW_MAX_MTU + VDSW_FRAME_OVERHEAD + 4)
#define VSW_VLAN_TRUNK 4095
#define VSW_NAME_MAX VDSW_NAME_MAX
#define VSW_DEFAULT_PORTGROUP "default" /* always exists */
#define VSW_DEFAULT_MAC_CAP 4096
#define VSW_DEFAULT_MAC_AGING 300
#define VSW_HELLO_TIMEOUT_S 5
#define VSW_CONTROL_TIMEOUT_S 10
#define VSW_MAX_CONTROL_CLIENTS 16
/* Connections waiting for their hello; past this the oldest is dropped, so
 * idle connections cannot use up the switch's descriptors. */
#define VSW_MAX_PENDING_HELLOS 64
#define VSW_CONTROL_LINE_MAX 4096

enum drop_reason {
    DROP_RUNT,          /* shorter than an Ethernet header */
    DROP_OVERSIZE,      /* payload larger than the MTU */
    DROP_BAD_VLAN,      /* tag not allowed on this port, or malformed/reserved tag */
    DROP_FORGED,        /* source MAC is not the port's, forged transmits rejected */
    DROP_BAD_SOURCE,    /* multicast or zero source MAC */
    DROP_SHAPING,       /* egress token bucket empty */
    DROP_NO_ROUTE,      /* no port to deliver to */
    DROP_QUEUE_FULL,    /* receiver's socket or TAP queue was full */
    DROP_REASONS
};

const char *drop_reason_name(enum drop_reason reason);

struct port_counters {
    uint64_t rx_frames, rx_bytes; /* into the switch from the port */
    uint64_t tx_frames, tx_bytes; /* out of the switch to the port */
    uint64_t drops[DROP_REASONS];
    uint64_t unlearned; /* uplink sources not learned because the table was at its cap */
    uint64_t gso_split; /* NIC uplink: super-frames (TSO, GRO) taken apart into frames */
};

/* A tri-state security setting: a port group inherits the switch's value. */
enum policy_value { POLICY_INHERIT = -1, POLICY_REJECT = 0, POLICY_ACCEPT = 1 };

struct security_policy {
    int8_t promiscuous, mac_changes, forged_transmits; /* enum policy_value */
};

struct shaping_policy {
    int8_t state; /* POLICY_INHERIT, 0 = off, 1 = on */
    uint64_t average_bps, peak_bps, burst_bytes;
};

struct portgroup {
    struct portgroup *next;
    char name[VSW_NAME_MAX];
    uint16_t vlan; /* 0 untagged, 1..4094 tagged at the uplink, 4095 trunk */
    struct security_policy security;
    struct shaping_policy shaping;
    unsigned attached_ports;
};

struct token_bucket {
    double average_tokens, peak_tokens; /* bytes */
    uint64_t last_ns;
};

/* Frames waiting to leave one port; the iovecs point into the ingress batch
 * buffers, so a queue is always flushed before the next batch is read. */
struct egress_queue {
    unsigned count;
    struct mmsghdr msgs[VSW_BATCH];
    struct iovec iov[VSW_BATCH][3];
    uint8_t tag[VSW_BATCH][4];
};

struct nic_state;

enum event_kind { EV_PORT, EV_LISTEN, EV_HELLO, EV_CONTROL_LISTEN, EV_CONTROL, EV_TIMER, EV_SIGNAL };

struct event_source {
    enum event_kind kind;
};

/* TAP: a TAP device the switch owns; NIC: an existing interface, through an
 * AF_PACKET socket. */
enum uplink_kind { UPLINK_TAP, UPLINK_NIC };

struct port {
    struct event_source ev;
    int id;
    int fd; /* SEQPACKET socket, or the uplink's TAP fd or AF_PACKET socket */
    bool in_use;
    bool is_uplink;
    bool dirty; /* on the switch's flush list */
    bool has_extra_mac;
    uint8_t mac[6];
    uint8_t extra_mac[6]; /* a changed MAC, registered when MAC changes are accepted */
    struct portgroup *pg; /* NULL for the uplink */
    char client_name[17];
    char uplink_ifname[16]; /* the uplink's TAP or NIC */
    enum uplink_kind uplink_kind;
    int uplink_ifindex; /* a NIC uplink's interface */
    struct nic_state *nic; /* a NIC uplink's buffers */
    uint64_t attached_at;
    struct port_counters counters;
    struct token_bucket bucket;
    struct egress_queue *queue;
};

struct mac_entry {
    uint8_t mac[6];
    uint16_t vlan;        /* MAC_VLAN_STATIC for VM port addresses */
    uint16_t port_id;
    uint8_t used;
    uint64_t last_seen_s; /* learned entries only */
};

#define MAC_VLAN_STATIC 0xffff

struct mac_table {
    struct mac_entry *slots;
    size_t mask; /* slot count - 1, a power of two minus one */
    size_t learned, statics;
    size_t cap; /* limit on learned entries */
    unsigned aging_s;
};

struct hello_conn {
    struct event_source ev;
    struct hello_conn *next;
    int fd;
    uint64_t deadline_s;
};

struct control_conn {
    struct event_source ev;
    struct control_conn *next;
    int fd;
    uint64_t deadline_s;
    size_t in_len;
    char in[VSW_CONTROL_LINE_MAX];
    char *out;
    size_t out_len, out_sent;
    bool writing;
};

struct ingress_batch {
    struct mmsghdr msgs[VSW_BATCH];
    struct iovec iov[VSW_BATCH];
    uint8_t buf[VSW_BATCH][VSW_BUF_SIZE];
};

struct vswitch {
    char name[VSW_NAME_MAX];
    char socket_path[108];
    char control_path[108];
    char config_path[4096]; /* empty: the settings last until the switch stops */
    unsigned mtu;
    struct security_policy security; /* switch defaults: never POLICY_INHERIT */
    struct shaping_policy shaping;   /* switch default: state 0 or 1 */
    struct portgroup *portgroups;
    struct port ports[VSW_MAX_PORTS];
    unsigned attached_ports;
    unsigned promiscuous_ports;
    struct mac_table macs;
    int epoll_fd, listen_fd, control_fd, timer_fd, signal_fd;
    struct event_source listen_ev, control_ev, timer_ev, signal_ev;
    struct hello_conn *hellos;
    unsigned hello_count;
    struct control_conn *controls;
    unsigned control_count;
    /* Out of descriptors: the listening sockets are not watched until the
     * next tick (their backlog would keep them readable). */
    bool accept_paused;
    unsigned hello_failures; /* hellos rejected since start */
    unsigned dirty_count;
    int dirty[VSW_MAX_PORTS];
    struct ingress_batch *in;
    uint64_t now_ns; /* monotonic time of the batch being forwarded */
    bool stop;
};

/* time.c-free helpers live in loop.c */
uint64_t vsw_monotonic_ns(void);

#endif
