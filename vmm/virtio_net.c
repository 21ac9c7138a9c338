/* virtio-net device: RX/TX queues bridged to a vdfs-switch port socket,
 * served by one I/O thread per NIC, with reconnection. */
#include "virtio_net.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "../vswitch/protocol.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_HDR_LEN 12
#define NET_CONFIG_LEN 12
#define NET_QUEUE_SIZE 256
#define RX_QUEUE 0
#define TX_QUEUE 1
#define BATCH 64
/* Frames handed to the switch in one sendmmsg, and the iovec room they
 * share (at least one chain's worth, VIRTQ_MAX_SIZE). */
#define TX_BATCH 32
#define TX_IOV_POOL 512
/* Frames taken from the switch in one recvmmsg. */
#define RX_BATCH VIRTIO_NET_RX_HOLD
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define FRAME_MAX (VDSW_MAX_MTU + VDSW_FRAME_OVERHEAD)
#define MAX_NICS 16

enum link_state { LINK_DISCONNECTED, LINK_HELLO, LINK_CONNECTED };

struct virtio_net {
    struct virtio_pci *vp;
    struct nic_config cfg;
    char socket_path[CONFIG_PATH_MAX];
    uint8_t mac[6];
    uint8_t config[NET_CONFIG_LEN];

    pthread_t thread;
    int epfd, stop_fd, timer_fd;
    int sock;
    uint32_t sock_events; /* epoll interest currently registered */
    enum link_state state;
    unsigned backoff_ms;
    bool rx_starved;      /* no RX buffers: socket input paused until a kick */
    bool tx_blocked;      /* socket full: TX paused until EPOLLOUT */
    bool connect_error_logged;
    struct virtio_net_stats stats;
    struct iovec iov[VIRTQ_MAX_SIZE];
    /* Frames received from the switch; rx_next to rx_have-1 wait for
     * receive buffers. */
    unsigned rx_next, rx_have;
    struct mmsghdr rx_msgs[RX_BATCH];
    struct iovec rx_iov[RX_BATCH];
    uint8_t rx_frames[RX_BATCH][FRAME_MAX + 1];
    /* TX chains taken from the ring and not yet given back, in ring order
     * (tx_nheads; dropped ones among them), and their frames: frames
     * tx_sent to tx_count-1 still go to the switch (kept while the socket
     * is full). */
    unsigned tx_nheads, tx_count, tx_sent, tx_iov_used;
    uint16_t tx_heads[TX_BATCH];
    struct mmsghdr tx_msgs[TX_BATCH];
    struct iovec tx_iov[TX_IOV_POOL];
};

static struct virtio_net *nics[MAX_NICS];
static int nnics;
static pthread_mutex_t nics_lock = PTHREAD_MUTEX_INITIALIZER;

static void net_log(struct virtio_net *net, const char *msg)
{
    fprintf(stderr, "vdfs-vm: virtio-net %s (%s): %s\n", virtio_pci_location(net->vp),
            net->cfg.portgroup, msg);
}

/* ---- link state (I/O thread, lock held) ---- */

static void set_link(struct virtio_net *net, bool up)
{
    if (net->stats.link_up == up)
        return;
    net->stats.link_up = up;
    pci_put16(net->config + 6, up ? VIRTIO_NET_S_LINK_UP : 0);
    virtio_pci_config_changed(net->vp);
}

static void update_socket_interest(struct virtio_net *net)
{
    if (net->sock < 0)
        return;
    uint32_t want = 0;
    if (net->state == LINK_HELLO || (net->state == LINK_CONNECTED && !net->rx_starved))
        want |= EPOLLIN;
    if (net->state == LINK_CONNECTED && net->tx_blocked)
        want |= EPOLLOUT;
    if (want == net->sock_events)
        return;
    struct epoll_event ev = {.events = want, .data.fd = net->sock};
    epoll_ctl(net->epfd, EPOLL_CTL_MOD, net->sock, &ev);
    net->sock_events = want;
}

