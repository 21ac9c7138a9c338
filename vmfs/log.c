/* Library messages, clocks, random bytes and host identity. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static vdfs_log_fn log_fn;
static void *log_ctx;

void vdfs_set_logger(vdfs_log_fn fn, void *ctx)
{
    log_fn = fn;
    log_ctx = ctx;
}

void vdfs_log(int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, msg, log_ctx);
        return;
    }
    const char *env = getenv("VDFS_LOG");
    int threshold = env ? atoi(env) : VDFS_LOG_WARN;
    if (level <= threshold)
        fprintf(stderr, "vdfs: %s\n", msg);
}

uint64_t vdfs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t vdfs_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void vdfs_sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void vdfs_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0) {
            /* getrandom only fails before the pool is seeded; fall back to time. */
            uint64_t t = vdfs_now_ns() ^ (uint64_t)getpid();
            memcpy(p, &t, len < sizeof(t) ? len : sizeof(t));
            n = (ssize_t)(len < sizeof(t) ? len : sizeof(t));
        }
        p += n;
        len -= (size_t)n;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vdfs_uuid_parse(const char *s, uint8_t uuid[VDFS_UUID_SIZE])
{
    if (strlen(s) != 36)
        return -EINVAL;
    unsigned byte = 0;
    for (unsigned i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -EINVAL;
            i++;
            continue;
        }
        int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        uuid[byte++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

void vdfs_uuid_format(const uint8_t u[VDFS_UUID_SIZE], char text[37])
{
    snprintf(text, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

void vdfs_uuid_generate(uint8_t uuid[VDFS_UUID_SIZE])
{
    vdfs_random_bytes(uuid, VDFS_UUID_SIZE);
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

int vdfs_host_uuid(uint8_t uuid[VDFS_UUID_SIZE], bool fresh)
{
    const char *env = getenv("VDFS_HOST_UUID");
    if (env && *env)
        return vdfs_uuid_parse(env, uuid);
    if (fresh) {
        vdfs_uuid_generate(uuid);
        return 0;
    }
    const char *path = "/etc/vdfs/host-uuid";
    char text[64] = {0};
    FILE *f = fopen(path, "r");
    if (f) {
        bool ok = fgets(text, sizeof(text), f) != NULL;
        fclose(f);
        text[strcspn(text, "\r\n")] = 0;
        if (ok && vdfs_uuid_parse(text, uuid) == 0)
            return 0;
    }
    vdfs_uuid_generate(uuid);
    /* Persisting is best effort: a host that cannot store its UUID still
     * mounts, it just looks like a new host next time. */
    mkdir("/etc/vdfs", 0755);
    char tmp[64];
    vdfs_uuid_format(uuid, text);
    snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
    f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\n", text);
        if (fclose(f) == 0 && rename(tmp, path) == 0)
            return 0;
        unlink(tmp);
    }
    return 0;
}

const char *vdfs_strerror(int err)
{
    return strerror(err < 0 ? -err : err);
}
