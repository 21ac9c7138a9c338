/* Control connections are nonblocking and bounded: a line longer than
 * VSW_CONTROL_LINE_MAX, a client that closes mid-line or mid-response, or
 * one that stalls past VSW_CONTROL_TIMEOUT_S only loses its own connection. */
#include "control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "commands.h"
#include "loop.h"

/* At the client limit new connections wait in the listen backlog rather than being refused. */
static void listen_for_clients(struct vswitch *sw, bool on)
{
    loop_rewatch(sw, sw->control_fd, on ? EPOLLIN : 0, &sw->control_ev);
}

static void drop(struct vswitch *sw, struct control_conn *conn)
{
    for (struct control_conn **link = &sw->controls; *link; link = &(*link)->next) {
        if (*link == conn) {
            *link = conn->next;
            break;
        }
    }
    loop_unwatch(sw, conn->fd);
    close(conn->fd);
    free(conn->out);
    free(conn);
    if (sw->control_count-- == VSW_MAX_CONTROL_CLIENTS)
        listen_for_clients(sw, true);
}

void control_accept(struct vswitch *sw)
{
    while (sw->control_count < VSW_MAX_CONTROL_CLIENTS) {
        int fd = accept4(sw->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            loop_accept_failed(sw, errno);
            return;
        }
        struct control_conn *conn = calloc(1, sizeof(*conn));
        if (!conn) {
            static const char busy[] = "ERR out of memory\n";
            send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        conn->ev.kind = EV_CONTROL;
        conn->fd = fd;
        conn->deadline_s = vsw_now_s() + VSW_CONTROL_TIMEOUT_S;
        if (loop_watch(sw, fd, EPOLLIN | EPOLLRDHUP, &conn->ev) < 0) {
            close(fd);
            free(conn);
            continue;
        }
        conn->next = sw->controls;
        sw->controls = conn;
        sw->control_count++;
    }
    listen_for_clients(sw, false);
}

static void start_response(struct vswitch *sw, struct control_conn *conn, struct output *response)
{
    if (response->failed || !response->data) {
        out_free(response);
        out_printf(response, "ERR out of memory\n");
    }
    conn->out = response->data;
    conn->out_len = response->len;
    conn->out_sent = 0;
    conn->writing = true;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &conn->ev};
    epoll_ctl(sw->epoll_fd, EPOLL_CTL_MOD, conn->fd, &ev);
}

/* Returns false when the connection is finished or broken. */
static bool write_some(struct control_conn *conn)
{
    while (conn->out_sent < conn->out_len) {
        ssize_t n = send(conn->fd, conn->out + conn->out_sent, conn->out_len - conn->out_sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        conn->out_sent += (size_t)n;
    }
    return false;
}

void control_handle(struct vswitch *sw, struct control_conn *conn, uint32_t events)
{
    if (conn->writing) {
        if ((events & (EPOLLERR | EPOLLHUP)) || !write_some(conn))
            drop(sw, conn);
        return;
    }
    ssize_t n = recv(conn->fd, conn->in + conn->in_len, sizeof(conn->in) - conn->in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* closed before finishing its request line */
        drop(sw, conn);
        return;
    }
    conn->in_len += (size_t)n;
    char *newline = memchr(conn->in, '\n', conn->in_len);
    struct output response = {0};
    if (!newline) {
        if (conn->in_len < sizeof(conn->in))
            return;
        out_printf(&response, "ERR request line longer than %d bytes\n", VSW_CONTROL_LINE_MAX - 1);
    } else {
        *newline = '\0';
        if (newline > conn->in && newline[-1] == '\r')
            newline[-1] = '\0';
        command_execute(sw, conn->in, &response);
    }
    start_response(sw, conn, &response);
    if (!write_some(conn))
        drop(sw, conn);
}

void control_expire(struct vswitch *sw, uint64_t now_s)
{
    struct control_conn *conn = sw->controls;
    while (conn) {
        struct control_conn *next = conn->next;
        if (now_s >= conn->deadline_s)
            drop(sw, conn);
        conn = next;
    }
}

void control_close_all(struct vswitch *sw)
{
    while (sw->controls)
        drop(sw, sw->controls);
}