static void arm_timer(struct virtio_net *net, unsigned ms)
{
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L}};
    timerfd_settime(net->timer_fd, 0, &its, NULL);
}

static void net_tx(struct virtio_net *net);

static void disconnect(struct virtio_net *net, const char *why)
{
    bool tx_was_blocked = net->tx_blocked;
    if (net->sock >= 0) {
        epoll_ctl(net->epfd, EPOLL_CTL_DEL, net->sock, NULL);
        close(net->sock);
        net->sock = -1;
    }
    if (net->state == LINK_CONNECTED) {
        char msg[160];
        snprintf(msg, sizeof(msg), "switch port lost (%s); reconnecting", why);
        net_log(net, msg);
    }
    net->state = LINK_DISCONNECTED;
    net->tx_blocked = false;
    net->rx_next = net->rx_have = 0; /* frames of a lost port are dropped */
    net->sock_events = 0;
    set_link(net, false);
    arm_timer(net, net->backoff_ms);
    net->backoff_ms = net->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : net->backoff_ms * 2;
    /* Chains held back for an EPOLLOUT that will never come would wait for
     * a kick the guest was told not to send: drop them now, as a port that
     * is down drops every frame, and turn notifications back on. */
    if (tx_was_blocked)
        net_tx(net);
}

static void try_connect(struct virtio_net *net)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(net->socket_path) >= sizeof(sa.sun_path)) {
        if (!net->connect_error_logged)
            net_log(net, "switch socket path is too long for a unix socket");
        net->connect_error_logged = true;
        return;
    }
    strcpy(sa.sun_path, net->socket_path);
    /* Non-blocking, so a switch with a full backlog cannot stall the vCPUs
     * waiting for this device's lock; that case is retried like any other. */
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (!net->connect_error_logged) {
            char msg[CONFIG_PATH_MAX + 96];
            snprintf(msg, sizeof(msg), "cannot reach switch at %s: %s; retrying",
                     net->socket_path, strerror(errno));
            net_log(net, msg);
            net->connect_error_logged = true;
        }
        if (s >= 0)
            close(s);
        disconnect(net, "connect failed");
        return;
    }
    uint8_t hello[VDSW_HELLO_SIZE] = {0};
    pci_put32(hello, VDSW_MAGIC);
    pci_put16(hello + 4, VDSW_VERSION);
    memcpy(hello + 8, net->mac, 6);
    memcpy(hello + 16, net->cfg.portgroup, strnlen(net->cfg.portgroup, 32));
    snprintf((char *)hello + 48, 16, "vdfs-vm-%d", (int)getpid());
    if (send(s, hello, sizeof(hello), MSG_NOSIGNAL) != (ssize_t)sizeof(hello)) {
        close(s);
        disconnect(net, "hello not sent");
        return;
    }
    net->sock = s;
    net->state = LINK_HELLO;
    net->sock_events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(net->epfd, EPOLL_CTL_ADD, s, &ev);
}

static void read_hello_ack(struct virtio_net *net)
{
    uint8_t ack[VDSW_HELLO_SIZE + 1];
    ssize_t n = recv(net->sock, ack, sizeof(ack), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n != VDSW_HELLO_SIZE || pci_get32(ack) != VDSW_MAGIC || pci_get16(ack + 4) != VDSW_VERSION) {
        net_log(net, "switch sent a malformed hello reply");
        disconnect(net, "bad hello reply");
        return;
    }
    uint16_t status = pci_get16(ack + 6);
    if (status != VDSW_STATUS_OK) {
        char msg[128];
        snprintf(msg, sizeof(msg), "switch refused the port (status %u: %.48s)", status,
                 (const char *)ack + 16);
        net_log(net, msg);
        disconnect(net, "refused");
        return;
    }
    uint16_t mtu = pci_get16(ack + 12);
    net->stats.port_id = pci_get32(ack + 8);
    net->stats.mtu = mtu >= VDSW_MIN_MTU && mtu <= VDSW_MAX_MTU ? mtu : VDSW_DEFAULT_MTU;
    net->stats.connects++;
    net->state = LINK_CONNECTED;
    net->backoff_ms = BACKOFF_MIN_MS;
    net->connect_error_logged = false;
    net->rx_starved = false;
    set_link(net, true);
    char msg[96];
    snprintf(msg, sizeof(msg), "connected to switch port %u (mtu %u)", net->stats.port_id,
             net->stats.mtu);
    net_log(net, msg);
}

