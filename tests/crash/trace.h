/* Reading a device write trace (VDFS_TRACE_WRITES, vmfs/device.h) and
 * applying its records to an image file, for the crash test. */
#ifndef CRASH_TRACE_H
#define CRASH_TRACE_H

#include <stddef.h>
#include <stdint.h>

struct trace_record {
    uint32_t op;          /* enum vdfs_trace_op */
    uint64_t offset;
    uint64_t length;
    const uint8_t *data;  /* into the mapped trace; writes only */
    uint64_t end_byte;    /* trace file size once this record is appended */
};

struct trace {
    void *map;
    size_t map_len;
    struct trace_record *records;
    size_t count;
};

/* Maps the trace and indexes its records.  A truncated or malformed
 * record is an error (message on stderr), never silently dropped. */
int trace_load(const char *path, struct trace *t);
void trace_free(struct trace *t);

/* Number of records that were complete when the trace was `bytes` long. */
size_t trace_records_within(const struct trace *t, uint64_t bytes);

/* Applies one record to an image: WRITE writes its data, ZERO and DISCARD
 * punch a hole (a discarded range's content is unspecified; zeros are one
 * allowed outcome), FLUSH changes nothing.  0 or -errno. */
int trace_apply(int image_fd, const struct trace_record *r);

/* Copies an image file keeping holes as holes.  0 or -errno. */
int sparse_copy(int src_fd, int dst_fd);

#endif
