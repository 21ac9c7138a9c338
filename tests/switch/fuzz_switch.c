/* Fuzz harness for vdfs-switch.  Each input builds a fresh switch in this
 * process (port groups of VLAN 0, 10, 20, a second VLAN 10 group and a 4095
 * trunk, optionally an uplink) and runs a list of operations decoded from the
 * input: frames from any port (through its socket and port_receive or
 * uplink_receive, or written straight into the ingress batch), hellos through
 * a real listening socket, control commands (command_execute and control
 * connections), detaches and jumps in time.
 *
 * VM ports are real SEQPACKET connections accepted by hello_accept; the
 * uplink is port 0 set up as uplink_open does, but on a SEQPACKET socketpair
 * instead of a TAP (a TAP needs root and is one frame per read/write, which a
 * SEQPACKET socket also is).  The harness holds the client end of every port
 * and reads what the switch sends.
 *
 * The decoding gives random bytes structure: MACs come from the ports, the
 * broadcast/multicast addresses, a pool of uplink hosts; tags carry the
 * VLANs that exist, VID 0 or 4095, or are cut short; lengths sit on the MTU
 * boundaries.  Checks (abort() on violation), from docs/switch.md:
 * - every frame in is counted once: rx_frames, and an ingress drop reason that
 *   an independent model of the rules predicts (runt, oversize, bad_vlan,
 *   forged, bad_source), or no_route exactly when it reached no port;
 * - a frame reaches only in-use ports of its VLAN, never its ingress port,
 *   with the tagging of the egress port; a single frame reaches exactly the
 *   ports the forwarding rules name (flood set, the owner of a port MAC plus
 *   promiscuous copies, or the uplink for a learned address);
 * - what a port receives equals its tx_frames; each egress attempt is a send,
 *   a shaping drop or a queue_full drop;
 * - the MAC table: learned <= cap, counts match its slots, every entry is
 *   found by lookup, no key twice, port MACs belong to attached ports;
 * - hello acks carry the status the protocol table predicts;
 * - control responses are "OK\n"/"ERR ..." and valid JSON with format=json.
 * Under ASan the unused tail of each ingress buffer is poisoned while a
 * directly written batch is forwarded, so a read past a frame's end is caught. */
#include "fuzz_switch.h"

#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "control.h"
#include "forward.h"
#include "frame.h"
#include "hello.h"
#include "loop.h"
#include "mactable.h"
#include "port.h"
#include "portgroup.h"
#include "uplink.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

#define MAX_OPS 48
#define MAX_VM_PORTS 24
#define MAX_IDLE 72
#define FRAME_MAX (VSW_BUF_SIZE + 16)
#define PAYLOAD_FROM_INPUT 64
#define UPLINK_TAP_NAME "fuzz/uplink" /* '/' is not allowed in interface names: no real device is touched */

struct input {
    const uint8_t *data;
    size_t size, pos;
};

static uint8_t take(struct input *in) { return in->pos < in->size ? in->data[in->pos++] : 0; }

static uint16_t take16(struct input *in)
{
    uint16_t hi = take(in);
    return (uint16_t)(hi << 8 | take(in));
}

__attribute__((noreturn, format(printf, 1, 2))) static void violated(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_switch: invariant violated: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

#define CHECK(cond, ...)             \
    do {                             \
        if (!(cond))                 \
            violated(__VA_ARGS__);   \
    } while (0)

__attribute__((noreturn)) static void fatal(const char *what)
{
    fprintf(stderr, "fuzz_switch: %s: %s\n", what, strerror(errno));
    exit(1);
}

struct harness {
    struct vswitch *sw;
    int client[VSW_MAX_PORTS]; /* our end of each attached port, or -1 */
    int idle[MAX_IDLE];        /* connections that never send a hello */
    unsigned idle_count;
};

/* ---- listening sockets, shared by all inputs of the process ---- */

struct listener {
    int fd;
    struct sockaddr_un addr;
    socklen_t addr_len;
};

static struct listener port_listener = {.fd = -1}, control_listener = {.fd = -1};

static void listener_open(struct listener *l, int type, const char *suffix)
{
    l->addr.sun_family = AF_UNIX;
    /* Abstract names: nothing in the file system, nothing to clean up. */
    int n = snprintf(l->addr.sun_path + 1, sizeof(l->addr.sun_path) - 1, "vdfs-swfuzz-%d-%s", (int)getpid(), suffix);
    l->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    l->fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&l->addr, l->addr_len) || listen(l->fd, 256))
        fatal("listening socket");
}

static int listener_connect(const struct listener *l, int type)
{
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&l->addr, l->addr_len))
        fatal("connect to the switch");
    return fd;
}

/* Connections a run left in a backlog must not reach the next input. */
static void listener_drain(const struct listener *l)
{
    int fd;
    while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
}

/* ---- switch setup and teardown (as loop.c's setup and teardown) ---- */

static const struct {
    const char *name;
    uint16_t vlan;
} portgroups[] = {{"default", 0}, {"v10", 10}, {"v20", 20}, {"trunk", VSW_VLAN_TRUNK}, {"v10b", 10}};
#define PORTGROUPS (sizeof(portgroups) / sizeof(portgroups[0]))

static void harness_start(struct harness *h, unsigned mtu, size_t cap, unsigned aging_s)
{
    struct vswitch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        fatal("calloc");
    snprintf(sw->name, sizeof(sw->name), "fuzz");
    snprintf(sw->socket_path, sizeof(sw->socket_path), "@vdfs-swfuzz");
    snprintf(sw->control_path, sizeof(sw->control_path), "@vdfs-swfuzz.ctl");
    sw->mtu = mtu;
    sw->security = (struct security_policy){POLICY_REJECT, POLICY_REJECT, POLICY_REJECT};
    sw->shaping.state = 0;
    sw->timer_fd = sw->signal_fd = -1;
    sw->listen_fd = port_listener.fd;
    sw->control_fd = control_listener.fd;
    sw->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (sw->epoll_fd < 0)
        fatal("epoll_create1");
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        sw->ports[id].id = id;
        sw->ports[id].fd = -1;
        h->client[id] = -1;
    }
    sw->in = malloc(sizeof(*sw->in));
    if (!sw->in || mac_table_init(&sw->macs, cap, aging_s))
        fatal("out of memory");
    char err[200];
    for (size_t i = 0; i < PORTGROUPS; i++)
        if (portgroup_add(sw, portgroups[i].name, portgroups[i].vlan, err, sizeof(err)))
            violated("portgroup_add %s: %s", portgroups[i].name, err);
    h->sw = sw;
    h->idle_count = 0;
}

static void uplink_attach(struct harness *h)
{
    struct vswitch *sw = h->sw;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
        fatal("socketpair");
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    memset(up, 0, sizeof(*up));
    up->ev.kind = EV_PORT;
    up->id = VSW_UPLINK_PORT;
    up->fd = sv[0];
    up->is_uplink = true;
    up->queue = calloc(1, sizeof(*up->queue));
    if (!up->queue)
        fatal("calloc");
    up->attached_at = vsw_now_s();
    snprintf(up->uplink_ifname, sizeof(up->uplink_ifname), UPLINK_TAP_NAME);
    snprintf(up->client_name, sizeof(up->client_name), "uplink");
    if (loop_watch(sw, sv[0], EPOLLIN, &up->ev))
        fatal("epoll_ctl");
    up->in_use = true;
    h->client[VSW_UPLINK_PORT] = sv[1];
}