/* ---- queues (I/O thread, lock held) ---- */

static void queue_broken(struct virtio_net *net, const char *why)
{
    virtio_pci_set_needs_reset(net->vp, why);
}

/* Takes up to `want` frames from the switch.  Returns false when there
 * are none (or the port was lost). */
static bool rx_receive(struct virtio_net *net, unsigned want)
{
    for (unsigned i = 0; i < want; i++) {
        net->rx_iov[i] = (struct iovec){net->rx_frames[i], sizeof(net->rx_frames[i])};
        net->rx_msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &net->rx_iov[i], .msg_iovlen = 1}};
    }
    int got = recvmmsg(net->sock, net->rx_msgs, want, MSG_DONTWAIT, NULL);
    if (got <= 0) {
        if (got == 0 || (errno != EAGAIN && errno != EINTR))
            disconnect(net, got == 0 ? "switch closed the port" : strerror(errno));
        return false;
    }
    net->rx_next = 0;
    net->rx_have = (unsigned)got;
    return true;
}

static void net_rx(struct virtio_net *net)
{
    struct virtqueue *vq = virtio_pci_live_queue(net->vp, RX_QUEUE);
    if (net->state != LINK_CONNECTED)
        return;
    if (!vq) {
        net->rx_starved = true; /* frames wait in the socket until the driver is up */
        return;
    }
    char err[256];
    bool pushed = false;
    net->rx_starved = false;
    for (unsigned frames = 0; frames < BATCH;) {
        struct virtq_chain c = {.iov = net->iov, .iov_cap = VIRTQ_MAX_SIZE};
        int rc = virtqueue_pop(vq, &c, err, sizeof(err));
        if (rc < 0) {
            queue_broken(net, err);
            return;
        }
        if (rc == 0) {
            if (virtqueue_enable_notify(vq))
                continue; /* buffers arrived meanwhile */
            net->rx_starved = true; /* the frame waits for a buffer */
            break;
        }
        if (c.nout) {
            snprintf(err, sizeof(err), "receive buffer at head %u has device-readable "
                                       "descriptors", c.head);
            queue_broken(net, err);
            return;
        }
        /* Frames leave the socket only when there is a buffer for the
         * first of them, and never more than this pass may still use:
         * then frames are held only when buffers run out (the driver's
         * next kick brings them), never when the pass stops at BATCH (no
         * EPOLLIN would come for frames already out of the socket). */
        if (net->rx_next == net->rx_have &&
            !rx_receive(net, BATCH - frames < RX_BATCH ? BATCH - frames : RX_BATCH)) {
            virtqueue_unpop(vq, c.head);
            break;
        }
        const uint8_t *frame = net->rx_frames[net->rx_next];
        size_t n = net->rx_msgs[net->rx_next].msg_len;
        if (n == 0) { /* a SEQPACKET socket's end of file */
            virtqueue_unpop(vq, c.head);
            disconnect(net, "switch closed the port");
            break;
        }
        net->rx_next++;
        frames++; /* dropped ones too: a flood of them must not hold the device */
        if (n > FRAME_MAX || (uint64_t)n + VIRTIO_NET_HDR_LEN > c.in_len) {
            net->stats.rx_dropped_oversize++;
            virtqueue_unpop(vq, c.head);
            continue;
        }
        uint8_t hdr[VIRTIO_NET_HDR_LEN] = {0};
        pci_put16(hdr + 10, 1); /* num_buffers */
        iov_copy_to(c.iov, c.nin, 0, hdr, sizeof(hdr));
        iov_copy_to(c.iov, c.nin, sizeof(hdr), frame, n);
        virtqueue_push(vq, c.head, (uint32_t)n + VIRTIO_NET_HDR_LEN);
        net->stats.rx_frames++;
        pushed = true;
    }
    if (pushed && virtqueue_publish(vq))
        virtio_pci_interrupt_queue(net->vp, RX_QUEUE);
}

