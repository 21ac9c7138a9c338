/* Behaviour tests for vdfs-switch, each a separate meson test:
 *   switch_test BINARY TESTNAME
 * Every test starts its own switch in a temporary directory. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "swclient.h"

static const char *binary;
static struct test_switch sw;

static const uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 0x0a};
static const uint8_t mac_b[6] = {0x02, 0, 0, 0, 0, 0x0b};
static const uint8_t mac_c[6] = {0x02, 0, 0, 0, 0, 0x0c};
static const uint8_t mac_d[6] = {0x02, 0, 0, 0, 0, 0x0d};
static const uint8_t mac_e[6] = {0x02, 0, 0, 0, 0, 0x0e};
static const uint8_t mac_unknown[6] = {0x02, 0, 0, 0, 0, 0x99};

static void start(const char *const *args)
{
    CHECK(switch_start(&sw, binary, args), "switch did not start");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Expects exactly one test frame with seq on fd within a short wait. */
static void expect_frame(int fd, uint32_t seq, const char *who)
{
    uint8_t buf[VDSW_MAX_MTU + 32];
    ssize_t n = frame_recv_test(fd, buf, sizeof(buf), 1000);
    CHECK(n > 0, "%s got no frame (wanted seq %u)", who, seq);
    CHECK(frame_seq(buf) == seq, "%s got seq %u, wanted %u", who, frame_seq(buf), seq);
}

static void expect_nothing(int fd, const char *who)
{
    uint8_t buf[VDSW_MAX_MTU + 32];
    ssize_t n = frame_recv_test(fd, buf, sizeof(buf), 150);
    CHECK(n < 0, "%s received a frame (seq %u) it must not see", who, n > 0 ? frame_seq(buf) : 0);
}

static void test_unicast(void)
{
    start(NULL);
    int id_a, id_b;
    int a = port_attach_ok(&sw, mac_a, "default", &id_a);
    int b = port_attach_ok(&sw, mac_b, "default", &id_b);
    uint8_t f[128];
    for (uint32_t seq = 1; seq <= 50; seq++) {
        frame_send(a, f, frame_build(f, mac_b, mac_a, seq, 64));
        expect_frame(b, seq, "B");
        frame_send(b, f, frame_build(f, mac_a, mac_b, 1000 + seq, 100));
        expect_frame(a, 1000 + seq, "A");
    }
    CHECK(port_counter(&sw, id_a, "rx_frames") == 50, "A rx_frames");
    CHECK(port_counter(&sw, id_b, "tx_frames") == 50, "B tx_frames");
    CHECK(port_counter(&sw, id_b, "tx_bytes") == 50 * 64, "B tx_bytes");
    CHECK(port_counter(&sw, id_a, "tx_bytes") == 50 * 100, "A tx_bytes");
    /* A unicast to the sender's own MAC has nowhere to go. */
    frame_send(a, f, frame_build(f, mac_a, mac_a, 7, 64));
    expect_nothing(b, "B");
    CHECK(port_counter(&sw, id_a, "no_route") == 1, "no_route counted");
}

static void test_flood_vlan(void)
{
    start((const char *const[]){"--portgroup", "v10:10", "--portgroup", "v20:20", NULL});
    int a = port_attach_ok(&sw, mac_a, "v10", NULL);
    int b = port_attach_ok(&sw, mac_b, "v10", NULL);
    int c = port_attach_ok(&sw, mac_c, "v10", NULL);
    int d = port_attach_ok(&sw, mac_d, "v20", NULL);
    int e = port_attach_ok(&sw, mac_e, "default", NULL);
    uint8_t f[128];
    frame_send(a, f, frame_build(f, broadcast_mac, mac_a, 1, 60));
    expect_frame(b, 1, "B (same VLAN)");
    expect_frame(c, 1, "C (same VLAN)");
    expect_nothing(a, "A (ingress)");
    expect_nothing(d, "D (VLAN 20)");
    expect_nothing(e, "E (VLAN 0)");
    /* Unknown unicast floods the VLAN too. */
    frame_send(a, f, frame_build(f, mac_unknown, mac_a, 2, 60));
    expect_frame(b, 2, "B");
    expect_frame(c, 2, "C");
    expect_nothing(d, "D");
    /* A known MAC in another VLAN is unreachable: D's MAC from A floods VLAN 10 only. */
    frame_send(a, f, frame_build(f, mac_d, mac_a, 3, 60));
    expect_nothing(d, "D (other VLAN, addressed directly)");
    expect_frame(b, 3, "B");
    /* And the other way round. */
    frame_send(d, f, frame_build(f, broadcast_mac, mac_d, 4, 60));
    expect_nothing(a, "A");
    expect_nothing(e, "E");
    /* Multicast floods like broadcast. */
    const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0, 0, 1};
    frame_send(e, f, frame_build(f, mcast, mac_e, 5, 60));
    expect_nothing(a, "A (multicast from VLAN 0)");
    expect_nothing(e, "E (ingress)");
}