static void harness_stop(struct harness *h)
{
    struct vswitch *sw = h->sw;
    for (int id = 1; id < VSW_MAX_PORTS; id++)
        port_detach(sw, &sw->ports[id]);
    uplink_close(sw);
    hello_close_all(sw);
    control_close_all(sw);
    close(sw->epoll_fd);
    portgroups_free(sw);
    mac_table_free(&sw->macs);
    free(sw->in);
    free(sw);
    h->sw = NULL;
    for (int id = 0; id < VSW_MAX_PORTS; id++)
        if (h->client[id] >= 0)
            close(h->client[id]);
    for (unsigned i = 0; i < h->idle_count; i++)
        close(h->idle[i]);
    listener_drain(&port_listener);
    listener_drain(&control_listener);
}

/* The product may close the uplink (uplink.set tap=none): drop our end too. */
static void sync_clients(struct harness *h)
{
    if (h->client[VSW_UPLINK_PORT] >= 0 && !h->sw->ports[VSW_UPLINK_PORT].in_use) {
        close(h->client[VSW_UPLINK_PORT]);
        h->client[VSW_UPLINK_PORT] = -1;
    }
}

/* ---- an independent model of the rules in docs/switch.md ---- */

static bool is_trunk(const struct port *p) { return p->is_uplink || p->pg->vlan == VSW_VLAN_TRUNK; }

static bool carries_vlan(const struct port *p, uint16_t vlan) { return is_trunk(p) || p->pg->vlan == vlan; }

static int8_t effective(int8_t switch_value, int8_t group_value)
{
    return group_value == POLICY_INHERIT ? switch_value : group_value;
}

static bool promiscuous(const struct vswitch *sw, const struct port *p)
{
    return !p->is_uplink && effective(sw->security.promiscuous, p->pg->security.promiscuous) == POLICY_ACCEPT;
}

static bool same_mac(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, 6) == 0; }

static bool zero_mac(const uint8_t *m)
{
    static const uint8_t zero[6];
    return same_mac(m, zero);
}

/* The attached port owning mac as its own or changed MAC, or -1. */
static int port_owning(const struct vswitch *sw, const uint8_t *mac)
{
    for (int id = 1; id < VSW_MAX_PORTS; id++) {
        const struct port *p = &sw->ports[id];
        if (p->in_use && (same_mac(p->mac, mac) || (p->has_extra_mac && same_mac(p->extra_mac, mac))))
            return id;
    }
    return -1;
}

/* Whether an address is learned in vlan; -1 when the table is too big to scan. */
static int learned_in(const struct vswitch *sw, const uint8_t *mac, uint16_t vlan)
{
    if (sw->macs.mask >= (1u << 16))
        return -1;
    for (size_t i = 0; i <= sw->macs.mask; i++) {
        const struct mac_entry *e = &sw->macs.slots[i];
        if (e->used && e->vlan == vlan && same_mac(e->mac, mac))
            return 1;
    }
    return 0;
}

struct verdict {
    enum drop_reason reason; /* DROP_REASONS: accepted */
    uint16_t vlan;
    bool tagged;
};

static struct verdict model_ingress(const struct vswitch *sw, const struct port *p, const uint8_t *f, size_t len,
                                    bool truncated)
{
    struct verdict v = {DROP_REASONS, 0, false};
    if (truncated) {
        v.reason = DROP_OVERSIZE;
        return v;
    }
    if (len < 14) {
        v.reason = DROP_RUNT;
        return v;
    }
    v.tagged = f[12] == 0x81 && f[13] == 0x00;
    if (len > sw->mtu + (v.tagged ? 18u : 14u)) {
        v.reason = DROP_OVERSIZE;
        return v;
    }
    if (v.tagged) {
        uint16_t vid = (uint16_t)((f[14] << 8 | f[15]) & 0xfff);
        if (len < 18 || !is_trunk(p) || vid == VSW_VLAN_TRUNK) {
            v.reason = DROP_BAD_VLAN;
            return v;
        }
        v.vlan = vid;
    } else {
        v.vlan = is_trunk(p) ? 0 : p->pg->vlan;
    }
    const uint8_t *src = f + 6;
    if ((src[0] & 1) || zero_mac(src))
        v.reason = DROP_BAD_SOURCE;
    else if (!p->is_uplink && !same_mac(src, p->mac) && !(p->has_extra_mac && same_mac(src, p->extra_mac)) &&
             effective(sw->security.forged_transmits, p->pg->security.forged_transmits) != POLICY_ACCEPT)
        v.reason = DROP_FORGED;
    return v;
}

/* The bytes port q must receive for an accepted frame: tagged with the VLAN
 * on a trunk or the uplink (VLAN 0 untagged), untagged on an access port. */
static size_t egress_bytes(const struct port *q, const struct verdict *v, const uint8_t *f, size_t len, uint8_t *out)
{
    bool want_tag = is_trunk(q) && v->vlan != 0;
    if (want_tag == v->tagged) {
        memcpy(out, f, len);
        return len;
    }
    memcpy(out, f, 12);
    if (want_tag) {
        out[12] = 0x81;
        out[13] = 0x00;
        out[14] = (uint8_t)(v->vlan >> 8);
        out[15] = (uint8_t)v->vlan;
        memcpy(out + 16, f + 12, len - 12);
        return len + 4;
    }
    memcpy(out + 12, f + 16, len - 16);
    return len - 4;
}

/* ---- invariants of the whole switch ---- */