/* Sends the batched frames, then gives every batched chain back to the
 * driver.  Returns false if the socket filled first: the rest stay
 * batched, and are sent on EPOLLOUT. */
static bool tx_send_batch(struct virtio_net *net, struct virtqueue *vq, bool *pushed)
{
    while (net->tx_sent < net->tx_count) {
        if (net->state != LINK_CONNECTED) {
            net->stats.tx_dropped_disconnected += net->tx_count - net->tx_sent;
            break;
        }
        int sent = sendmmsg(net->sock, net->tx_msgs + net->tx_sent, net->tx_count - net->tx_sent,
                            MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0) {
            net->tx_sent += (unsigned)sent;
            net->stats.tx_frames += (unsigned)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
            net->tx_blocked = true;
            return false;
        }
        net->stats.tx_dropped_disconnected += net->tx_count - net->tx_sent;
        net->tx_sent = net->tx_count;
        disconnect(net, sent < 0 ? strerror(errno) : "the switch took no frame");
        break;
    }
    for (unsigned i = 0; i < net->tx_nheads; i++)
        virtqueue_push(vq, net->tx_heads[i], 0);
    *pushed |= net->tx_nheads > 0;
    net->tx_nheads = net->tx_count = net->tx_sent = net->tx_iov_used = 0;
    return true;
}

/* Batches one popped TX chain, with its frame unless it is dropped (a
 * malformed chain, or no switch to send to).  Chains go back to the driver
 * in ring order, a batch at a time.  Returns false if the socket filled:
 * the chain was then given back, or is batched. */
static bool tx_take(struct virtio_net *net, struct virtqueue *vq, const struct virtq_chain *c,
                    bool *pushed)
{
    uint64_t frame_len = c->out_len >= VIRTIO_NET_HDR_LEN ? c->out_len - VIRTIO_NET_HDR_LEN : 0;
    bool dropped = false;
    if (c->out_len < VIRTIO_NET_HDR_LEN || frame_len < 14 ||
        frame_len > (uint64_t)net->stats.mtu + VDSW_FRAME_OVERHEAD) {
        net->stats.tx_dropped_malformed++;
        dropped = true;
    } else if (net->state != LINK_CONNECTED) {
        net->stats.tx_dropped_disconnected++;
        dropped = true;
    }
    int n = 0;
    if (!dropped)
        n = iov_slice(c->iov, c->nout, VIRTIO_NET_HDR_LEN, frame_len, net->tx_iov + net->tx_iov_used,
                      TX_IOV_POOL - net->tx_iov_used);
    if (n < 0) { /* no iovec room left: send the batch, then take the chain */
        if (!tx_send_batch(net, vq, pushed)) {
            virtqueue_unpop(vq, c->head); /* the newest taken, so it can go back */
            return false;
        }
        return tx_take(net, vq, c, pushed);
    }
    net->tx_heads[net->tx_nheads++] = c->head;
    if (!dropped) {
        net->tx_msgs[net->tx_count++] = (struct mmsghdr){
            .msg_hdr = {.msg_iov = net->tx_iov + net->tx_iov_used, .msg_iovlen = (size_t)n}};
        net->tx_iov_used += (unsigned)n;
    }
    if (net->tx_nheads == TX_BATCH)
        return tx_send_batch(net, vq, pushed);
    return true;
}