static void test_trunk(void)
{
    start((const char *const[]){"--portgroup", "v10:10", "--portgroup", "trunk:4095", NULL});
    int id_t;
    int a = port_attach_ok(&sw, mac_a, "v10", NULL);
    int t = port_attach_ok(&sw, mac_b, "trunk", &id_t);
    int u = port_attach_ok(&sw, mac_c, "default", NULL);
    uint8_t f[128], got[256];
    frame_send(a, f, frame_build(f, broadcast_mac, mac_a, 1, 60));
    ssize_t n = frame_recv(t, got, sizeof(got), 1000);
    CHECK(n == 64, "trunk got %zd bytes, want 64 (tag inserted)", n);
    CHECK(got[12] == 0x81 && got[13] == 0x00 && ((got[14] << 8 | got[15]) & 0xfff) == 10, "trunk frame tagged VLAN 10");
    CHECK(memcmp(got + 16, f + 12, 48) == 0, "payload intact after the tag");
    /* The trunk sends VLAN 10 tagged to A: A gets it untagged. */
    uint8_t tagged[128];
    size_t len = frame_build(f, mac_a, mac_b, 2, 60);
    memcpy(tagged, f, 12);
    tagged[12] = 0x81, tagged[13] = 0x00, tagged[14] = 0x00, tagged[15] = 10;
    memcpy(tagged + 16, f + 12, len - 12);
    frame_send(t, tagged, len + 4);
    n = frame_recv(a, got, sizeof(got), 1000);
    CHECK(n == (ssize_t)len && memcmp(got, f, len) == 0, "A got the frame untagged (%zd bytes)", n);
    /* Tagged for VLAN 20: nobody is there. */
    tagged[15] = 20;
    frame_send(t, tagged, len + 4);
    expect_nothing(a, "A (VLAN 20 frame)");
    expect_nothing(u, "U (VLAN 0)");
    CHECK(port_counter(&sw, id_t, "no_route") == 1, "VLAN 20 frame had no route");
    /* Untagged from the trunk is VLAN 0. */
    frame_send(t, f, frame_build(f, broadcast_mac, mac_b, 3, 60));
    expect_frame(u, 3, "U");
    expect_nothing(a, "A");
}

static void test_forged(void)
{
    start((const char *const[]){"--portgroup", "pg", NULL});
    int id_a;
    int a = port_attach_ok(&sw, mac_a, "pg", &id_a);
    int b = port_attach_ok(&sw, mac_b, "pg", NULL);
    int c = port_attach_ok(&sw, mac_c, "pg", NULL);
    uint8_t f[128];
    /* Default policy rejects forged transmits. */
    frame_send(a, f, frame_build(f, mac_b, mac_unknown, 1, 60));
    expect_nothing(b, "B (forged source)");
    CHECK(port_counter(&sw, id_a, "forged") == 1, "forged drop counted");
    frame_send(a, f, frame_build(f, mac_b, mac_a, 2, 60));
    expect_frame(b, 2, "B (genuine source)");
    /* Accepted when the port group allows it. */
    switch_control_ok(&sw, "portgroup.set name=pg forged-transmits=accept");
    frame_send(a, f, frame_build(f, mac_b, mac_unknown, 3, 60));
    expect_frame(b, 3, "B (forged, allowed)");
    CHECK(port_counter(&sw, id_a, "forged") == 1, "no new forged drop");
    /* Without MAC changes the forged address stays unknown: replies flood. */
    frame_send(b, f, frame_build(f, mac_unknown, mac_b, 4, 60));
    expect_frame(a, 4, "A (flooded reply)");
    expect_frame(c, 4, "C (flooded reply)");
    /* With MAC changes accepted the address becomes A's: replies go to A only. */
    switch_control_ok(&sw, "portgroup.set name=pg mac-changes=accept");
    frame_send(a, f, frame_build(f, mac_b, mac_unknown, 5, 60));
    expect_frame(b, 5, "B");
    frame_send(b, f, frame_build(f, mac_unknown, mac_b, 6, 60));
    expect_frame(a, 6, "A (changed MAC)");
    expect_nothing(c, "C (changed MAC belongs to A)");
    /* Back to reject: forged frames drop again and the changed MAC is forgotten. */
    switch_control_ok(&sw, "portgroup.set name=pg forged-transmits=inherit mac-changes=inherit");
    frame_send(a, f, frame_build(f, mac_b, mac_unknown, 7, 60));
    expect_nothing(b, "B");
    CHECK(port_counter(&sw, id_a, "forged") == 2, "second forged drop counted");
    /* A multicast source is never acceptable. */
    switch_control_ok(&sw, "policy.set forged-transmits=accept");
    frame_send(a, f, frame_build(f, mac_b, broadcast_mac, 8, 60));
    expect_nothing(b, "B (multicast source)");
    CHECK(port_counter(&sw, id_a, "bad_source") == 1, "bad_source counted");
}

