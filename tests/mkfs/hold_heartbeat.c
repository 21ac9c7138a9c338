/* Plays a mounted vdfs host for the mkfs tests: stamps heartbeat slot
 * SLOT of IMAGE LIVE and holds the slot's liveness lock, as a mounting
 * process does (vmfs/heartbeat.c), until its standard input closes.
 *
 * With "lock-only" it holds the lock but leaves the slot FREE, like a host
 * caught in the middle of claiming it.
 *
 * Usage: hold_heartbeat IMAGE SLOT [lock-only]   (prints "ready" once it holds the slot) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "format.h"

int main(int argc, char **argv)
{
    bool lock_only = argc == 4 && strcmp(argv[3], "lock-only") == 0;
    if (argc != 3 && !lock_only) {
        fprintf(stderr, "usage: hold_heartbeat IMAGE SLOT [lock-only]\n");
        return 2;
    }
    struct vdfs_dev *dev;
    int rc = vdfs_dev_open(argv[1], 0, &dev);
    if (rc != 0) {
        fprintf(stderr, "hold_heartbeat: %s: %s\n", argv[1], strerror(-rc));
        return 1;
    }
    static uint8_t buf[VDFS_META_SIZE];
    struct vdfs_super sb;
    if (vdfs_dev_read(dev, buf, sizeof(buf), VDFS_SUPER_OFFSET) != 0 ||
        vdfs_super_decode(buf, VDFS_SUPER_OFFSET, &sb) != 0) {
        fprintf(stderr, "hold_heartbeat: %s holds no readable vdfs superblock\n", argv[1]);
        return 1;
    }
    uint32_t slot = (uint32_t)strtoul(argv[2], NULL, 10);
    if (slot >= sb.max_hosts) {
        fprintf(stderr, "hold_heartbeat: slot %u out of range\n", slot);
        return 1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct vdfs_heartbeat hb = {
        .hdr = {.kind = VDFS_KIND_HEARTBEAT, .addr = vdfs_heartbeat_addr(&sb, slot), .gen = 1},
        .state = VDFS_HB_LIVE,
        .slot = slot,
        .hb_gen = 1,
        .counter = 1,
        .stamp_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
        .interval_ms = sb.hb_interval_ms,
        .pid = (uint32_t)getpid(),
        .replayer_slot = VDFS_NO_SLOT,
    };
    memset(hb.host_uuid, 0xab, sizeof(hb.host_uuid));
    gethostname(hb.hostname, sizeof(hb.hostname) - 1);
    uint8_t sector[VDFS_SECTOR_SIZE];
    vdfs_heartbeat_encode(&hb, sector);
    rc = vdfs_dev_try_lock(dev, vdfs_liveness_lock_offset(slot), 1, false);
    if (rc == 0 && !lock_only)
        rc = vdfs_dev_write(dev, sector, sizeof(sector), hb.hdr.addr);
    if (rc == 0 && !lock_only)
        rc = vdfs_dev_flush(dev);
    if (rc != 0) {
        fprintf(stderr, "hold_heartbeat: cannot claim slot %u: %s\n", slot, strerror(-rc));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(STDIN_FILENO, &c, 1) > 0)
        ;
    vdfs_dev_close(dev);
    return 0;
}