static void net_tx(struct virtio_net *net)
{
    struct virtqueue *vq = virtio_pci_live_queue(net->vp, TX_QUEUE);
    if (!vq || net->tx_blocked)
        return;
    char err[256];
    bool pushed = false;
    if (!tx_send_batch(net, vq, &pushed))
        goto out;
    for (;;) {
        virtqueue_disable_notify(vq);
        for (;;) {
            struct virtq_chain c = {.iov = net->iov, .iov_cap = VIRTQ_MAX_SIZE};
            int rc = virtqueue_pop(vq, &c, err, sizeof(err));
            if (rc == 0)
                break;
            if (rc < 0) {
                queue_broken(net, err);
                return;
            }
            if (c.nin) {
                snprintf(err, sizeof(err), "transmit chain at head %u has device-writable "
                                           "descriptors", c.head);
                queue_broken(net, err);
                return;
            }
            if (!tx_take(net, vq, &c, &pushed))
                goto out; /* resumed on EPOLLOUT */
        }
        if (!tx_send_batch(net, vq, &pushed))
            goto out;
        if (!virtqueue_enable_notify(vq))
            break;
    }
out:
    if (pushed && virtqueue_publish(vq))
        virtio_pci_interrupt_queue(net->vp, TX_QUEUE);
}