static int compare_keys(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void check_mac_table(const struct vswitch *sw)
{
    const struct mac_table *t = &sw->macs;
    CHECK(t->learned <= t->cap, "MAC table holds %zu learned entries, cap %zu", t->learned, t->cap);
    size_t learned = 0, statics = 0;
    uint64_t *keys = malloc((t->learned + t->statics + 1) * sizeof(*keys));
    if (!keys)
        fatal("malloc");
    size_t nkeys = 0;
    for (size_t i = 0; i <= t->mask; i++) {
        const struct mac_entry *e = &t->slots[i];
        if (!e->used)
            continue;
        if (e->vlan == MAC_VLAN_STATIC) {
            statics++;
            CHECK(e->port_id >= 1 && e->port_id < VSW_MAX_PORTS && sw->ports[e->port_id].in_use,
                  "port MAC entry for port %u, which is not attached", e->port_id);
            const struct port *p = &sw->ports[e->port_id];
            CHECK(same_mac(p->mac, e->mac) || (p->has_extra_mac && same_mac(p->extra_mac, e->mac)),
                  "port MAC entry of port %u is neither its MAC nor its changed MAC", e->port_id);
            CHECK(mac_table_find_static(t, e->mac) == e->port_id, "port MAC entry in slot %zu not found by lookup", i);
        } else {
            learned++;
            CHECK(e->vlan <= 4094, "learned entry in VLAN %u", e->vlan);
            CHECK(e->port_id == VSW_UPLINK_PORT, "learned entry behind port %u: only the uplink learns", e->port_id);
            CHECK(mac_table_find_learned(t, e->mac, e->vlan, e->last_seen_s) == e->port_id,
                  "learned entry in slot %zu not found by lookup", i);
        }
        if (nkeys < t->learned + t->statics + 1) {
            uint64_t k = 0;
            memcpy(&k, e->mac, 6);
            keys[nkeys++] = k | (uint64_t)e->vlan << 48;
        }
    }
    CHECK(learned == t->learned && statics == t->statics, "MAC table counts %zu learned %zu port, slots hold %zu %zu",
          t->learned, t->statics, learned, statics);
    qsort(keys, nkeys, sizeof(*keys), compare_keys);
    for (size_t i = 1; i < nkeys; i++)
        CHECK(keys[i] != keys[i - 1], "MAC table holds one address twice");
    free(keys);
    CHECK(learned == 0 || sw->ports[VSW_UPLINK_PORT].in_use, "%zu learned entries without an uplink", learned);
}

static void check_switch(const struct harness *h)
{
    const struct vswitch *sw = h->sw;
    check_mac_table(sw);
    unsigned attached = 0, promisc = 0;
    size_t port_macs = 0;
    for (int id = 1; id < VSW_MAX_PORTS; id++) {
        const struct port *p = &sw->ports[id];
        if (!p->in_use)
            continue;
        attached++;
        port_macs += 1 + p->has_extra_mac;
        promisc += promiscuous(sw, p);
        CHECK(p->id == id && !p->is_uplink && p->pg && p->queue, "port %d is malformed", id);
        CHECK(mac_table_find_static(&sw->macs, p->mac) == id, "port %d's MAC is not in the table", id);
        if (p->has_extra_mac) {
            CHECK(mac_table_find_static(&sw->macs, p->extra_mac) == id, "port %d's changed MAC is not in the table", id);
            CHECK(!same_mac(p->extra_mac, p->mac), "port %d's changed MAC is its own MAC", id);
        }
        CHECK(p->queue->count == 0, "port %d has %u frames queued after a batch", id, p->queue->count);
        CHECK(!p->dirty, "port %d still marked dirty", id);
    }
    CHECK(port_macs == sw->macs.statics, "%zu port MACs, table has %zu", port_macs, sw->macs.statics);
    CHECK(attached == sw->attached_ports, "attached_ports %u, counted %u", sw->attached_ports, attached);
    CHECK(promisc == sw->promiscuous_ports, "promiscuous_ports %u, counted %u", sw->promiscuous_ports, promisc);
    CHECK(sw->dirty_count == 0, "dirty list not empty after a batch");
    for (const struct portgroup *pg = sw->portgroups; pg; pg = pg->next) {
        unsigned n = 0;
        for (int id = 1; id < VSW_MAX_PORTS; id++)
            n += sw->ports[id].in_use && sw->ports[id].pg == pg;
        CHECK(n == pg->attached_ports, "port group %s counts %u ports, has %u", pg->name, pg->attached_ports, n);
        CHECK(vdsw_name_is_valid(pg->name) && pg->vlan <= VSW_VLAN_TRUNK, "port group %s is malformed", pg->name);
    }
    unsigned hellos = 0, controls = 0;
    for (const struct hello_conn *c = sw->hellos; c; c = c->next)
        hellos++;
    for (const struct control_conn *c = sw->controls; c; c = c->next)
        controls++;
    CHECK(hellos == sw->hello_count && hellos <= VSW_MAX_PENDING_HELLOS, "%u pending hellos, count %u", hellos,
          sw->hello_count);
    CHECK(controls == sw->control_count && controls <= VSW_MAX_CONTROL_CLIENTS, "%u control clients, count %u",
          controls, sw->control_count);
    CHECK(sw->mtu >= VDSW_MIN_MTU && sw->mtu <= VDSW_MAX_MTU, "MTU %u", sw->mtu);
    const struct port *up = &sw->ports[VSW_UPLINK_PORT];
    CHECK(!up->in_use || (up->is_uplink && up->queue && up->queue->count == 0), "uplink malformed");
}

/* ---- choosing addresses, ports and frames from the input ---- */

static unsigned vm_ports(const struct vswitch *sw, int *ids)
{
    unsigned n = 0;
    for (int id = 1; id < VSW_MAX_PORTS; id++)
        if (sw->ports[id].in_use)
            ids[n++] = id;
    return n;
}

/* kind 3 is the sender's own address: a VM port's (changed) MAC, or a host behind the uplink. */
static void pick_mac(const struct harness *h, struct input *in, unsigned kind, int sender, uint8_t *out)
{
    uint8_t b = take(in);
    int ids[VSW_MAX_PORTS];
    unsigned n = vm_ports(h->sw, ids);
    switch (kind % 8) {
    case 0:
        memset(out, 0xff, 6);
        return;
    case 1:
        memcpy(out, (b & 1) ? (const uint8_t[]){0x33, 0x33, 0, 0, 0, 1} : (const uint8_t[]){0x01, 0x00, 0x5e, 0, 0, 1}, 6);
        out[5] = b;
        return;
    case 3:
        if (sender > 0) {
            const struct port *p = &h->sw->ports[sender];
            memcpy(out, (b & 1) && p->has_extra_mac ? p->extra_mac : p->mac, 6);
            return;
        }
        if (sender == 0) {
            memcpy(out, (const uint8_t[]){0x02, 0xaa, 0, 0, 0, 0}, 6);
            out[5] = b;
            return;
        }
        /* fall through */
    case 2:
        if (n) {
            const struct port *p = &h->sw->ports[ids[b % n]];
            memcpy(out, (b & 0x80) && p->has_extra_mac ? p->extra_mac : p->mac, 6);
            return;
        }
        /* fall through */
    case 4: /* addresses VMs may attach with, or take as changed MACs */
        memcpy(out, (const uint8_t[]){0x02, 0, 0, 0, 0, 0}, 6);
        out[5] = b % 16;
        return;
    case 5: /* hosts behind the uplink: enough to fill a small table */
        memcpy(out, (const uint8_t[]){0x02, 0xaa, 0, 0, 0, 0}, 6);
        out[5] = b;
        return;
    case 6:
        memset(out, 0, 6);
        return;
    default:
        out[0] = b;
        for (int i = 1; i < 6; i++)
            out[i] = take(in);
        return;
    }
}

static int pick_port(const struct harness *h, uint8_t b)
{
    int ids[VSW_MAX_PORTS];
    unsigned n = 0;
    for (int id = 0; id < VSW_MAX_PORTS; id++)
        if (h->sw->ports[id].in_use && h->client[id] >= 0)
            ids[n++] = id;
    return n ? ids[b % n] : -1;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t build_frame(const struct harness *h, struct input *in, int ingress, uint8_t *f)
{
    static const uint16_t vids[] = {0, 10, 20, 30, 4094, VSW_VLAN_TRUNK};
    unsigned mtu = h->sw->mtu;
    /* Mostly frames the rules accept, so that forwarding is reached. */
    static const uint8_t dst_kinds[] = {0, 1, 2, 2, 2, 3, 4, 5, 6, 7};
    static const uint8_t src_kinds[] = {3, 3, 3, 3, 2, 4, 5, 0, 6, 7};
    static const uint8_t tag_modes[] = {0, 0, 0, 1, 1, 2, 3, 4, 5};
    static const uint8_t size_modes[] = {0, 0, 0, 1, 1, 2, 5, 5, 3, 4, 6, 7};
    uint8_t sel = take(in);
    pick_mac(h, in, dst_kinds[sel % 10], ingress, f);
    pick_mac(h, in, src_kinds[take(in) % 10], ingress, f + 6);
    size_t hdr = 14;
    put16(f + 12, 0x0800);
    switch (tag_modes[take(in) % sizeof(tag_modes)]) {
    case 0:
        break;
    case 1: /* tags of the VLANs that exist, priority tags, the reserved VID */
        put16(f + 12, ETHERTYPE_VLAN);
        put16(f + 14, (uint16_t)(vids[take(in) % 6] | (sel & 0xc0) << 7));
        put16(f + 16, 0x0800);
        hdr = 18;
        break;
    case 2:
        put16(f + 12, ETHERTYPE_VLAN);
        put16(f + 14, take16(in));
        put16(f + 16, 0x0800);
        hdr = 18;
        break;
    case 3: { /* a tag cut short */
        put16(f + 12, ETHERTYPE_VLAN);
        size_t len = 14 + take(in) % 4;
        for (size_t i = 14; i < len; i++)
            f[i] = take(in);
        return len;
    }
    case 4:
        put16(f + 12, take16(in));
        break;
    default: /* double tag: the inner one is payload */
        put16(f + 12, ETHERTYPE_VLAN);
        put16(f + 14, vids[take(in) % 6]);
        put16(f + 16, ETHERTYPE_VLAN);
        hdr = 18;
        break;
    }
    size_t len;
    switch (size_modes[take(in) % sizeof(size_modes)]) {
    case 0:
        len = hdr + take(in) % 64;
        break;
    case 1:
        len = hdr + 46;
        break;
    case 2:
        len = hdr + mtu;
        break;
    case 3:
        len = hdr + mtu + 1;
        break;
    case 4:
        len = 14 + mtu + 4;
        break;
    case 5:
        len = hdr + take16(in) % (mtu + 64);
        break;
    case 6:
        len = take(in) % 14;
        break;
    default: /* around the batch buffer's size */
        len = VSW_BUF_SIZE - 2 + take(in) % 8;
        break;
    }
    if (len > FRAME_MAX)
        len = FRAME_MAX;
    size_t from_input = len > hdr ? len - hdr : 0;
    if (from_input > PAYLOAD_FROM_INPUT)
        from_input = PAYLOAD_FROM_INPUT;
    for (size_t i = hdr; i < hdr + from_input; i++)
        f[i] = take(in);
    for (size_t i = hdr + from_input; i < len; i++)
        f[i] = (uint8_t)(i * 7 + sel);
    return len;
}

/* ---- frames ---- */

static uint8_t frames[VSW_BATCH][FRAME_MAX];
static size_t frame_len[VSW_BATCH];
static bool frame_truncated[VSW_BATCH];
static struct verdict verdicts[VSW_BATCH];
static struct port_counters before[VSW_MAX_PORTS];
static uint8_t rx[FRAME_MAX + 64], expect[FRAME_MAX + 64];

static void drain_clients(struct harness *h)
{
    for (int id = 0; id < VSW_MAX_PORTS; id++)
        if (h->client[id] >= 0)
            while (recv(h->client[id], rx, sizeof(rx), MSG_DONTWAIT) >= 0)
                ;
}

static uint64_t attempts(const struct port_counters *now, const struct port_counters *was)
{
    return (now->tx_frames - was->tx_frames) + (now->drops[DROP_SHAPING] - was->drops[DROP_SHAPING]) +
           (now->drops[DROP_QUEUE_FULL] - was->drops[DROP_QUEUE_FULL]);
}

/* Reads what port q received and matches it, in order, against the frames it
 * may get: accepted ones of its VLAN from another port.  Returns the count. */
static uint64_t check_received(struct harness *h, int q, int ingress, unsigned k)
{
    const struct port *port = &h->sw->ports[q];
    uint64_t got = 0;
    unsigned next = 0;
    for (;;) {
        ssize_t n = recv(h->client[q], rx, sizeof(rx), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0)
            break;
        got++;
        CHECK(q != ingress, "port %d received a frame it sent", q);
        bool matched = false;
        for (; next < k && !matched; next++) {
            const struct verdict *v = &verdicts[next];
            if (v->reason != DROP_REASONS || !carries_vlan(port, v->vlan))
                continue;
            size_t want = egress_bytes(port, v, frames[next], frame_len[next], expect);
            matched = want == (size_t)n && memcmp(rx, expect, want) == 0;
        }
        CHECK(matched, "port %d received a %zd-byte frame that is not one of the batch's frames of its VLANs, "
                       "tagged for it, in order", q, n);
    }
    return got;
}

/* The ports one accepted frame must reach, per the forwarding rules. */
static void expected_targets(const struct vswitch *sw, int ingress, const uint8_t *f, const struct verdict *v,
                             bool flood_set[VSW_MAX_PORTS], bool unicast_set[VSW_MAX_PORTS], bool *either)
{
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        const struct port *p = &sw->ports[id];
        flood_set[id] = p->in_use && id != ingress && carries_vlan(p, v->vlan);
        unicast_set[id] = false;
    }
    *either = false;
    if (f[0] & 1) {
        memcpy(unicast_set, flood_set, VSW_MAX_PORTS * sizeof(bool));
        return;
    }
    int target = port_owning(sw, f);
    if (target >= 0 && !carries_vlan(&sw->ports[target], v->vlan))
        target = -1;
    if (target < 0) {
        int learned = sw->ports[VSW_UPLINK_PORT].in_use ? learned_in(sw, f, v->vlan) : 0;
        if (learned == 0) {
            memcpy(unicast_set, flood_set, VSW_MAX_PORTS * sizeof(bool));
            return;
        }
        /* Learned (or unknown: the table is too big to scan): the entry
         * may have aged out a moment ago, so flooding is right too. */
        *either = true;
        target = VSW_UPLINK_PORT;
    }
    unicast_set[target] = target != ingress;
    for (int id = 1; id < VSW_MAX_PORTS; id++)
        if (flood_set[id] && id != target && promiscuous(sw, &sw->ports[id]))
            unicast_set[id] = true;
}

static void check_single(struct harness *h, int ingress, const uint64_t *got, bool changed_mac_expected,
                         const uint8_t *src_before_extra, bool had_extra)
{
    struct vswitch *sw = h->sw;
    const struct verdict *v = &verdicts[0];
    const uint8_t *f = frames[0];
    const struct port_counters *c = &sw->ports[ingress].counters, *was = &before[ingress];
    for (int r = 0; r < DROP_REASONS; r++) {
        if (r == DROP_SHAPING || r == DROP_QUEUE_FULL)
            continue;
        uint64_t d = c->drops[r] - was->drops[r];
        if (r == (int)v->reason)
            CHECK(d == 1, "frame dropped as %s by the rules, counter moved by %llu", drop_reason_name((enum drop_reason)r),
                  (unsigned long long)d);
        else if (r != DROP_NO_ROUTE)
            CHECK(d == 0, "%s counted for a frame the rules %s", drop_reason_name((enum drop_reason)r),
                  v->reason == DROP_REASONS ? "accept" : drop_reason_name(v->reason));
    }
    uint64_t no_route = c->drops[DROP_NO_ROUTE] - was->drops[DROP_NO_ROUTE];
    if (v->reason != DROP_REASONS) {
        CHECK(no_route == 0, "no_route counted for a frame dropped as %s", drop_reason_name(v->reason));
        for (int q = 0; q < VSW_MAX_PORTS; q++)
            CHECK(attempts(&sw->ports[q].counters, &before[q]) == 0 && got[q] == 0,
                  "a frame dropped as %s reached port %d", drop_reason_name(v->reason), q);
        return;
    }
    bool flood_set[VSW_MAX_PORTS], unicast_set[VSW_MAX_PORTS], either;
    expected_targets(sw, ingress, f, v, flood_set, unicast_set, &either);
    bool is_flood = true, is_unicast = true, any = false;
    for (int q = 0; q < VSW_MAX_PORTS; q++) {
        uint64_t a = sw->ports[q].in_use ? attempts(&sw->ports[q].counters, &before[q]) : 0;
        CHECK(a <= 1, "one frame counted %llu times at port %d", (unsigned long long)a, q);
        is_flood &= (a == 1) == flood_set[q];
        is_unicast &= (a == 1) == unicast_set[q];
        any |= a == 1;
    }
    CHECK(is_unicast || (either && is_flood),
          "frame (VLAN %u, dst %02x:%02x:%02x:%02x:%02x:%02x) did not reach exactly the ports the rules name",
          v->vlan, f[0], f[1], f[2], f[3], f[4], f[5]);
    CHECK(no_route == !any, "no_route moved by %llu for a frame that reached %s port", (unsigned long long)no_route,
          any ? "a" : "no");
    if (ingress == VSW_UPLINK_PORT) {
        uint64_t unlearned = c->unlearned - was->unlearned;
        int learned = learned_in(sw, f + 6, v->vlan);
        if (learned < 0)
            CHECK(unlearned <= 1, "unlearned moved by %llu for one frame", (unsigned long long)unlearned);
        else if (port_owning(sw, f + 6) < 0 && learned == 0)
            CHECK(unlearned == 1 && sw->macs.learned == sw->macs.cap,
                  "uplink source not learned (unlearned +%llu, %zu of %zu)", (unsigned long long)unlearned,
                  sw->macs.learned, sw->macs.cap);
        else
            CHECK(unlearned == 0, "unlearned counted for a source that is in the table");
    } else {
        const struct port *p = &sw->ports[ingress];
        if (changed_mac_expected)
            CHECK(p->has_extra_mac && same_mac(p->extra_mac, f + 6), "MAC changes accepted but port %d did not take "
                                                                      "its new source as changed MAC", ingress);
        else if (had_extra && !same_mac(f + 6, p->mac))
            CHECK(p->has_extra_mac && same_mac(p->extra_mac, src_before_extra), "port %d's changed MAC changed",
                  ingress);
    }
}

static void op_frames(struct harness *h, struct input *in, unsigned k, bool direct)
{
    struct vswitch *sw = h->sw;
    int ingress = pick_port(h, take(in));
    if (ingress < 0)
        return;
    struct port *port = &sw->ports[ingress];
    for (unsigned i = 0; i < k; i++) {
        frame_len[i] = build_frame(h, in, ingress, frames[i]);
        frame_truncated[i] = false;
    }
    drain_clients(h);
    unsigned sent = 0;
    if (!direct) {
        for (; sent < k; sent++)
            if (send(h->client[ingress], frames[sent], frame_len[sent], MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                break;
        for (unsigned i = 0; i < sent; i++) {
            size_t limit = port->is_uplink ? VSW_BUF_SIZE - 1 : VSW_BUF_SIZE;
            frame_truncated[i] = frame_len[i] > limit;
            if (frame_truncated[i])
                frame_len[i] = VSW_BUF_SIZE;
        }
    } else {
        sent = k;
        for (unsigned i = 0; i < k; i++) {
            frame_truncated[i] = frame_len[i] > VSW_BUF_SIZE;
            if (frame_truncated[i])
                frame_len[i] = VSW_BUF_SIZE;
        }
    }
    if (sent == 0)
        return;
    k = sent;
    unsigned model_drops[DROP_REASONS] = {0}, accepted = 0;
    for (unsigned i = 0; i < k; i++) {
        verdicts[i] = model_ingress(sw, port, frames[i], frame_len[i], frame_truncated[i]);
        if (verdicts[i].reason == DROP_REASONS)
            accepted++;
        else
            model_drops[verdicts[i].reason]++;
    }
    /* What a single frame does to the port's changed MAC (docs: mac-changes). */
    bool changed_mac_expected = false, had_extra = false;
    uint8_t extra_before[6] = {0};
    if (!port->is_uplink) {
        had_extra = port->has_extra_mac;
        memcpy(extra_before, port->extra_mac, 6);
        const uint8_t *src = frames[0] + 6;
        changed_mac_expected =
            k == 1 && verdicts[0].reason == DROP_REASONS && !same_mac(src, port->mac) &&
            effective(sw->security.mac_changes, port->pg->security.mac_changes) == POLICY_ACCEPT &&
            (port_owning(sw, src) < 0 || (port->has_extra_mac && same_mac(src, port->extra_mac)));
    }
    for (int id = 0; id < VSW_MAX_PORTS; id++)
        before[id] = sw->ports[id].counters;

    if (direct) {
        struct ingress_batch *ib = sw->in;
        for (unsigned i = 0; i < k; i++) {
            memcpy(ib->buf[i], frames[i], frame_len[i]);
            ib->msgs[i].msg_len = (unsigned)frame_len[i];
            ib->msgs[i].msg_hdr.msg_flags = frame_truncated[i] ? MSG_TRUNC : 0;
            ASAN_POISON_MEMORY_REGION(ib->buf[i] + frame_len[i], VSW_BUF_SIZE - frame_len[i]);
        }
        forward_batch(sw, port, k);
        ASAN_UNPOISON_MEMORY_REGION(ib, sizeof(*ib));
    } else if (port->is_uplink) {
        uplink_receive(sw);
        CHECK(port->in_use, "uplink closed after reading frames");
    } else {
        CHECK(port_receive(sw, port, false), "port_receive reported a close for a live client");
    }

    const struct port_counters *c = &port->counters;
    CHECK(c->rx_frames - before[ingress].rx_frames == k, "%u frames in, rx_frames moved by %llu", k,
          (unsigned long long)(c->rx_frames - before[ingress].rx_frames));
    uint64_t bytes = 0;
    for (unsigned i = 0; i < k; i++)
        bytes += frame_len[i];
    CHECK(c->rx_bytes - before[ingress].rx_bytes == bytes, "rx_bytes off");
    for (int r = 0; r < DROP_REASONS; r++)
        if (r != DROP_NO_ROUTE && r != DROP_SHAPING && r != DROP_QUEUE_FULL)
            CHECK(c->drops[r] - before[ingress].drops[r] == model_drops[r], "%s: the rules drop %u of the batch, counted %llu",
                  drop_reason_name((enum drop_reason)r), model_drops[r],
                  (unsigned long long)(c->drops[r] - before[ingress].drops[r]));
    uint64_t no_route = c->drops[DROP_NO_ROUTE] - before[ingress].drops[DROP_NO_ROUTE];
    CHECK(no_route <= accepted, "no_route %llu of %u accepted frames", (unsigned long long)no_route, accepted);

    uint64_t got[VSW_MAX_PORTS] = {0}, total_attempts = 0;
    for (int q = 0; q < VSW_MAX_PORTS; q++) {
        if (!sw->ports[q].in_use)
            continue;
        uint64_t a = attempts(&sw->ports[q].counters, &before[q]);
        total_attempts += a;
        if (q == ingress)
            CHECK(a == 0, "port %d: the switch tried to send its own frame back", q);
        if (h->client[q] >= 0) {
            got[q] = check_received(h, q, ingress, k);
            uint64_t tx = sw->ports[q].counters.tx_frames - before[q].tx_frames;
            CHECK(got[q] == tx, "port %d received %llu frames, tx_frames moved by %llu", q, (unsigned long long)got[q],
                  (unsigned long long)tx);
        }
    }
    CHECK(total_attempts >= accepted - no_route, "%u frames accepted, %llu without a route, only %llu sends tried",
          accepted, (unsigned long long)no_route, (unsigned long long)total_attempts);
    if (k == 1)
        check_single(h, ingress, got, changed_mac_expected, extra_before, had_extra);
}

/* ---- hellos ---- */

static const char *const hello_groups[] = {"default", "v10", "v20", "trunk", "v10b", "nosuch", ""};

/* A hello from the input (one in eight with faults), or `preset`. */
static void op_hello(struct harness *h, struct input *in, const struct vdsw_hello *preset)
{
    struct vswitch *sw = h->sw;
    if (sw->attached_ports >= MAX_VM_PORTS)
        return;
    uint8_t sel = preset ? 0 : take(in);
    if ((sel & 0xe0) != 0xe0)
        sel = 0;
    struct vdsw_hello hello = {0};
    hello.magic = htole32(VDSW_MAGIC);
    hello.version = htole16(VDSW_VERSION);
    if (sel & 1) {
        uint32_t high = take16(in);
        hello.magic = high << 16 | take16(in);
    }
    if (sel & 2)
        hello.version = take16(in);
    if (sel & 4)
        hello.flags = take16(in);
    if (preset) {
        hello = *preset;
    } else {
        uint8_t kind = take(in);
        pick_mac(h, in, (kind & 0xe0) == 0xe0 ? kind : (kind & 4) ? 2u : 4u, -1, hello.mac);
        uint8_t g = take(in) % 8;
        if (g < 7)
            snprintf(hello.portgroup, sizeof(hello.portgroup), "%s", hello_groups[g]);
        else
            memset(hello.portgroup, 'x', sizeof(hello.portgroup));
        for (size_t i = 0; i < sizeof(hello.client_name); i++)
            hello.client_name[i] = (char)take(in);
    }
    uint8_t msg[96];
    memcpy(msg, &hello, sizeof(hello));
    size_t len = VDSW_HELLO_SIZE;
    if (sel & 8) {
        len = take(in) % sizeof(msg);
        for (size_t i = VDSW_HELLO_SIZE; i < len; i++)
            msg[i] = take(in);
    }
    if (sel & 16)
        for (size_t i = 0; i < len; i++)
            msg[i] = take(in);
    memcpy(&hello, msg, sizeof(hello));

    /* The protocol table of docs/switch.md. */
    enum vdsw_status want = VDSW_STATUS_OK;
    char group[sizeof(hello.portgroup) + 1] = {0};
    memcpy(group, hello.portgroup, sizeof(hello.portgroup));
    if (len != VDSW_HELLO_SIZE || le32toh(hello.magic) != VDSW_MAGIC || le16toh(hello.version) != VDSW_VERSION ||
        hello.flags != 0 || (hello.mac[0] & 1) || zero_mac(hello.mac) ||
        strnlen(hello.portgroup, sizeof(hello.portgroup)) == sizeof(hello.portgroup))
        want = VDSW_STATUS_BAD_HELLO;
    else if (!portgroup_find(sw, group))
        want = VDSW_STATUS_UNKNOWN_PORTGROUP;
    else if (sw->attached_ports == VSW_MAX_PORTS - 1)
        want = VDSW_STATUS_SWITCH_FULL;
    else if (port_owning(sw, hello.mac) >= 0)
        want = VDSW_STATUS_MAC_IN_USE;

    int fd = listener_connect(&port_listener, SOCK_SEQPACKET);
    if (send(fd, msg, len, MSG_NOSIGNAL) < 0)
        fatal("send hello");
    unsigned pending = sw->hello_count, failures = sw->hello_failures;
    hello_accept(sw);
    CHECK(sw->hellos && sw->hello_count == (pending < VSW_MAX_PENDING_HELLOS ? pending + 1 : pending),
          "hello_accept: %u pending before, %u after", pending, sw->hello_count);
    hello_receive(sw, sw->hellos);
    struct vdsw_hello_ack ack;
    ssize_t n = recv(fd, &ack, sizeof(ack), MSG_DONTWAIT | MSG_TRUNC);
    unsigned evicted = pending >= VSW_MAX_PENDING_HELLOS;
    if (len == 0) {
        CHECK(n == 0, "an empty hello got %zd bytes back instead of a close", n);
        CHECK(sw->hello_failures == failures + evicted, "hello_failures moved for an empty hello");
        close(fd);
        return;
    }
    CHECK(n == VDSW_HELLO_SIZE, "hello-ack is %zd bytes", n);
    CHECK(le32toh(ack.magic) == VDSW_MAGIC && le16toh(ack.version) == VDSW_VERSION, "hello-ack header wrong");
    CHECK(le16toh(ack.status) == want, "hello got status %u, the protocol says %u", le16toh(ack.status), want);
    CHECK(le16toh(ack.mtu) == sw->mtu, "hello-ack MTU %u, switch %u", le16toh(ack.mtu), sw->mtu);
    CHECK(memchr(ack.message, 0, sizeof(ack.message)), "hello-ack message not NUL-terminated");
    if (want != VDSW_STATUS_OK) {
        CHECK(sw->hello_failures == failures + evicted + 1, "hello_failures not counted");
        CHECK(recv(fd, &ack, sizeof(ack), MSG_DONTWAIT) == 0, "connection left open after a refused hello");
        close(fd);
        return;
    }
    uint32_t id = le32toh(ack.port_id);
    CHECK(id >= 1 && id < VSW_MAX_PORTS && sw->ports[id].in_use && h->client[id] < 0, "ack names port %u", id);
    const struct port *p = &sw->ports[id];
    CHECK(same_mac(p->mac, hello.mac) && strcmp(p->pg->name, group) == 0, "port %u attached with other MAC or group", id);
    char client[sizeof(hello.client_name) + 1] = {0};
    memcpy(client, hello.client_name, sizeof(hello.client_name));
    for (char *c = client; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    CHECK(strcmp(client, p->client_name) == 0, "client name '%s' stored as '%s'", client, p->client_name);
    h->client[id] = fd;
}

static void op_idle_connect(struct harness *h)
{
    struct vswitch *sw = h->sw;
    if (h->idle_count == MAX_IDLE)
        return;
    int fd = listener_connect(&port_listener, SOCK_SEQPACKET);
    h->idle[h->idle_count++] = fd;
    unsigned pending = sw->hello_count, failures = sw->hello_failures;
    hello_accept(sw);
    bool full = pending == VSW_MAX_PENDING_HELLOS;
    CHECK(sw->hello_count == (full ? pending : pending + 1) && sw->hello_failures == failures + full,
          "pending hellos %u -> %u, rejects %u -> %u", pending, sw->hello_count, failures, sw->hello_failures);
}

/* ---- detach ---- */

static void op_detach(struct harness *h, struct input *in)
{
    struct vswitch *sw = h->sw;
    int ids[VSW_MAX_PORTS];
    unsigned n = vm_ports(sw, ids);
    uint8_t b = take(in);
    if (!n)
        return;
    int id = ids[b % n];
    struct port *port = &sw->ports[id];
    struct portgroup *pg = port->pg;
    unsigned pg_ports = pg->attached_ports;
    close(h->client[id]);
    h->client[id] = -1;
    CHECK(!port_receive(sw, port, b & 1), "port_receive did not see port %d's client go", id);
    port_detach(sw, port);
    CHECK(!port->in_use && pg->attached_ports == pg_ports - 1, "port %d still attached", id);
}

/* ---- control ---- */

static const char *json_value(const char *p, int depth);

static const char *json_space(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
        p++;
    }
    return p + 1;
}

static const char *json_number(const char *p)
{
    const char *start = p += *p == '-';
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == start)
        return NULL;
    if (*p == '.') {
        start = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == start)
            return NULL;
    }
    return p;
}

static const char *json_members(const char *p, int depth, char close, bool keyed)
{
    p = json_space(p);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (keyed) {
            p = json_string(json_space(p));
            if (!p || *(p = json_space(p)) != ':')
                return NULL;
            p++;
        }
        p = json_value(p, depth + 1);
        if (!p)
            return NULL;
        p = json_space(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *json_value(const char *p, int depth)
{
    if (depth > 16)
        return NULL;
    p = json_space(p);
    if (*p == '{')
        return json_members(p + 1, depth, '}', true);
    if (*p == '[')
        return json_members(p + 1, depth, ']', false);
    if (*p == '"')
        return json_string(p);
    for (const char *const *word = (const char *const[]){"true", "false", "null", NULL}; *word; word++)
        if (strncmp(p, *word, strlen(*word)) == 0)
            return p + strlen(*word);
    return json_number(p);
}

static void check_response(const char *text, size_t len, bool json)
{
    CHECK(strlen(text) == len, "response holds a NUL byte");
    bool ok = strncmp(text, "OK\n", 3) == 0;
    CHECK(ok || strncmp(text, "ERR ", 4) == 0, "response starts with neither OK nor ERR: %.40s", text);
    CHECK(len > 0 && text[len - 1] == '\n', "response does not end with a newline");
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)text[i] >= 0x20 || text[i] == '\n' || text[i] == '\t', "control byte 0x%02x in response",
              (unsigned char)text[i]);
    if (ok && json) {
        const char *end = json_value(text + 3, 0);
        CHECK(end && *json_space(end) == '\0', "format=json body is not one JSON document: %.200s", text + 3);
    }
}

static const char *const group_names[] = {"default", "v10", "v20", "trunk", "v10b", "new", "bad name", "",
                                          "a-name.longer_than.thirty-one.chars"};
static const char *const vlan_values[] = {"0", "10", "20", "4095", "4096", "-1", "x", "30"};
static const char *const policy_keys[] = {"promiscuous", "mac-changes", "forged-transmits", "shaping", "vlan"};
static const char *const policy_values[] = {"accept", "reject", "inherit", "on", "off", "maybe"};
static const char *const shaping_values[] = {"off", "inherit", "avg=8M,peak=16M,burst=64k", "avg=1k,peak=2k,burst=1",
                                             "avg=100,peak=100,burst=100", "avg=nan,peak=1,burst=1",
                                             "avg=1e400,peak=1e400,burst=1", "avg=2M,peak=1M,burst=1k",
                                             "avg=1,peak=1e15,burst=1e15", "avg=1,peak=2"};
static const char *const mtu_values[] = {"68", "1500", "9000", "67", "9001", "1499", "abc", ""};
static const char *const cap_values[] = {"1", "2", "8", "64", "4096", "0", "65536", "1048577"};
static const char *const aging_values[] = {"1", "300", "0", "1000000"};
#define PICK(table, b) table[(b) % (sizeof(table) / sizeof(table[0]))]

static void append(char *line, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *line, size_t size, const char *fmt, ...)
{
    size_t used = strlen(line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, size - used, fmt, ap);
    va_end(ap);
}

static void policy_pair(char *line, size_t size, struct input *in)
{
    const char *key = PICK(policy_keys, take(in));
    uint8_t b = take(in);
    const char *value = !strcmp(key, "shaping") ? PICK(shaping_values, b)
                        : !strcmp(key, "vlan")  ? PICK(vlan_values, b)
                                                : PICK(policy_values, b);
    append(line, size, " %s=%s", key, value);
}

/* A request line from the command set with values near the edges. */
static void structured_command(struct input *in, char *line, size_t size)
{
    line[0] = '\0';
    uint8_t sel = take(in);
    switch (sel % 16) {
    case 0:
        append(line, size, "status");
        break;
    case 1:
        append(line, size, "portgroup.add name=%s", PICK(group_names, take(in)));
        if (take(in) & 1)
            append(line, size, " vlan=%s", PICK(vlan_values, take(in)));
        break;
    case 2:
        append(line, size, "portgroup.remove name=%s", PICK(group_names, take(in)));
        break;
    case 3:
        append(line, size, "portgroup.list");
        break;
    case 4:
        append(line, size, "portgroup.set name=%s", PICK(group_names, take(in)));
        for (unsigned i = take(in) % 4; i > 0; i--)
            policy_pair(line, size, in);
        break;
    case 5:
        append(line, size, "policy.set");
        for (unsigned i = take(in) % 4; i > 0; i--)
            policy_pair(line, size, in);
        break;
    case 6:
        append(line, size, "policy.show");
        break;
    case 7:
        append(line, size, "uplink.show");
        break;
    case 8:
        append(line, size, "mtu.set mtu=%s", PICK(mtu_values, take(in)));
        break;
    case 9:
        append(line, size, "mtu.show");
        break;
    case 10:
        append(line, size, "port.list");
        break;
    case 11:
        append(line, size, "port.stats");
        if (take(in) & 1)
            append(line, size, " port=%d", take(in) % 260);
        break;
    case 12:
        append(line, size, "mac.list");
        break;
    case 13: {
        uint8_t b = take(in);
        append(line, size, "mac.set");
        if (b & 1)
            append(line, size, " cap=%s", PICK(cap_values, take(in)));
        if (b & 2)
            append(line, size, " aging=%s", PICK(aging_values, take(in)));
        break;
    }
    case 14:
        append(line, size, "mac.flush");
        break;
    default:
        append(line, size, "uplink.set tap=none");
        break;
    }
    if (sel & 0x10)
        append(line, size, " format=json");
    else if (sel & 0x20)
        append(line, size, " format=text");
}

/* Raw bytes as a line, sometimes after a real command name.  uplink.set
 * with a name would create a TAP device on this host, so it is left out. */
static bool raw_command(struct input *in, char *line, size_t size)
{
    static const char *const names[] = {"status", "portgroup.add", "portgroup.set", "policy.set", "mtu.set",
                                        "port.stats", "mac.set", "portgroup.remove"};
    uint8_t sel = take(in);
    size_t len = 0;
    if (sel & 1)
        len = (size_t)snprintf(line, size, "%s ", PICK(names, sel >> 1));
    size_t n = take(in);
    for (size_t i = 0; i < n && len < size - 1; i++) {
        char c = (char)take(in);
        if (c == '\0' || c == '\n')
            break;
        line[len++] = c;
    }
    line[len] = '\0';
    return !strstr(line, "uplink.set");
}

static void run_command(struct harness *h, char *line)
{
    bool json = strstr(line, "format=json") != NULL && !strstr(line, "format=text");
    struct output response = {0};
    command_execute(h->sw, line, &response);
    CHECK(response.data && !response.failed, "no response");
    check_response(response.data, response.len, json);
    out_free(&response);
    sync_clients(h);
}

static bool control_listed(const struct vswitch *sw, const struct control_conn *conn)
{
    for (const struct control_conn *c = sw->controls; c; c = c->next)
        if (c == conn)
            return true;
    return false;
}

/* A request through a control connection, in up to three pieces; the client
 * may stop early, hang up, or stall until the timeout. */
static void op_control(struct harness *h, struct input *in)
{
    struct vswitch *sw = h->sw;
    static char line[VSW_CONTROL_LINE_MAX + 64];
    uint8_t sel = take(in);
    bool json = false;
    size_t len;
    if (sel & 1) {
        structured_command(in, line, sizeof(line) - 1);
        json = strstr(line, "format=json") != NULL;
        len = strlen(line);
        line[len++] = '\n';
    } else if (sel & 2) { /* longer than the limit, no newline */
        len = VSW_CONTROL_LINE_MAX + (sel >> 4);
        memset(line, 'a', len);
    } else {
        if (!raw_command(in, line, sizeof(line) - 1))
            return;
        len = strlen(line);
        line[len++] = '\n';
    }
    int fd = listener_connect(&control_listener, SOCK_STREAM);
    unsigned clients = sw->control_count;
    control_accept(sw);
    CHECK(sw->control_count == clients + 1 && sw->controls, "control_accept did not take the connection");
    struct control_conn *conn = sw->controls;
    unsigned pieces = 1 + (sel >> 2) % 3;
    size_t sent = 0;
    for (unsigned i = 0; i < pieces && sent < len && control_listed(sw, conn); i++) {
        size_t part = i + 1 == pieces ? len - sent : (len - sent) / 2;
        if (!(sel & 0x80) || i + 1 < pieces) {
            ssize_t n = send(fd, line + sent, part, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        control_handle(sw, conn, EPOLLIN);
    }
    if (control_listed(sw, conn) && !conn->writing) {
        if (sel & 0x40) {
            shutdown(fd, SHUT_WR);
            control_handle(sw, conn, EPOLLIN | EPOLLRDHUP);
            CHECK(!control_listed(sw, conn), "control connection kept after its client hung up mid-request");
        } else {
            control_expire(sw, vsw_now_s() + VSW_CONTROL_TIMEOUT_S);
            CHECK(!control_listed(sw, conn), "stalled control connection kept past its deadline");
        }
    }
    static char reply[1 << 20];
    size_t got = 0;
    for (int rounds = 0; rounds < 1000; rounds++) {
        ssize_t n = recv(fd, reply + got, sizeof(reply) - 1 - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        if (!control_listed(sw, conn))
            break;
        control_handle(sw, conn, EPOLLOUT);
    }
    CHECK(!control_listed(sw, conn), "control connection still open after its response");
    ssize_t n;
    while ((n = recv(fd, reply + got, sizeof(reply) - 1 - got, MSG_DONTWAIT)) > 0)
        got += (size_t)n;
    reply[got] = '\0';
    if (sent == len && got)
        check_response(reply, got, json);
    close(fd);
    sync_clients(h);
}

/* ---- time ---- */

static void op_time(struct harness *h, struct input *in)
{
    struct vswitch *sw = h->sw;
    uint64_t now = vsw_now_s();
    switch (take(in) % 4) {
    case 0:
        mac_table_expire(&sw->macs, now + sw->macs.aging_s + 1);
        CHECK(sw->macs.learned == 0, "%zu learned entries survived their aging time", sw->macs.learned);
        break;
    case 1:
        mac_table_expire(&sw->macs, now);
        break;
    case 2:
        hello_expire(sw, now + VSW_HELLO_TIMEOUT_S);
        CHECK(sw->hello_count == 0, "%u hellos kept past their deadline", sw->hello_count);
        break;
    default:
        control_expire(sw, now + VSW_CONTROL_TIMEOUT_S);
        CHECK(sw->control_count == 0, "control connections kept past their deadline");
        break;
    }
}

/* ---- the entry point ---- */

enum op { OP_FRAME, OP_FRAME_DIRECT, OP_BATCH, OP_BATCH_DIRECT, OP_HELLO, OP_IDLE, OP_DETACH, OP_COMMAND,
          OP_RAW_COMMAND, OP_CONTROL, OP_TIME, OP_UPLINK, OPS };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool started;
    if (!started) {
        signal(SIGPIPE, SIG_IGN);
        listener_open(&port_listener, SOCK_SEQPACKET, "port");
        listener_open(&control_listener, SOCK_STREAM, "control");
        started = true;
    }
    struct input in = {data, size, 0};
    static const unsigned mtus[] = {1500, VDSW_MIN_MTU, VDSW_MAX_MTU, 576};
    uint8_t setup = take(&in);
    size_t cap = (setup & 0x10) ? VSW_DEFAULT_MAC_CAP : 1 + take(&in) % 32;
    struct harness h;
    harness_start(&h, mtus[setup & 3], cap, (setup & 0x20) ? 1 : VSW_DEFAULT_MAC_AGING);
    if (setup & 4)
        uplink_attach(&h);
    if (setup & 8) {
        char line[128];
        snprintf(line, sizeof(line), "policy.set promiscuous=%s forged-transmits=%s mac-changes=%s",
                 (setup & 0x40) ? "accept" : "reject", (setup & 0x80) ? "accept" : "reject",
                 (setup & 0x80) ? "accept" : "reject");
        run_command(&h, line);
    }
    /* A few VMs to start with, one per port group (the trunk included) in turn. */
    for (unsigned i = 0, n = take(&in) % 6; i < n; i++) {
        struct vdsw_hello hello = {.magic = htole32(VDSW_MAGIC), .version = htole16(VDSW_VERSION),
                                   .mac = {0x02, 0, 0, 0, 0, (uint8_t)i}};
        snprintf(hello.portgroup, sizeof(hello.portgroup), "%s", portgroups[(setup + i) % PORTGROUPS].name);
        snprintf(hello.client_name, sizeof(hello.client_name), "vm%u \"\\", i); /* JSON must escape these */
        op_hello(&h, &in, &hello);
    }
    check_switch(&h);
    for (unsigned i = 0; i < MAX_OPS && in.pos < in.size; i++) {
        char line[512];
        switch ((enum op)(take(&in) % OPS)) {
        case OP_FRAME:
            op_frames(&h, &in, 1, false);
            break;
        case OP_FRAME_DIRECT:
            op_frames(&h, &in, 1, true);
            break;
        case OP_BATCH:
            op_frames(&h, &in, 2 + take(&in) % (VSW_BATCH - 1), false);
            break;
        case OP_BATCH_DIRECT:
            op_frames(&h, &in, 2 + take(&in) % (VSW_BATCH - 1), true);
            break;
        case OP_HELLO:
            op_hello(&h, &in, NULL);
            break;
        case OP_IDLE:
            op_idle_connect(&h);
            break;
        case OP_DETACH:
            op_detach(&h, &in);
            break;
        case OP_COMMAND:
            structured_command(&in, line, sizeof(line));
            run_command(&h, line);
            break;
        case OP_RAW_COMMAND:
            if (raw_command(&in, line, sizeof(line)))
                run_command(&h, line);
            break;
        case OP_CONTROL:
            op_control(&h, &in);
            break;
        case OP_TIME:
            op_time(&h, &in);
            break;
        default:
            if (!h.sw->ports[VSW_UPLINK_PORT].in_use)
                uplink_attach(&h);
            else
                run_command(&h, (char[]){"uplink.set tap=none"});
            break;
        }
        check_switch(&h);
    }
    harness_stop(&h);
    return 0;
}