static void test_promiscuous(void)
{
    start((const char *const[]){"--portgroup", "spy", "--portgroup", "v5:5", NULL});
    int a = port_attach_ok(&sw, mac_a, "default", NULL);
    int b = port_attach_ok(&sw, mac_b, "default", NULL);
    int p = port_attach_ok(&sw, mac_c, "spy", NULL);
    int q = port_attach_ok(&sw, mac_d, "v5", NULL);
    uint8_t f[128];
    frame_send(a, f, frame_build(f, mac_b, mac_a, 1, 60));
    expect_frame(b, 1, "B");
    expect_nothing(p, "P (not promiscuous yet)");
    switch_control_ok(&sw, "portgroup.set name=spy promiscuous=accept");
    switch_control_ok(&sw, "portgroup.set name=v5 promiscuous=accept");
    frame_send(a, f, frame_build(f, mac_b, mac_a, 2, 60));
    expect_frame(b, 2, "B");
    expect_frame(p, 2, "P (promiscuous copy)");
    expect_nothing(q, "Q (promiscuous, other VLAN)");
}

static int open_tap_packet_socket(const char *ifname)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0, "SIOCGIFFLAGS %s: %s", ifname, strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, "bring %s up: %s", ifname, strerror(errno));
    close(s);
    int p = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    CHECK(p >= 0, "AF_PACKET: %s", strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex(ifname)};
    CHECK(bind(p, (struct sockaddr *)&sll, sizeof(sll)) == 0, "bind packet socket: %s", strerror(errno));
    return p;
}

/* Puts the test in a private network namespace so its TAP sees no other traffic. */
static void private_netns(void)
{
    CHECK(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s (needs root)", strerror(errno));
}

static void test_mac_flood(void)
{
    private_netns();
    start((const char *const[]){"--uplink", "vswtest0", "--mac-cap", "64", NULL});
    int id_a, id_b;
    int a = port_attach_ok(&sw, mac_a, "default", &id_a);
    int b = port_attach_ok(&sw, mac_b, "default", &id_b);
    int up = open_tap_packet_socket("vswtest0");
    uint8_t f[128], junk[2048];
    uint32_t seq = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        uint8_t src[6] = {0x06, 0x10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0x01};
        size_t len = frame_build(f, mac_a, src, i, 60);
        f[12] = 0x88, f[13] = 0xb6; /* not the test ethertype: A skips these */
        CHECK(send(up, f, len, 0) == (ssize_t)len, "inject on the uplink: %s", strerror(errno));
        if (i % 100 == 0) {
            seq++;
            frame_send(a, f, frame_build(f, mac_b, mac_a, seq, 60));
            expect_frame(b, seq, "B during the flood");
            frame_send(b, f, frame_build(f, mac_a, mac_b, 100000 + seq, 60));
            expect_frame(a, 100000 + seq, "A during the flood");
        }
    }
    while (frame_recv(a, junk, sizeof(junk), 200) > 0)
        ;
    CHECK(status_value(&sw, "mac_learned") == 64, "learned %lld, cap 64", status_value(&sw, "mac_learned"));
    /* The TAP itself may send (IPv6 neighbour discovery) and take a slot: at least 3000 - 64 unlearned. */
    CHECK(port_counter(&sw, 0, "unlearned") >= 3000 - 64, "unlearned %lld", port_counter(&sw, 0, "unlearned"));
    CHECK(port_counter(&sw, 0, "rx_frames") >= 3000, "uplink rx_frames");
    CHECK(port_counter(&sw, id_b, "rx_frames") == seq, "B's traffic all arrived");
    /* A learned uplink address is forwarded to the uplink only, not flooded. */
    const uint8_t learned_src[6] = {0x06, 0x10, 0, 0, 5, 0x01};
    frame_send(a, f, frame_build(f, learned_src, mac_a, 424242, 60));
    expect_nothing(b, "B (destination learned on the uplink)");
    /* Aging empties the table. */
    switch_control_ok(&sw, "mac.set aging=1");
    double deadline = now_s() + 5;
    while (status_value(&sw, "mac_learned") > 0 && now_s() < deadline)
        usleep(100000);
    CHECK(status_value(&sw, "mac_learned") == 0, "learned addresses aged out");
    close(up);
}

