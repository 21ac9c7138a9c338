/* Datastore UUIDs for -U: generation (RFC 9562 versions 1 and 4); the
 * library parses and prints them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "mkfs.h"
#include "vdfs.h"

int mkfs_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Version 1: 60-bit count of 100 ns intervals since 1582-10-15, a random
 * clock sequence and a random node id with the multicast bit set, as RFC
 * 9562 section 6.10 allows when no MAC address is to be exposed. */
static int time_uuid(uint8_t uuid[VDFS_UUID_SIZE])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 10000000u + (uint64_t)ts.tv_nsec / 100u + 0x01B21DD213814000ull;
    uint8_t rnd[8];
    int rc = mkfs_random_bytes(rnd, sizeof(rnd));
    if (rc != 0)
        return rc;
    uint32_t time_low = (uint32_t)t;
    uint16_t time_mid = (uint16_t)(t >> 32);
    uint16_t time_hi = (uint16_t)((t >> 48) & 0x0fff) | 0x1000;
    uuid[0] = (uint8_t)(time_low >> 24);
    uuid[1] = (uint8_t)(time_low >> 16);
    uuid[2] = (uint8_t)(time_low >> 8);
    uuid[3] = (uint8_t)time_low;
    uuid[4] = (uint8_t)(time_mid >> 8);
    uuid[5] = (uint8_t)time_mid;
    uuid[6] = (uint8_t)(time_hi >> 8);
    uuid[7] = (uint8_t)time_hi;
    uuid[8] = (uint8_t)((rnd[0] & 0x3f) | 0x80);
    uuid[9] = rnd[1];
    memcpy(uuid + 10, rnd + 2, 6);
    uuid[10] |= 0x01;
    return 0;
}

static int random_uuid(uint8_t uuid[VDFS_UUID_SIZE])
{
    int rc = mkfs_random_bytes(uuid, VDFS_UUID_SIZE);
    if (rc != 0)
        return rc;
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
    return 0;
}

int mkfs_uuid_from_arg(const char *arg, uint8_t uuid[VDFS_UUID_SIZE])
{
    if (strcmp(arg, "random") == 0)
        return random_uuid(uuid);
    if (strcmp(arg, "time") == 0)
        return time_uuid(uuid);
    return vdfs_uuid_parse(arg, uuid);
}
