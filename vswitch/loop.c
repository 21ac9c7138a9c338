/* Daemon setup and the single-threaded epoll loop.  Everything runs on one
 * thread, so forwarding needs no locks; batching (recvmmsg/sendmmsg) rather
 * than threads is what keeps the per-frame cost low. */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "control.h"
#include "hello.h"
#include "mactable.h"
#include "port.h"
#include "portgroup.h"
#include "uplink.h"

uint64_t vsw_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t vsw_now_s(void) { return vsw_monotonic_ns() / 1000000000u; }

int loop_watch(struct vswitch *sw, int fd, uint32_t events, struct event_source *source)
{
    struct epoll_event ev = {.events = events, .data.ptr = source};
    return epoll_ctl(sw->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

void loop_unwatch(struct vswitch *sw, int fd) { epoll_ctl(sw->epoll_fd, EPOLL_CTL_DEL, fd, NULL); }

void loop_rewatch(struct vswitch *sw, int fd, uint32_t events, struct event_source *source)
{
    struct epoll_event ev = {.events = events, .data.ptr = source};
    epoll_ctl(sw->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

void loop_accept_failed(struct vswitch *sw, int error)
{
    if (error != EMFILE && error != ENFILE && error != ENOBUFS && error != ENOMEM)
        return;
    if (!sw->accept_paused)
        fprintf(stderr, "vdfs-switch: cannot accept connections (%s); trying again in a second\n",
                strerror(error));
    sw->accept_paused = true;
    loop_rewatch(sw, sw->listen_fd, 0, &sw->listen_ev);
    loop_rewatch(sw, sw->control_fd, 0, &sw->control_ev);
}

/* Binds a listening unix socket at path, replacing a stale socket file but
 * refusing to steal the path from a live switch. */
static int listen_unix(const char *path, int type, const char *what)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "vdfs-switch: %s path too long: %s\n", what, path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "vdfs-switch: socket: %s\n", strerror(errno));
        return -1;
    }
    int bound = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (bound < 0 && errno == EADDRINUSE) {
        int probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            fprintf(stderr, "vdfs-switch: a switch is already listening on %s\n", path);
            close(fd);
            return -1;
        }
        unlink(path);
        bound = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    }
    if (bound < 0 || listen(fd, 64) < 0) {
        fprintf(stderr, "vdfs-switch: cannot listen on %s %s: %s\n", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The daemon leaves its working directory, so the paths it unlinks at exit
 * must not be relative to it. */
static int absolute_path(char *out, size_t len, const char *path, const char *what)
{
    char cwd[4096];
    int n;
    if (path[0] == '/')
        n = snprintf(out, len, "%s", path);
    else if (getcwd(cwd, sizeof(cwd)))
        n = snprintf(out, len, "%s/%s", cwd, path);
    else {
        fprintf(stderr, "vdfs-switch: %s %s: cannot find the working directory: %s\n", what, path, strerror(errno));
        return -1;
    }
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "vdfs-switch: %s path too long (at most %zu bytes as an absolute path): %s\n", what, len - 1,
                path);
        return -1;
    }
    return 0;
}

static int setup(struct vswitch *sw, const struct daemon_options *opts)
{
    snprintf(sw->name, sizeof(sw->name), "%s", opts->name);
    sw->mtu = opts->mtu;
    sw->security = (struct security_policy){POLICY_REJECT, POLICY_REJECT, POLICY_REJECT};
    sw->shaping.state = 0;
    sw->epoll_fd = sw->listen_fd = sw->control_fd = sw->timer_fd = sw->signal_fd = -1;
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        sw->ports[id].id = id;
        sw->ports[id].fd = -1;
    }
    if (opts->socket_path) {
        if (absolute_path(sw->socket_path, sizeof(sw->socket_path), opts->socket_path, "port socket"))
            return -1;
    } else {
        mkdir(VDSW_SOCKET_DIR, 0755);
        snprintf(sw->socket_path, sizeof(sw->socket_path), "%s/%s.sock", VDSW_SOCKET_DIR, sw->name);
    }
    if (opts->control_path) {
        if (absolute_path(sw->control_path, sizeof(sw->control_path), opts->control_path, "control socket"))
            return -1;
    } else if (snprintf(sw->control_path, sizeof(sw->control_path), "%s.ctl", sw->socket_path) >=
               (int)sizeof(sw->control_path)) {
        fprintf(stderr, "vdfs-switch: control path too long\n");
        return -1;
    }
    sw->in = malloc(sizeof(*sw->in));
    if (!sw->in || mac_table_init(&sw->macs, opts->mac_cap, opts->mac_aging_s)) {
        fprintf(stderr, "vdfs-switch: out of memory\n");
        return -1;
    }
    char err[200];
    if (portgroup_add(sw, VSW_DEFAULT_PORTGROUP, 0, err, sizeof(err)))
        return -1;
    if (opts->config_path &&
        absolute_path(sw->config_path, sizeof(sw->config_path), opts->config_path, "configuration file"))
        return -1;
    sw->listen_fd = listen_unix(sw->socket_path, SOCK_SEQPACKET, "port socket");
    if (sw->listen_fd < 0)
        return -1;
    sw->control_fd = listen_unix(sw->control_path, SOCK_STREAM, "control socket");
    if (sw->control_fd < 0) {
        unlink(sw->socket_path);
        return -1;
    }
    return 0;
}

