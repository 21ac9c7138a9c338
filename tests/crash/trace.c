#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"

#define RECORD_HEADER 24

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

int trace_load(const char *path, struct trace *t)
{
    memset(t, 0, sizeof(*t));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    t->map_len = (size_t)st.st_size;
    if (t->map_len > 0) {
        t->map = mmap(NULL, t->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (t->map == MAP_FAILED) {
            int err = -errno;
            t->map = NULL;
            close(fd);
            return err;
        }
    }
    close(fd);
    size_t cap = 0;
    uint64_t pos = 0;
    const uint8_t *base = t->map;
    while (pos < t->map_len) {
        if (t->map_len - pos < RECORD_HEADER) {
            fprintf(stderr, "%s: truncated record header at byte %llu\n", path, (unsigned long long)pos);
            trace_free(t);
            return -EINVAL;
        }
        struct trace_record r = {
            .op = le32(base + pos),
            .offset = le64(base + pos + 8),
            .length = le64(base + pos + 16),
        };
        pos += RECORD_HEADER;
        if (r.op < VDFS_TRACE_WRITE || r.op > VDFS_TRACE_DISCARD) {
            fprintf(stderr, "%s: unknown op %u at byte %llu\n", path, r.op, (unsigned long long)pos - RECORD_HEADER);
            trace_free(t);
            return -EINVAL;
        }
        if (r.op == VDFS_TRACE_WRITE) {
            if (r.length > t->map_len - pos) {
                fprintf(stderr, "%s: truncated write data at byte %llu\n", path, (unsigned long long)pos);
                trace_free(t);
                return -EINVAL;
            }
            r.data = base + pos;
            pos += r.length;
        }
        r.end_byte = pos;
        if (t->count == cap) {
            cap = cap ? cap * 2 : 256;
            struct trace_record *more = realloc(t->records, cap * sizeof(*more));
            if (!more) {
                trace_free(t);
                return -ENOMEM;
            }
            t->records = more;
        }
        t->records[t->count++] = r;
    }
    return 0;
}

void trace_free(struct trace *t)
{
    if (t->map)
        munmap(t->map, t->map_len);
    free(t->records);
    memset(t, 0, sizeof(*t));
}

size_t trace_records_within(const struct trace *t, uint64_t bytes)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->records[mid].end_byte <= bytes)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int write_all(int fd, const uint8_t *buf, uint64_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int trace_apply(int image_fd, const struct trace_record *r)
{
    switch (r->op) {
    case VDFS_TRACE_WRITE:
        return write_all(image_fd, r->data, r->length, r->offset);
    case VDFS_TRACE_ZERO:
    case VDFS_TRACE_DISCARD:
        if (r->length == 0)
            return 0;
        if (fallocate(image_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r->offset, (off_t)r->length) != 0)
            return -errno;
        return 0;
    default:
        return 0;
    }
}

int sparse_copy(int src_fd, int dst_fd)
{
    struct stat st;
    if (fstat(src_fd, &st) != 0)
        return -errno;
    if (ftruncate(dst_fd, 0) != 0 || ftruncate(dst_fd, st.st_size) != 0)
        return -errno;
    off_t pos = 0;
    while (pos < st.st_size) {
        off_t data = lseek(src_fd, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno;
        off_t hole = lseek(src_fd, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        off_t in = data, out = data;
        while (in < hole) {
            ssize_t n = copy_file_range(src_fd, &in, dst_fd, &out, (size_t)(hole - in), 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (n == 0)
                return -EIO;
        }
        pos = hole;
    }
    return 0;
}
