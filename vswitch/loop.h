/* The daemon's epoll event loop. */
#ifndef VDFS_VSWITCH_LOOP_H
#define VDFS_VSWITCH_LOOP_H

#include "vswitch.h"

struct daemon_options {
    const char *name;
    const char *socket_path;
    const char *control_path;
    const char *uplink; /* a TAP, or a NIC when uplink_kind says so */
    enum uplink_kind uplink_kind;
    const char *config_path; /* NULL: no configuration file */
    unsigned mtu;
    size_t mac_cap;
    unsigned mac_aging_s;
    bool mtu_given, mac_cap_given, mac_aging_given; /* on the command line: they win over the file */
    bool foreground;
    const char *portgroups[64]; /* "NAME[:VLAN]" */
    unsigned portgroup_count;
};

int loop_watch(struct vswitch *sw, int fd, uint32_t events, struct event_source *source);
void loop_unwatch(struct vswitch *sw, int fd);
/* Changes the events a watched descriptor is polled for. */
void loop_rewatch(struct vswitch *sw, int fd, uint32_t events, struct event_source *source);
/* After an accept4 that failed with `error`: out of descriptors or memory,
 * accepting pauses until the next tick. */
void loop_accept_failed(struct vswitch *sw, int error);
uint64_t vsw_now_s(void);
/* Runs the daemon until SIGTERM/SIGINT; returns the process exit code. */
int daemon_run(const struct daemon_options *opts);

#endif