/* Options given on the command line win over the configuration file. */
static int apply_options(struct vswitch *sw, const struct daemon_options *opts)
{
    char err[200];
    for (unsigned i = 0; i < opts->portgroup_count; i++) {
        char spec[64];
        snprintf(spec, sizeof(spec), "%s", opts->portgroups[i]);
        char *colon = strchr(spec, ':');
        long vlan = 0;
        if (colon) {
            char *end;
            *colon = '\0';
            vlan = strtol(colon + 1, &end, 10);
            if (colon[1] == '\0' || *end != '\0')
                vlan = -1;
        }
        struct portgroup *existing = portgroup_find(sw, spec);
        int rc = existing ? portgroup_set_vlan(sw, existing, vlan, err, sizeof(err))
                          : portgroup_add(sw, spec, vlan, err, sizeof(err));
        if (rc) {
            fprintf(stderr, "vdfs-switch: --portgroup %s: %s\n", opts->portgroups[i], err);
            return -1;
        }
    }
    char request[64];
    if (opts->mtu_given) {
        snprintf(request, sizeof(request), "mtu.set mtu=%u", opts->mtu);
        if (command_apply_setting(sw, request, err, sizeof(err))) {
            fprintf(stderr, "vdfs-switch: --mtu: %s\n", err);
            return -1;
        }
    }
    if (opts->mac_cap_given || opts->mac_aging_given) {
        snprintf(request, sizeof(request), "mac.set cap=%zu aging=%u", opts->mac_cap_given ? opts->mac_cap : sw->macs.cap,
                 opts->mac_aging_given ? opts->mac_aging_s : sw->macs.aging_s);
        if (command_apply_setting(sw, request, err, sizeof(err))) {
            fprintf(stderr, "vdfs-switch: --mac-cap/--mac-aging: %s\n", err);
            return -1;
        }
    }
    if (opts->uplink && uplink_open(sw, opts->uplink_kind, opts->uplink, err, sizeof(err))) {
        fprintf(stderr, "vdfs-switch: %s\n", err);
        return -1;
    }
    return 0;
}

static int start_loop(struct vswitch *sw, const struct daemon_options *opts)
{
    sw->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sw->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    sw->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec tick = {.it_interval = {1, 0}, .it_value = {1, 0}};
    if (sw->epoll_fd < 0 || sw->signal_fd < 0 || sw->timer_fd < 0 || timerfd_settime(sw->timer_fd, 0, &tick, NULL)) {
        fprintf(stderr, "vdfs-switch: event setup failed: %s\n", strerror(errno));
        return -1;
    }
    sw->listen_ev.kind = EV_LISTEN;
    sw->control_ev.kind = EV_CONTROL_LISTEN;
    sw->timer_ev.kind = EV_TIMER;
    sw->signal_ev.kind = EV_SIGNAL;
    if (loop_watch(sw, sw->listen_fd, EPOLLIN, &sw->listen_ev) || loop_watch(sw, sw->control_fd, EPOLLIN, &sw->control_ev) ||
        loop_watch(sw, sw->timer_fd, EPOLLIN, &sw->timer_ev) || loop_watch(sw, sw->signal_fd, EPOLLIN, &sw->signal_ev)) {
        fprintf(stderr, "vdfs-switch: epoll: %s\n", strerror(errno));
        return -1;
    }
    char err[sizeof(sw->config_path) + 256];
    if (sw->config_path[0] && config_load(sw, opts->uplink != NULL, err, sizeof(err))) {
        fprintf(stderr, "vdfs-switch: %s\n", err);
        return -1;
    }
    if (apply_options(sw, opts))
        return -1;
    if (sw->config_path[0] && config_save(sw, err, sizeof(err))) {
        fprintf(stderr, "vdfs-switch: %s\n", err);
        return -1;
    }
    return 0;
}

static void on_timer(struct vswitch *sw)
{
    uint64_t expirations;
    if (read(sw->timer_fd, &expirations, sizeof(expirations)) < 0)
        return;
    uint64_t now = vsw_now_s();
    mac_table_expire(&sw->macs, now);
    hello_expire(sw, now);
    control_expire(sw, now);
    if (sw->accept_paused) {
        sw->accept_paused = false;
        loop_rewatch(sw, sw->listen_fd, EPOLLIN, &sw->listen_ev);
        if (sw->control_count < VSW_MAX_CONTROL_CLIENTS)
            loop_rewatch(sw, sw->control_fd, EPOLLIN, &sw->control_ev);
    }
}

