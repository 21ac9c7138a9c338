/* Test helper for the cluster suite: where a datastore's heartbeat slots
 * and lock records live, read from its superblock, so that a test can damage
 * exactly one of those 512-byte sectors.
 *
 *   cluster-sector IMAGE hb SLOT      byte offset of heartbeat slot SLOT
 *   cluster-sector IMAGE fdlock INO   byte offset of descriptor INO's lock record
 *                                     (INO 0 is the volume metadata lock)
 *   cluster-sector IMAGE timing -     the superblock's heartbeat interval and
 *                                     timeout: "interval_ms N timeout_ms N"
 *
 * Prints one decimal number; exit 1 with a message on bad input.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "cluster-sector: %s: %s\n", what, why);
    return 1;
}

static int parse_u32(const char *text, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cluster-sector IMAGE hb SLOT | fdlock INO | timing -\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        return fail(argv[1], strerror(errno));
    static uint8_t buf[VDFS_META_SIZE];
    ssize_t got = pread(fd, buf, sizeof(buf), 0);
    close(fd);
    struct vdfs_super sb;
    if (got != (ssize_t)sizeof(buf) || vdfs_super_decode(buf, 0, &sb) != 0)
        return fail(argv[1], "no valid vdfs superblock");
    const char *what = argv[2];
    if (strcmp(what, "timing") == 0) {
        printf("interval_ms %" PRIu32 " timeout_ms %" PRIu32 "\n", sb.hb_interval_ms, sb.hb_timeout_ms);
        return 0;
    }
    if (strcmp(what, "hb") != 0 && strcmp(what, "fdlock") != 0)
        return fail(what, "unknown request (hb, fdlock or timing)");
    uint32_t n;
    if (argc != 4 || parse_u32(argv[3], &n) != 0)
        return fail(what, "needs one decimal number");
    if (strcmp(what, "hb") == 0) {
        if (n >= sb.max_hosts)
            return fail("hb", "slot beyond max_hosts");
        printf("%" PRIu64 "\n", vdfs_heartbeat_addr(&sb, n));
    } else {
        if (vdfs_fd_lock_index(&sb, n) >= sb.lock_count)
            return fail("fdlock", "ino beyond the lock area");
        printf("%" PRIu64 "\n", vdfs_lock_addr(&sb, vdfs_fd_lock_index(&sb, n)));
    }
    return 0;
}
