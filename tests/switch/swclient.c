#include "swclient.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const uint8_t broadcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
struct test_switch *current_switch;

void test_fail_cleanup(void)
{
    if (current_switch)
        switch_stop(current_switch);
}

static int connect_unix(const char *path, int type)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool switch_start(struct test_switch *sw, const char *binary, const char *const *extra_args)
{
    snprintf(sw->dir, sizeof(sw->dir), "/tmp/vdfs-switch-test.XXXXXX");
    if (!mkdtemp(sw->dir))
        return false;
    snprintf(sw->socket_path, sizeof(sw->socket_path), "%s/sw.sock", sw->dir);
    snprintf(sw->control_path, sizeof(sw->control_path), "%s/sw.sock.ctl", sw->dir);
    const char *argv[40] = {binary, "daemon", "-f", "--name", "test", "--socket", sw->socket_path};
    int argc = 7;
    for (int i = 0; extra_args && extra_args[i] && argc < 38; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    sw->pid = fork();
    if (sw->pid == 0) {
        execv(binary, (char *const *)argv);
        _exit(127);
    }
    current_switch = sw;
    for (int tries = 0; tries < 500; tries++) {
        int fd = connect_unix(sw->control_path, SOCK_STREAM);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        if (waitpid(sw->pid, NULL, WNOHANG) == sw->pid) {
            sw->pid = 0;
            return false;
        }
        usleep(10000);
    }
    return false;
}

bool switch_stop(struct test_switch *sw)
{
    int status = 0;
    if (sw->pid > 0) {
        kill(sw->pid, SIGTERM);
        waitpid(sw->pid, &status, 0);
        sw->pid = 0;
    }
    unlink(sw->socket_path);
    unlink(sw->control_path);
    rmdir(sw->dir);
    current_switch = NULL;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool switch_control(const struct test_switch *sw, const char *request, char *out, size_t out_len)
{
    int fd = connect_unix(sw->control_path, SOCK_STREAM);
    if (fd < 0)
        return false;
    char line[1024];
    snprintf(line, sizeof(line), "%s\n", request);
    if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) {
        close(fd);
        return false;
    }
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            break;
        ssize_t n = recv(fd, out + got, out_len - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == out_len - 1)
            break;
    }
    out[got] = '\0';
    close(fd);
    return got > 0;
}

void switch_control_ok(const struct test_switch *sw, const char *request)
{
    static char reply[65536];
    CHECK(switch_control(sw, request, reply, sizeof(reply)), "no reply to '%s'", request);
    CHECK(strncmp(reply, "OK\n", 3) == 0, "'%s' answered: %s", request, reply);
}

static long long json_number(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(json, pattern);
    return p ? strtoll(p + strlen(pattern), NULL, 10) : -1;
}

long long port_counter(const struct test_switch *sw, int port, const char *key)
{
    char request[64], reply[8192];
    snprintf(request, sizeof(request), "port.stats port=%d format=json", port);
    CHECK(switch_control(sw, request, reply, sizeof(reply)) && strncmp(reply, "OK\n", 3) == 0, "port.stats: %s",
          reply);
    long long v = json_number(reply, key);
    CHECK(v >= 0, "no counter %s in %s", key, reply);
    return v;
}

long long status_value(const struct test_switch *sw, const char *key)
{
    char reply[8192];
    CHECK(switch_control(sw, "status format=json", reply, sizeof(reply)) && strncmp(reply, "OK\n", 3) == 0,
          "status: %s", reply);
    long long v = json_number(reply, key);
    CHECK(v >= 0, "no value %s in %s", key, reply);
    return v;
}

static int read_ack(int fd, struct vdsw_hello_ack *ack)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return -1;
    ssize_t n = recv(fd, ack, sizeof(*ack), 0);
    if (n != (ssize_t)sizeof(*ack) || le32toh(ack->magic) != VDSW_MAGIC)
        return -1;
    return le16toh(ack->status);
}

int port_connect(const struct test_switch *sw, const uint8_t mac[6], const char *portgroup, const char *name,
                 struct vdsw_hello_ack *ack)
{
    int fd = connect_unix(sw->socket_path, SOCK_SEQPACKET);
    CHECK(fd >= 0, "connect %s: %s", sw->socket_path, strerror(errno));
    struct vdsw_hello hello = {0};
    hello.magic = htole32(VDSW_MAGIC);
    hello.version = htole16(VDSW_VERSION);
    memcpy(hello.mac, mac, 6);
    snprintf(hello.portgroup, sizeof(hello.portgroup), "%s", portgroup);
    memcpy(hello.client_name, name, strnlen(name, sizeof(hello.client_name)));
    CHECK(send(fd, &hello, sizeof(hello), 0) == sizeof(hello), "hello send");
    memset(ack, 0, sizeof(*ack));
    int status = read_ack(fd, ack);
    if (status != VDSW_STATUS_OK) {
        close(fd);
        return -1;
    }
    return fd;
}

int port_attach_ok(const struct test_switch *sw, const uint8_t mac[6], const char *portgroup, int *port_id)
{
    struct vdsw_hello_ack ack;
    int fd = port_connect(sw, mac, portgroup, "test", &ack);
    CHECK(fd >= 0, "attach to %s refused: status %u: %.48s", portgroup, le16toh(ack.status), ack.message);
    if (port_id)
        *port_id = (int)le32toh(ack.port_id);
    return fd;
}

int hello_raw(const struct test_switch *sw, const void *bytes, size_t len)
{
    int fd = connect_unix(sw->socket_path, SOCK_SEQPACKET);
    CHECK(fd >= 0, "connect %s: %s", sw->socket_path, strerror(errno));
    CHECK(send(fd, bytes, len, 0) == (ssize_t)len, "raw hello send");
    struct vdsw_hello_ack ack;
    int status = read_ack(fd, &ack);
    close(fd);
    return status;
}

void frame_send(int fd, const void *frame, size_t len)
{
    CHECK(send(fd, frame, len, MSG_NOSIGNAL) == (ssize_t)len, "frame send: %s", strerror(errno));
}

ssize_t frame_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1 || !(p.revents & POLLIN))
        return -1;
    return recv(fd, buf, cap, MSG_DONTWAIT);
}

ssize_t frame_recv_test(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            return -1;
        ssize_t n = frame_recv(fd, buf, cap, (int)(timeout_ms - elapsed));
        if (n < 0)
            return -1;
        const uint8_t *f = buf;
        if (n >= 18 && f[12] == (TEST_ETHERTYPE >> 8) && f[13] == (TEST_ETHERTYPE & 0xff))
            return n;
    }
}

size_t frame_build(uint8_t *buf, const uint8_t dst[6], const uint8_t src[6], uint32_t seq, size_t len)
{
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    buf[12] = TEST_ETHERTYPE >> 8;
    buf[13] = TEST_ETHERTYPE & 0xff;
    memcpy(buf + 14, &seq, 4);
    for (size_t i = 18; i < len; i++)
        buf[i] = (uint8_t)i;
    return len;
}

uint32_t frame_seq(const uint8_t *frame)
{
    uint32_t seq;
    memcpy(&seq, frame + 14, 4);
    return seq;
}
