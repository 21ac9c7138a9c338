#include "mem_disk.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fuzz_input.h"

#define CHECK(cond) FUZZ_CHECK("mem_disk", d->report, cond)

enum mem_op { OP_READ, OP_WRITE, OP_FLUSH, OP_ZERO };

static struct mem_disk *to_disk(struct blk_backend *be)
{
    return (struct mem_disk *)be;
}

static bool in_ram(const struct mem_disk *d, const void *p, size_t len)
{
    const uint8_t *b = p;
    return b >= d->ram && b <= d->ram + d->ram_size && len <= (size_t)(d->ram + d->ram_size - b);
}

static void check_range(const struct mem_disk *d, const struct blk_io *io)
{
    CHECK(io->len > 0);
    CHECK(io->offset % VIRTIO_BLK_SECTOR_SIZE == 0 && io->len % VIRTIO_BLK_SECTOR_SIZE == 0);
    CHECK(io->offset <= d->capacity && io->len <= d->capacity - io->offset);
}

static void check_rw(const struct mem_disk *d, const struct blk_io *io)
{
    check_range(d, io);
    CHECK(io->iovcnt >= 1 && io->iovcnt <= 1024);
    uint64_t sum = 0;
    for (int i = 0; i < io->iovcnt; i++) {
        CHECK(io->iov[i].iov_len > 0);
        CHECK(in_ram(d, io->iov[i].iov_base, io->iov[i].iov_len));
        sum += io->iov[i].iov_len;
    }
    CHECK(sum == io->len);
}

static void mem_do(struct mem_disk *d, struct blk_io *io)
{
    size_t done = 0;
    switch (io->backend_state) {
    case OP_READ:
        for (int i = 0; i < io->iovcnt; i++) {
            memcpy(io->iov[i].iov_base, d->data + io->offset + done, io->iov[i].iov_len);
            done += io->iov[i].iov_len;
        }
        break;
    case OP_WRITE:
        for (int i = 0; i < io->iovcnt; i++) {
            memcpy(d->data + io->offset + done, io->iov[i].iov_base, io->iov[i].iov_len);
            done += io->iov[i].iov_len;
        }
        break;
    case OP_ZERO:
        memset(d->data + io->offset, 0, io->len);
        break;
    }
    io->complete(io, 0);
}

static int mem_accept(struct mem_disk *d, struct blk_io *io, enum mem_op op)
{
    io->backend_state = op;
    if (!d->async) {
        mem_do(d, io);
        return 0;
    }
    CHECK(d->nqueued < sizeof(d->queued) / sizeof(d->queued[0]));
    d->queued[d->nqueued++] = io;
    return 0;
}

static int mem_read(struct blk_backend *be, struct blk_io *io)
{
    check_rw(to_disk(be), io);
    return mem_accept(to_disk(be), io, OP_READ);
}

static int mem_write(struct blk_backend *be, struct blk_io *io)
{
    struct mem_disk *d = to_disk(be);
    CHECK(!be->readonly);
    check_rw(d, io);
    return mem_accept(d, io, OP_WRITE);
}

static int mem_flush(struct blk_backend *be, struct blk_io *io)
{
    return mem_accept(to_disk(be), io, OP_FLUSH);
}

static int mem_zero(struct blk_backend *be, struct blk_io *io)
{
    struct mem_disk *d = to_disk(be);
    CHECK(!be->readonly);
    check_range(d, io);
    return mem_accept(d, io, OP_ZERO);
}

static uint64_t mem_capacity(struct blk_backend *be)
{
    return to_disk(be)->capacity;
}

static void mem_close(struct blk_backend *be)
{
    struct mem_disk *d = to_disk(be);
    CHECK(d->nqueued == 0); /* the device drained its I/O first */
    if (d->efd >= 0)
        close(d->efd);
    free(d->data);
    free(d);
}

static void mem_submit(struct blk_backend *be)
{
    eventfd_write(to_disk(be)->efd, 1);
}

static int mem_completion_fd(struct blk_backend *be)
{
    return to_disk(be)->efd;
}

static void mem_reap(struct blk_backend *be)
{
    struct mem_disk *d = to_disk(be);
    eventfd_t ignored;
    eventfd_read(d->efd, &ignored);
    unsigned n = d->nqueued;
    d->nqueued = 0;
    struct blk_io *batch[1024];
    memcpy(batch, d->queued, n * sizeof(batch[0]));
    while (n)
        mem_do(d, batch[--n]);
}

static const struct blk_backend_ops sync_ops = {
    .read = mem_read, .write = mem_write, .flush = mem_flush, .discard = mem_zero,
    .write_zeroes = mem_zero, .capacity = mem_capacity, .close = mem_close,
};
static const struct blk_backend_ops async_ops = {
    .read = mem_read, .write = mem_write, .flush = mem_flush, .discard = mem_zero,
    .write_zeroes = mem_zero, .capacity = mem_capacity, .close = mem_close,
    .submit = mem_submit, .completion_fd = mem_completion_fd, .reap = mem_reap,
};

struct mem_disk *mem_disk_create(uint64_t sectors, uint8_t (*fill)(size_t at), bool readonly, bool async,
                                 const uint8_t *ram, size_t ram_size, FILE *report)
{
    struct mem_disk *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    d->report = report;
    d->capacity = sectors * VIRTIO_BLK_SECTOR_SIZE;
    d->data = malloc(d->capacity ? d->capacity : 1);
    CHECK(d->data);
    for (size_t i = 0; fill && i < d->capacity; i++)
        d->data[i] = fill(i);
    if (!fill)
        memset(d->data, 0, d->capacity);
    d->be.readonly = readonly;
    d->be.ops = async ? &async_ops : &sync_ops;
    d->async = async;
    d->ram = ram;
    d->ram_size = ram_size;
    d->efd = async ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
    CHECK(!async || d->efd >= 0);
    return d;
}