static void *net_thread(void *arg)
{
    struct virtio_net *net = arg;
    int rx_kick = virtio_pci_queue_eventfd(net->vp, RX_QUEUE);
    int tx_kick = virtio_pci_queue_eventfd(net->vp, TX_QUEUE);
    virtio_pci_io_thread_start(net->vp);
    virtio_pci_lock(net->vp);
    try_connect(net);
    virtio_pci_unlock(net->vp);
    for (;;) {
        struct epoll_event ev[8];
        int n = epoll_wait(net->epfd, ev, 8, -1);
        if (n < 0 && errno != EINTR) {
            perror("vdfs-vm: virtio-net: epoll_wait");
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            eventfd_t ignored;
            if (fd == net->stop_fd)
                return NULL;
            virtio_pci_lock(net->vp);
            if (fd == rx_kick) {
                eventfd_read(rx_kick, &ignored);
                net_rx(net);
            } else if (fd == tx_kick) {
                eventfd_read(tx_kick, &ignored);
                net_tx(net);
            } else if (fd == net->timer_fd) {
                uint64_t expirations;
                if (read(net->timer_fd, &expirations, sizeof(expirations)) > 0 &&
                    net->state == LINK_DISCONNECTED)
                    try_connect(net);
            } else if (fd == net->sock && net->sock >= 0) {
                if (net->state == LINK_HELLO) {
                    if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                        read_hello_ack(net);
                } else {
                    if (ev[i].events & EPOLLOUT) {
                        net->tx_blocked = false;
                        net_tx(net);
                    }
                    if (net->sock >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                        net_rx(net);
                    if (net->sock >= 0 && net->rx_starved &&
                        (ev[i].events & (EPOLLHUP | EPOLLERR)))
                        disconnect(net, "switch closed the port");
                }
            }
            update_socket_interest(net);
            virtio_pci_unlock(net->vp);
        }
    }
}

/* Transport callbacks (lock held). */
static void net_reset(void *opaque)
{
    struct virtio_net *net = opaque;
    net->tx_blocked = false; /* the ring it referred to is gone */
    net->tx_nheads = net->tx_count = net->tx_sent = net->tx_iov_used = 0;
    net->rx_starved = true;  /* until the new driver posts buffers */
}

static void net_activate(void *opaque)
{
    struct virtio_net *net = opaque;
    eventfd_write(virtio_pci_queue_eventfd(net->vp, RX_QUEUE), 1);
    eventfd_write(virtio_pci_queue_eventfd(net->vp, TX_QUEUE), 1);
}

static const struct virtio_pci_ops net_ops = {.reset = net_reset, .activate = net_activate};

static void net_free(struct virtio_net *net)
{
    if (net->sock >= 0)
        close(net->sock);
    if (net->epfd >= 0)
        close(net->epfd);
    if (net->stop_fd >= 0)
        close(net->stop_fd);
    if (net->timer_fd >= 0)
        close(net->timer_fd);
    free(net);
}

int virtio_net_create(struct pci_bus *pci, struct vm_services *svc, const struct nic_config *cfg)
{
    pthread_mutex_lock(&nics_lock);
    int index = nnics;
    pthread_mutex_unlock(&nics_lock);
    if (index >= MAX_NICS)
        return -ENOSPC;
    struct virtio_net *net = calloc(1, sizeof(*net));
    if (!net)
        return -ENOMEM;
    net->cfg = *cfg;
    net->sock = net->epfd = net->stop_fd = net->timer_fd = -1;
    snprintf(net->socket_path, sizeof(net->socket_path), "%s",
             cfg->switch_socket[0] ? cfg->switch_socket : VIRTIO_NET_DEFAULT_SOCKET);
    if (cfg->mac_set) {
        memcpy(net->mac, cfg->mac, 6);
    } else {
        if (getrandom(net->mac, 6, 0) != 6)
            memset(net->mac, 0x5a, 6);
        net->mac[0] = (uint8_t)((net->mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
    }
    memcpy(net->config, net->mac, 6);
    pci_put16(net->config + 8, 1);  /* max_virtqueue_pairs */
    pci_put16(net->config + 10, VDSW_DEFAULT_MTU);
    net->stats.mtu = VDSW_DEFAULT_MTU;
    net->backoff_ms = BACKOFF_MIN_MS;
    net->state = LINK_DISCONNECTED;
    net->rx_starved = true;

    struct virtio_pci_params params = {
        .name = "virtio-net",
        .device_type = VIRTIO_ID_NET,
        .class_code = 0x020000,
        .features = 1ull << VIRTIO_F_RING_EVENT_IDX | 1ull << VIRTIO_NET_F_MAC |
                    1ull << VIRTIO_NET_F_STATUS,
        .num_queues = 2,
        .queue_max_size = NET_QUEUE_SIZE,
        .device_config = net->config,
        .device_config_len = NET_CONFIG_LEN,
    };
    int rc;
    net->epfd = epoll_create1(EPOLL_CLOEXEC);
    net->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    net->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (net->epfd < 0 || net->stop_fd < 0 || net->timer_fd < 0) {
        rc = -errno;
        goto fail;
    }
    net->vp = virtio_pci_create(pci, svc, &params, &net_ops, net);
    if (!net->vp) {
        rc = -ENODEV;
        goto fail;
    }
    int fds[4] = {virtio_pci_queue_eventfd(net->vp, RX_QUEUE),
                  virtio_pci_queue_eventfd(net->vp, TX_QUEUE), net->stop_fd, net->timer_fd};
    for (int i = 0; i < 4; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(net->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            rc = -errno;
            goto fail_vp;
        }
    }
    rc = -pthread_create(&net->thread, NULL, net_thread, net);
    if (rc)
        goto fail_vp;
    pthread_mutex_lock(&nics_lock);
    index = nnics;
    nics[nnics++] = net;
    pthread_mutex_unlock(&nics_lock);
    return index;
fail_vp:
    virtio_pci_destroy(net->vp);
fail:
    fprintf(stderr, "vdfs-vm: virtio-net %s: cannot create device: %s\n", cfg->portgroup,
            strerror(-rc));
    net_free(net);
    return rc;
}

int virtio_net_get_stats(int index, struct virtio_net_stats *out)
{
    pthread_mutex_lock(&nics_lock);
    struct virtio_net *net = index >= 0 && index < nnics ? nics[index] : NULL;
    pthread_mutex_unlock(&nics_lock);
    if (!net)
        return -ENOENT;
    virtio_pci_lock(net->vp);
    *out = net->stats;
    out->rx_held = net->rx_have - net->rx_next;
    virtio_pci_unlock(net->vp);
    return 0;
}

void virtio_net_destroy_all(void)
{
    pthread_mutex_lock(&nics_lock);
    int count = nnics;
    struct virtio_net *list[MAX_NICS];
    memcpy(list, nics, sizeof(list));
    nnics = 0;
    pthread_mutex_unlock(&nics_lock);
    for (int i = 0; i < count; i++) {
        struct virtio_net *net = list[i];
        eventfd_write(net->stop_fd, 1);
        pthread_join(net->thread, NULL);
        virtio_pci_destroy(net->vp);
        net_free(net);
    }
}