/* utime + stime of the switch, in clock ticks. */
static long long switch_cpu_ticks(void)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)sw.pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    const char *after_comm = strrchr(text, ')');
    CHECK(after_comm != NULL, "parse %s", path);
    long long utime = 0, stime = 0;
    CHECK(sscanf(after_comm + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime) == 2,
          "parse %s", path);
    return utime + stime;
}

static int switch_fd_count(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)sw.pid);
    DIR *d = opendir(path);
    CHECK(d != NULL, "open %s", path);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2;
}

/* The uplink's TAP is deleted under the switch: the switch drops the uplink
 * (its descriptor would poll as ready for ever) and its ports go on. */
static void test_uplink_gone(void)
{
    private_netns();
    start((const char *const[]){"--uplink", "vswgone0", NULL});
    int a = port_attach_ok(&sw, mac_a, "default", NULL);
    int b = port_attach_ok(&sw, mac_b, "default", NULL);
    CHECK(system("ip link del vswgone0") == 0, "ip link del vswgone0");
    usleep(300000);
    long long before = switch_cpu_ticks();
    sleep(1);
    long long used = switch_cpu_ticks() - before;
    CHECK(used < 20, "the switch used %lld ticks of CPU in 1 s after its TAP went away", used);
    char out[512];
    CHECK(switch_control(&sw, "uplink.show", out, sizeof(out)), "uplink.show");
    CHECK(strstr(out, "no uplink") != NULL, "uplink.show after the TAP went away: %s", out);
    uint8_t f[128];
    frame_send(a, f, frame_build(f, mac_b, mac_a, 7, 60));
    expect_frame(b, 7, "B after the uplink went away");
}

/* Connections that never send their hello: at most VSW_MAX_PENDING_HELLOS
 * are kept (the oldest go first), so they cannot use up the switch's
 * descriptors, and a VM can still attach. */
static void test_idle_hellos(void)
{
    start(NULL);
    enum { IDLE = 300 };
    int idle[IDLE];
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sw.socket_path);
    for (int i = 0; i < IDLE; i++) {
        idle[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CHECK(idle[i] >= 0 && connect(idle[i], (struct sockaddr *)&addr, sizeof(addr)) == 0,
              "idle connection %d: %s", i, strerror(errno));
    }
    usleep(200000);
    int fds = switch_fd_count();
    /* 64 pending hellos (VSW_MAX_PENDING_HELLOS) and the switch's own few. */
    CHECK(fds < 100, "the switch holds %d descriptors with %d idle connections", fds,
          IDLE);
    int a = port_attach_ok(&sw, mac_a, "default", NULL);
    int b = port_attach_ok(&sw, mac_b, "default", NULL);
    uint8_t f[128];
    frame_send(a, f, frame_build(f, mac_b, mac_a, 9, 60));
    expect_frame(b, 9, "B beside idle connections");
    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
}

