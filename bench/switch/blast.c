/* Frame blaster for bench/switch/run.sh: one process sends, another counts,
 * through either vdfs-switch (port protocol) or vde_switch (libvdeplug).
 *   blast vdfs|vde SOCKET send|recv FRAME_BYTES SECONDS
 * Only the attach differs between the two switches: libvdeplug connects its
 * data socket to the switch's port, so both senders move frames with the same
 * sendmmsg loop and both receivers with the same recvmmsg loop, on sockets
 * with the same buffer sizes.
 * Environment: BLAST_SOCKBUF=BYTES sets SO_SNDBUF/SO_RCVBUF (default 4 MiB).
 * The sender prints (stderr): sent=N cpu_ns=N
 * The receiver prints: frames=N bytes=N seconds=S fps=F gbps=G cpu_ns=N
 * (cpu_ns: the process's own user + system time). */
#include <endian.h>
#include <errno.h>
#include <libvdeplug.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

#define BATCH 64

static const uint8_t sender_mac[6] = {0x02, 0xbe, 0, 0, 0, 1};
static const uint8_t receiver_mac[6] = {0x02, 0xbe, 0, 0, 0, 2};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* 4 MiB buffers by default (BLAST_SOCKBUF=BYTES overrides), so a sender
 * rarely sleeps on a full socket.  A deep queue is not free: frames that wait
 * long in it are out of the cache when the switch reads them. */
static void size_buffers(int fd)
{
    const char *env = getenv("BLAST_SOCKBUF");
    int buf = env ? atoi(env) : 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf));
}

static int attach_vdfs(const char *path, const uint8_t mac[6])
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("blast: connect");
        exit(1);
    }
    struct vdsw_hello hello = {.magic = htole32(VDSW_MAGIC), .version = htole16(VDSW_VERSION)};
    memcpy(hello.mac, mac, 6);
    snprintf(hello.portgroup, sizeof(hello.portgroup), "default");
    memcpy(hello.client_name, "blast", 5);
    struct vdsw_hello_ack ack;
    if (send(fd, &hello, sizeof(hello), 0) != sizeof(hello) || recv(fd, &ack, sizeof(ack), 0) != sizeof(ack) ||
        le16toh(ack.status) != 0) {
        fprintf(stderr, "blast: attach refused\n");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: blast vdfs|vde SOCKET send|recv FRAME_BYTES SECONDS\n");
        return 2;
    }
    bool vde = strcmp(argv[1], "vde") == 0;
    bool sending = strcmp(argv[3], "send") == 0;
    size_t size = (size_t)atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (size < 60 || size > 9018 || seconds <= 0) {
        fprintf(stderr, "blast: bad size or duration\n");
        return 2;
    }
    VDECONN *conn = NULL;
    int fd;
    if (vde) {
        conn = vde_open(argv[2], "blast", NULL);
        if (!conn) {
            fprintf(stderr, "blast: vde_open %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        fd = vde_datafd(conn);
    } else {
        fd = attach_vdfs(argv[2], sending ? sender_mac : receiver_mac);
    }
    size_buffers(fd);
    static uint8_t frames[BATCH][9100];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memcpy(frames[i], receiver_mac, 6);
        memcpy(frames[i] + 6, sender_mac, 6);
        frames[i][12] = 0x88, frames[i][13] = 0xb5;
        iov[i] = (struct iovec){frames[i], sending ? size : sizeof(frames[i])};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    if (sending) {
        double end = now() + seconds;
        unsigned long long sent = 0;
        while (now() < end) {
            int n = sendmmsg(fd, msgs, BATCH, 0);
            if (n < 0) {
                perror("blast: sendmmsg");
                return 1;
            }
            sent += (unsigned)n;
        }
        fprintf(stderr, "sent=%llu cpu_ns=%llu\n", sent, cpu_ns());
        if (vde)
            vde_close(conn);
        return 0;
    }
    unsigned long long frames_in = 0, bytes_in = 0;
    double first = 0, last = 0, give_up = now() + seconds + 10;
    /* A blocking recvmmsg that returns once one frame is in: no poll per
     * batch.  The timeout ends the count once the sender has stopped. */
    struct timeval idle = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof(idle));
    for (;;) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                perror("blast: recvmmsg");
                return 1;
            }
            if (frames_in || now() > give_up)
                break;
            continue;
        }
        double t = now();
        if (!frames_in)
            first = t;
        last = t;
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_len >= 14 && frames[i][12] == 0x88 && frames[i][13] == 0xb5) {
                frames_in++;
                bytes_in += msgs[i].msg_len;
            }
        }
    }
    double span = last > first ? last - first : 1e-9;
    printf("frames=%llu bytes=%llu seconds=%.3f fps=%.0f gbps=%.3f cpu_ns=%llu\n", frames_in, bytes_in, span,
           (double)frames_in / span, (double)bytes_in * 8 / span / 1e9, cpu_ns());
    if (vde)
        vde_close(conn);
    return 0;
}