static void dispatch(struct vswitch *sw, struct epoll_event *ev, bool *tick)
{
    struct event_source *src = ev->data.ptr;
    switch (src->kind) {
    case EV_PORT: {
        struct port *port = (struct port *)src;
        if (port->is_uplink) {
            uplink_receive(sw);
            break;
        }
        bool closed = ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        if (!port_receive(sw, port, closed) || (closed && !(ev->events & EPOLLIN)))
            port_detach(sw, port);
        break;
    }
    case EV_LISTEN:
        hello_accept(sw);
        break;
    case EV_HELLO:
        hello_receive(sw, (struct hello_conn *)src);
        break;
    case EV_CONTROL_LISTEN:
        control_accept(sw);
        break;
    case EV_CONTROL:
        control_handle(sw, (struct control_conn *)src, ev->events);
        break;
    case EV_TIMER:
        *tick = true; /* expiring connections now could free one whose event is later in this batch */
        break;
    case EV_SIGNAL: {
        struct signalfd_siginfo info;
        if (read(sw->signal_fd, &info, sizeof(info)) > 0)
            sw->stop = true;
        break;
    }
    }
}

static void teardown(struct vswitch *sw)
{
    for (int id = 1; id < VSW_MAX_PORTS; id++)
        port_detach(sw, &sw->ports[id]);
    if (sw->epoll_fd >= 0) {
        uplink_close(sw);
        hello_close_all(sw);
        control_close_all(sw);
    }
    if (sw->listen_fd >= 0) {
        close(sw->listen_fd);
        unlink(sw->socket_path);
    }
    if (sw->control_fd >= 0) {
        close(sw->control_fd);
        unlink(sw->control_path);
    }
    for (int *fd = (int[]){sw->timer_fd, sw->signal_fd, sw->epoll_fd, -2}; *fd != -2; fd++)
        if (*fd >= 0)
            close(*fd);
    portgroups_free(sw);
    mac_table_free(&sw->macs);
    free(sw->in);
    free(sw);
}

/* Forks into a new session. The parent waits until the child reports that
 * it has started (detach_end) and exits 0, or 1 if the child exits first, so
 * a failure at start (a bad uplink, say) reaches the terminal and the exit
 * status. The child starts everything itself: a signalfd watched by an epoll
 * set made before a fork would still wait on the parent's signals. Returns
 * the child's end of the pipe, or -1. */
static int detach_begin(void)
{
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return -1;
    }
    if (pid > 0) {
        close(pipe_fds[1]);
        char status = 1;
        ssize_t n;
        do
            n = read(pipe_fds[0], &status, 1);
        while (n < 0 && errno == EINTR);
        _exit(n == 1 && status == 0 ? 0 : 1);
    }
    close(pipe_fds[0]);
    setsid();
    return pipe_fds[1];
}

static void detach_end(int ready_fd)
{
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
        for (int fd = 0; fd <= 2; fd++)
            dup2(null_fd, fd);
        if (null_fd > 2)
            close(null_fd);
    }
    /* The paths in use are absolute; a failed chdir only keeps the old
     * directory busy. A failed write means the parent is gone. */
    (void)!chdir("/");
    char started = 0;
    (void)!write(ready_fd, &started, 1);
    close(ready_fd);
}

int daemon_run(const struct daemon_options *opts)
{
    struct vswitch *sw = calloc(1, sizeof(*sw));
    if (!sw) {
        fprintf(stderr, "vdfs-switch: out of memory\n");
        return 1;
    }
    int ready_fd = -1;
    if (!opts->foreground && (ready_fd = detach_begin()) < 0) {
        fprintf(stderr, "vdfs-switch: cannot daemonise: %s\n", strerror(errno));
        free(sw);
        return 1;
    }
    if (setup(sw, opts) || start_loop(sw, opts)) {
        teardown(sw);
        return 1;
    }
    if (ready_fd >= 0)
        detach_end(ready_fd);
    if (opts->foreground)
        fprintf(stderr, "vdfs-switch %s: ports on %s, control on %s\n", sw->name, sw->socket_path, sw->control_path);
    struct epoll_event events[64];
    while (!sw->stop) {
        int n = epoll_wait(sw->epoll_fd, events, 64, -1);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "vdfs-switch: epoll_wait: %s\n", strerror(errno));
            break;
        }
        bool tick = false;
        for (int i = 0; i < n && !sw->stop; i++)
            dispatch(sw, &events[i], &tick);
        if (tick)
            on_timer(sw);
    }
    teardown(sw);
    return 0;
}