static void test_malformed(void)
{
    start((const char *const[]){"--portgroup", "trunk:4095", NULL});
    int id_a, id_t;
    int a = port_attach_ok(&sw, mac_a, "default", &id_a);
    int b = port_attach_ok(&sw, mac_b, "default", NULL);
    int t = port_attach_ok(&sw, mac_c, "trunk", &id_t);
    /* Hellos: truncated, oversize, bad magic, bad version, unknown port group, MAC in use, zero MAC. */
    struct vdsw_hello good = {.magic = VDSW_MAGIC, .version = VDSW_VERSION, .mac = {0x02, 0, 0, 0, 1, 1}};
    snprintf(good.portgroup, sizeof(good.portgroup), "default");
    uint8_t big[200] = {0};
    memcpy(big, &good, sizeof(good));
    CHECK(hello_raw(&sw, &good, 10) == VDSW_STATUS_BAD_HELLO, "truncated hello rejected");
    CHECK(hello_raw(&sw, big, sizeof(big)) == VDSW_STATUS_BAD_HELLO, "oversize hello rejected");
    struct vdsw_hello bad = good;
    bad.magic = 0x12345678;
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_BAD_HELLO, "bad magic rejected");
    bad = good;
    bad.version = 9;
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_BAD_HELLO, "bad version rejected");
    bad = good;
    memset(bad.portgroup, 'x', sizeof(bad.portgroup));
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_BAD_HELLO, "unterminated port group rejected");
    bad = good;
    snprintf(bad.portgroup, sizeof(bad.portgroup), "nosuch");
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_UNKNOWN_PORTGROUP, "unknown port group");
    bad = good;
    memcpy(bad.mac, mac_a, 6);
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_MAC_IN_USE, "MAC in use");
    bad = good;
    memset(bad.mac, 0, 6);
    CHECK(hello_raw(&sw, &bad, sizeof(bad)) == VDSW_STATUS_BAD_HELLO, "zero MAC rejected");
    CHECK(status_value(&sw, "hello_rejects") == 8, "8 hello rejects counted");
    /* Frames: runts, an empty message, oversize, tags on an access port, bad tags on a trunk. */
    uint8_t f[2000] = {0};
    frame_build(f, mac_b, mac_a, 1, sizeof(f));
    frame_send(a, f, 5);
    frame_send(a, f, 13);
    frame_send(a, f, 0);
    frame_send(a, f, 1500 + 14 + 1);
    uint8_t tagged[80];
    memcpy(tagged, f, 12);
    tagged[12] = 0x81, tagged[13] = 0, tagged[14] = 0, tagged[15] = 5;
    memcpy(tagged + 16, f + 12, 60);
    frame_send(a, tagged, 76);
    frame_send(t, tagged, 15);   /* tag cut short */
    tagged[14] = 0x0f, tagged[15] = 0xff;
    frame_send(t, tagged, 76);   /* VID 4095 is reserved */
    expect_nothing(b, "B (after malformed frames)");
    CHECK(port_counter(&sw, id_a, "runt") == 3, "3 runts, got %lld", port_counter(&sw, id_a, "runt"));
    CHECK(port_counter(&sw, id_a, "oversize") == 1, "1 oversize");
    CHECK(port_counter(&sw, id_a, "bad_vlan") == 1, "tag on access port");
    CHECK(port_counter(&sw, id_t, "bad_vlan") == 2, "2 bad tags on the trunk");
    /* A frame of exactly MTU payload passes. */
    frame_send(a, f, frame_build(f, mac_b, mac_a, 2, 1514));
    expect_frame(b, 2, "B (full-size frame)");
    /* Jumbo: raise the MTU to 9000. */
    switch_control_ok(&sw, "mtu.set mtu=9000");
    static uint8_t jumbo[9100];
    frame_send(a, jumbo, frame_build(jumbo, mac_b, mac_a, 3, 9014));
    expect_frame(b, 3, "B (jumbo frame)");
    frame_send(a, jumbo, 9015);
    expect_nothing(b, "B (jumbo + 1)");
    CHECK(port_counter(&sw, id_a, "oversize") == 2, "jumbo+1 is oversize");
    /* Control socket: garbage, an over-long line, a client closing mid-command. */
    char reply[4096];
    CHECK(switch_control(&sw, "\x01\x02garbage \xff\xfe", reply, sizeof(reply)) && !strncmp(reply, "ERR ", 4),
          "garbage gets ERR: %s", reply);
    CHECK(switch_control(&sw, "port.stats port=999", reply, sizeof(reply)) && !strncmp(reply, "ERR ", 4),
          "bad port number gets ERR");
    CHECK(switch_control(&sw, "portgroup.add name=x vlan=4096", reply, sizeof(reply)) && !strncmp(reply, "ERR ", 4),
          "bad VLAN gets ERR");
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sw.control_path);
        CHECK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0, "control connect");
        if (i % 2) {
            CHECK(send(fd, "port.li", 7, 0) == 7, "partial send");
        } else {
            static char huge[6000];
            memset(huge, 'a', sizeof(huge));
            send(fd, huge, sizeof(huge), MSG_NOSIGNAL);
        }
        close(fd);
    }
    /* A port client sending a hello and vanishing, and one sending nothing. */
    int silent = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sw.socket_path);
    CHECK(connect(silent, (struct sockaddr *)&addr, sizeof(addr)) == 0, "silent connect");
    close(silent);
    /* The switch still answers and forwards. */
    switch_control_ok(&sw, "status");
    frame_send(a, f, frame_build(f, mac_b, mac_a, 4, 60));
    expect_frame(b, 4, "B (switch survived)");
}

