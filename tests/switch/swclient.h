/* Test-side helpers: run a vdfs-switch, attach ports with the port
 * protocol, move frames, and query the control socket. */
#ifndef VDFS_TESTS_SWITCH_SWCLIENT_H
#define VDFS_TESTS_SWITCH_SWCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"

struct test_switch {
    pid_t pid;
    char dir[64];
    char socket_path[96];
    char control_path[104];
};

/* Starts `binary daemon -f` with extra arguments (NULL-terminated) and waits
 * until its control socket answers. */
bool switch_start(struct test_switch *sw, const char *binary, const char *const *extra_args);
/* Stops the switch; true if it exited cleanly (status 0, so no sanitizer report). */
bool switch_stop(struct test_switch *sw);

/* Sends one control request line; fills out (NUL-terminated) with the reply. */
bool switch_control(const struct test_switch *sw, const char *request, char *out, size_t out_len);
/* Like switch_control but fails the test unless the reply starts with OK. */
void switch_control_ok(const struct test_switch *sw, const char *request);
/* A counter from "port.stats port=N format=json": key such as "tx_frames" or "forged". */
long long port_counter(const struct test_switch *sw, int port, const char *key);
/* A number from "status format=json". */
long long status_value(const struct test_switch *sw, const char *key);

/* Connects and sends a hello; returns the fd with *ack filled, or -1 (the
 * ack still filled when the switch answered). */
int port_connect(const struct test_switch *sw, const uint8_t mac[6], const char *portgroup, const char *name,
                 struct vdsw_hello_ack *ack);
/* Connects and attaches, failing the test unless the status is ok. */
int port_attach_ok(const struct test_switch *sw, const uint8_t mac[6], const char *portgroup, int *port_id);
/* Sends raw bytes as one hello message; returns the ack status or -1 with no ack. */
int hello_raw(const struct test_switch *sw, const void *bytes, size_t len);

void frame_send(int fd, const void *frame, size_t len);
/* Receives one frame within timeout_ms; returns its length or -1. */
ssize_t frame_recv(int fd, void *buf, size_t cap, int timeout_ms);
/* Receives the next frame of ethertype 0x88b5 (the tests' own), skipping others. */
ssize_t frame_recv_test(int fd, void *buf, size_t cap, int timeout_ms);
/* Builds dst|src|0x88b5|payload with a 32-bit sequence number; returns the length. */
size_t frame_build(uint8_t *buf, const uint8_t dst[6], const uint8_t src[6], uint32_t seq, size_t len);
uint32_t frame_seq(const uint8_t *frame);

#define TEST_ETHERTYPE 0x88b5

extern const uint8_t broadcast_mac[6];

/* Fails the test with a message and the location. */
#define CHECK(cond, ...)                                                                                      \
    do {                                                                                                      \
        if (!(cond)) {                                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                   \
            fprintf(stderr, __VA_ARGS__);                                                                     \
            fprintf(stderr, "\n");                                                                            \
            test_fail_cleanup();                                                                              \
            exit(1);                                                                                          \
        }                                                                                                     \
    } while (0)

void test_fail_cleanup(void);
/* The switch test_fail_cleanup stops. */
extern struct test_switch *current_switch;

#endif
