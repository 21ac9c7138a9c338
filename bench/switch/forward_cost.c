/* What one forwarded frame costs the switch's thread at the least, without
 * scheduling or other processes: one thread sends batches of 64 frames with
 * sendmmsg into a SOCK_SEQPACKET pair (the sender), forwards them into a
 * second pair (the switch), and receives them with recvmmsg (the receiver),
 * timing each phase.  The forwarding step is done three ways: recvmmsg +
 * sendmmsg (what vdfs-switch does), io_uring RECV + SEND (one SQE per frame),
 * and recv + send per frame.  docs/benchmarks.md quotes it.
 *   cc -O2 -D_GNU_SOURCE -o /tmp/forward_cost bench/switch/forward_cost.c -luring
 *   /tmp/forward_cost [FRAME_BYTES] [BATCHES]           (default 64, 20000) */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUF 9216

enum mode { MODE_MMSG, MODE_URING, MODE_PLAIN };
static const char *const mode_names[] = {"recvmmsg+sendmmsg", "io_uring recv+send", "recv+send"};

static int sender_fd, switch_in, switch_out, receiver_fd;
static size_t frame_bytes;
static char sbuf[BATCH][BUF], fbuf[BATCH][BUF], rbuf[BATCH][BUF];
static struct mmsghdr smsg[BATCH], fin[BATCH], fout[BATCH], rmsg[BATCH];
static struct iovec siov[BATCH], finiov[BATCH], foutiov[BATCH], riov[BATCH];
static struct io_uring ring;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_batch(void)
{
    if (sendmmsg(sender_fd, smsg, BATCH, 0) != BATCH)
        die("sender: sendmmsg");
}

static void receive_batch(void)
{
    for (int got = 0; got < BATCH;) {
        int n = recvmmsg(receiver_fd, rmsg + got, (unsigned)(BATCH - got), 0, NULL);
        if (n <= 0)
            die("receiver: recvmmsg");
        got += n;
    }
}

static void uring_wait(unsigned count)
{
    io_uring_submit_and_wait(&ring, count);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
        if (cqe->res <= 0) {
            fprintf(stderr, "io_uring: %s\n", strerror(-cqe->res));
            exit(1);
        }
        if (cqe->user_data < BATCH)
            finiov[cqe->user_data].iov_len = (size_t)cqe->res;
        seen++;
    }
    io_uring_cq_advance(&ring, seen);
}

static void forward_batch(enum mode mode)
{
    switch (mode) {
    case MODE_MMSG: {
        for (int i = 0; i < BATCH; i++)
            finiov[i].iov_len = BUF;
        if (recvmmsg(switch_in, fin, BATCH, MSG_DONTWAIT, NULL) != BATCH)
            die("switch: recvmmsg");
        for (int i = 0; i < BATCH; i++)
            foutiov[i].iov_len = fin[i].msg_len;
        if (sendmmsg(switch_out, fout, BATCH, MSG_DONTWAIT) != BATCH)
            die("switch: sendmmsg");
        break;
    }
    case MODE_URING:
        for (int i = 0; i < BATCH; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_recv(sqe, switch_in, fbuf[i], BUF, MSG_DONTWAIT);
            sqe->user_data = (unsigned)i;
        }
        uring_wait(BATCH);
        for (int i = 0; i < BATCH; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_send(sqe, switch_out, fbuf[i], finiov[i].iov_len, MSG_DONTWAIT);
            sqe->user_data = BATCH + (unsigned)i;
        }
        uring_wait(BATCH);
        break;
    case MODE_PLAIN:
        for (int i = 0; i < BATCH; i++) {
            ssize_t n = recv(switch_in, fbuf[i], BUF, MSG_DONTWAIT);
            if (n <= 0)
                die("switch: recv");
            if (send(switch_out, fbuf[i], (size_t)n, MSG_DONTWAIT) != n)
                die("switch: send");
        }
        break;
    }
}

static void socket_pair(int *a, int *b)
{
    int p[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, p) < 0)
        die("socketpair");
    int size = 4 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(p[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        setsockopt(p[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    *a = p[0];
    *b = p[1];
}

int main(int argc, char **argv)
{
    frame_bytes = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int batches = argc > 2 ? atoi(argv[2]) : 20000;
    if (frame_bytes < 14 || frame_bytes > BUF || batches < 1) {
        fprintf(stderr, "usage: forward_cost [FRAME_BYTES 14-%d] [BATCHES]\n", BUF);
        return 2;
    }
    socket_pair(&sender_fd, &switch_in);
    socket_pair(&switch_out, &receiver_fd);
    if (io_uring_queue_init(4 * BATCH, &ring, 0) < 0)
        die("io_uring_queue_init");
    for (int i = 0; i < BATCH; i++) {
        memset(sbuf[i], i, frame_bytes);
        siov[i] = (struct iovec){sbuf[i], frame_bytes};
        smsg[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i], .msg_iovlen = 1};
        finiov[i] = (struct iovec){fbuf[i], BUF};
        fin[i].msg_hdr = (struct msghdr){.msg_iov = &finiov[i], .msg_iovlen = 1};
        foutiov[i] = (struct iovec){fbuf[i], frame_bytes};
        fout[i].msg_hdr = (struct msghdr){.msg_iov = &foutiov[i], .msg_iovlen = 1};
        riov[i] = (struct iovec){rbuf[i], BUF};
        rmsg[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
    }
    printf("%zu-byte frames, %d batches of %d, microseconds per frame:\n", frame_bytes, batches, BATCH);
    for (enum mode mode = MODE_MMSG; mode <= MODE_PLAIN; mode++) {
        double t_send = 0, t_forward = 0, t_receive = 0;
        for (int b = 0; b < batches; b++) {
            double t0 = now();
            send_batch();
            double t1 = now();
            forward_batch(mode);
            double t2 = now();
            receive_batch();
            double t3 = now();
            t_send += t1 - t0;
            t_forward += t2 - t1;
            t_receive += t3 - t2;
        }
        double frames = (double)batches * BATCH / 1e6;
        printf("  %-20s send %.3f  forward %.3f  receive %.3f\n", mode_names[mode], t_send / frames,
               t_forward / frames, t_receive / frames);
    }
    io_uring_queue_exit(&ring);
    return 0;
}