static void test_reattach(void)
{
    start(NULL);
    int a = port_attach_ok(&sw, mac_a, "default", NULL);
    int b = port_attach_ok(&sw, mac_b, "default", NULL);
    struct vdsw_hello_ack ack;
    CHECK(port_connect(&sw, mac_a, "default", "dup", &ack) < 0 && ack.status == VDSW_STATUS_MAC_IN_USE,
          "second attach with A's MAC refused while A is attached");
    uint8_t f[128];
    for (int round = 0; round < 5; round++) {
        close(a); /* the VM restarts */
        a = -1;
        double deadline = now_s() + 2;
        while (a < 0 && now_s() < deadline) {
            a = port_connect(&sw, mac_a, "default", "vm-a", &ack);
            if (a < 0) {
                CHECK(ack.status == VDSW_STATUS_MAC_IN_USE, "re-attach refused with status %u", ack.status);
                usleep(10000);
            }
        }
        CHECK(a >= 0, "A re-attached with its MAC (round %d)", round);
        frame_send(b, f, frame_build(f, mac_a, mac_b, (uint32_t)round, 60));
        expect_frame(a, (uint32_t)round, "re-attached A");
    }
    CHECK(status_value(&sw, "ports_attached") == 2, "two ports attached after the restarts");
}

static void test_shaping(void)
{
    start((const char *const[]){"--portgroup", "slow", NULL});
    /* 8 Mbit/s average, 16 Mbit/s peak, 10 kB burst. */
    switch_control_ok(&sw, "portgroup.set name=slow shaping=avg=8M,peak=16M,burst=10k");
    int a = port_attach_ok(&sw, mac_a, "default", NULL);
    int id_b;
    int b = port_attach_ok(&sw, mac_b, "slow", &id_b);
    uint8_t f[1100], got[2048];
    size_t len = frame_build(f, mac_b, mac_a, 0, 1000);
    /* Offer 4x the average rate for 2 s: 1000 frames/s * 1000 B = 32 Mbit/s. */
    double start_t = now_s(), next = start_t;
    long long received_bytes = 0;
    double first = 0, last = 0;
    while (now_s() - start_t < 2.0) {
        if (now_s() >= next) {
            for (int i = 0; i < 4; i++)
                frame_send(a, f, len);
            next += 0.001;
        }
        ssize_t n;
        while ((n = frame_recv(b, got, sizeof(got), 0)) > 0) {
            if (first == 0)
                first = now_s();
            last = now_s();
            received_bytes += n;
        }
        usleep(200);
    }
    ssize_t n;
    while ((n = frame_recv(b, got, sizeof(got), 100)) > 0)
        received_bytes += n, last = now_s();
    double seconds = last - first;
    double rate_bps = (double)(received_bytes - 10000) * 8 / seconds;
    fprintf(stderr, "shaped rate %.2f Mbit/s over %.2f s (configured 8)\n", rate_bps / 1e6, seconds);
    CHECK(rate_bps > 8e6 * 0.8 && rate_bps < 8e6 * 1.2, "rate %.2f Mbit/s not within 20%% of 8", rate_bps / 1e6);
    CHECK(port_counter(&sw, id_b, "shaping") > 0, "shaping drops counted");
}

static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
    {"unicast", test_unicast},   {"flood_vlan", test_flood_vlan}, {"trunk", test_trunk},
    {"forged", test_forged},     {"promiscuous", test_promiscuous}, {"mac_flood", test_mac_flood},
    {"malformed", test_malformed}, {"reattach", test_reattach},  {"shaping", test_shaping},
    {"uplink_gone", test_uplink_gone}, {"idle_hellos", test_idle_hellos},
};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: switch_test VDFS-SWITCH-BINARY TEST\n");
        return 2;
    }
    binary = argv[1];
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (strcmp(tests[i].name, argv[2]) == 0) {
            tests[i].run();
            if (!switch_stop(&sw)) {
                fprintf(stderr, "FAIL: the switch did not exit cleanly\n");
                return 1;
            }
            printf("ok %s\n", argv[2]);
            return 0;
        }
    }
    fprintf(stderr, "unknown test %s\n", argv[2]);
    return 2;
}
