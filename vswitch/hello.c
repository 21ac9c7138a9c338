/* A connection sits here between accept and its hello.  Every way a hello
 * can be wrong (short, long, bad magic or version, unknown port group, MAC in
 * use, switch full) gets an ack with a status and a message, then the
 * connection closes; nothing a client sends can stop the switch. */
#include "hello.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "frame.h"
#include "loop.h"
#include "port.h"
#include "portgroup.h"

static void unlink_conn(struct vswitch *sw, struct hello_conn *conn)
{
    for (struct hello_conn **link = &sw->hellos; *link; link = &(*link)->next) {
        if (*link == conn) {
            *link = conn->next;
            sw->hello_count--;
            return;
        }
    }
}

static void drop_conn(struct vswitch *sw, struct hello_conn *conn, bool close_fd)
{
    loop_unwatch(sw, conn->fd);
    if (close_fd)
        close(conn->fd);
    unlink_conn(sw, conn);
    free(conn);
}

void hello_accept(struct vswitch *sw)
{
    for (;;) {
        int fd = accept4(sw->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            loop_accept_failed(sw, errno);
            return;
        }
        if (sw->hello_count >= VSW_MAX_PENDING_HELLOS) {
            /* The list is newest first: the oldest, at its end, goes. */
            struct hello_conn *oldest = sw->hellos;
            while (oldest->next)
                oldest = oldest->next;
            sw->hello_failures++;
            drop_conn(sw, oldest, true);
        }
        struct hello_conn *conn = calloc(1, sizeof(*conn));
        if (!conn) {
            close(fd);
            continue;
        }
        conn->ev.kind = EV_HELLO;
        conn->fd = fd;
        conn->deadline_s = vsw_now_s() + VSW_HELLO_TIMEOUT_S;
        if (loop_watch(sw, fd, EPOLLIN | EPOLLRDHUP, &conn->ev) < 0) {
            close(fd);
            free(conn);
            continue;
        }
        conn->next = sw->hellos;
        sw->hellos = conn;
        sw->hello_count++;
    }
}

static void send_ack(int fd, enum vdsw_status status, uint32_t port_id, unsigned mtu, const char *fmt, ...)
{
    struct vdsw_hello_ack ack = {0};
    ack.magic = htole32(VDSW_MAGIC);
    ack.version = htole16(VDSW_VERSION);
    ack.status = htole16((uint16_t)status);
    ack.port_id = htole32(port_id);
    ack.mtu = htole16((uint16_t)mtu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ack.message, sizeof(ack.message), fmt, ap);
    va_end(ap);
    send(fd, &ack, sizeof(ack), MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Copies a NUL-padded field; false if it has no terminating NUL or is empty. */
static bool padded_string(const char *field, size_t size, char *out)
{
    size_t n = strnlen(field, size);
    if (n == size)
        return false;
    memcpy(out, field, n + 1);
    return true;
}

void hello_receive(struct vswitch *sw, struct hello_conn *conn)
{
    uint8_t buf[VDSW_HELLO_SIZE + 1];
    ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop_conn(sw, conn, true);
        return;
    }
    int fd = conn->fd;
    struct vdsw_hello hello;
    memcpy(&hello, buf, sizeof(hello));
    char pg_name[sizeof(hello.portgroup)], client[sizeof(hello.client_name) + 1] = {0};
    char macbuf[18];
    enum vdsw_status status = VDSW_STATUS_BAD_HELLO;
    if (n != VDSW_HELLO_SIZE) {
        send_ack(fd, status, 0, sw->mtu, "hello must be %d bytes, got %zd", VDSW_HELLO_SIZE, n);
    } else if (le32toh(hello.magic) != VDSW_MAGIC) {
        send_ack(fd, status, 0, sw->mtu, "bad magic 0x%08x", le32toh(hello.magic));
    } else if (le16toh(hello.version) != VDSW_VERSION) {
        send_ack(fd, status, 0, sw->mtu, "unsupported version %u (want %d)", le16toh(hello.version),
                 VDSW_VERSION);
    } else if (hello.flags != 0) {
        send_ack(fd, status, 0, sw->mtu, "unknown flags 0x%04x", le16toh(hello.flags));
    } else if (mac_is_multicast(hello.mac) || mac_is_zero(hello.mac)) {
        mac_format(hello.mac, macbuf);
        send_ack(fd, status, 0, sw->mtu, "MAC %s is not a unicast address", macbuf);
    } else if (!padded_string(hello.portgroup, sizeof(hello.portgroup), pg_name)) {
        send_ack(fd, status, 0, sw->mtu, "port group name is not NUL-terminated");
    } else {
        memcpy(client, hello.client_name, sizeof(hello.client_name));
        for (char *c = client; *c; c++)
            if (*c < 0x20 || *c > 0x7e)
                *c = '?';
        struct portgroup *pg = portgroup_find(sw, pg_name);
        struct port *port = NULL;
        if (!pg) {
            status = VDSW_STATUS_UNKNOWN_PORTGROUP;
            send_ack(fd, status, 0, sw->mtu, "no port group '%.31s'", pg_name);
        } else if (loop_unwatch(sw, fd), (port = port_attach(sw, fd, hello.mac, pg, client, &status)) != NULL) {
            unlink_conn(sw, conn);
            free(conn);
            send_ack(fd, VDSW_STATUS_OK, (uint32_t)port->id, sw->mtu, "attached to %.31s", pg->name);
            return;
        } else {
            mac_format(hello.mac, macbuf);
            send_ack(fd, status, 0, sw->mtu,
                     status == VDSW_STATUS_MAC_IN_USE ? "MAC %s is in use" : "switch full (MAC %s)", macbuf);
        }
    }
    sw->hello_failures++;
    drop_conn(sw, conn, true);
}

void hello_expire(struct vswitch *sw, uint64_t now_s)
{
    struct hello_conn *conn = sw->hellos;
    while (conn) {
        struct hello_conn *next = conn->next;
        if (now_s >= conn->deadline_s) {
            sw->hello_failures++;
            drop_conn(sw, conn, true);
        }
        conn = next;
    }
}

void hello_close_all(struct vswitch *sw)
{
    while (sw->hellos)
        drop_conn(sw, sw->hellos, true);
}
