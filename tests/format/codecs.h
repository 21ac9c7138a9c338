/* A table of every codec, so that the corruption and fuzz tests treat all
 * on-disk structures alike.  Each entry can build a valid sealed sample and
 * decode a buffer (optionally re-encoding what it decoded). */
#ifndef VDFS_TEST_FORMAT_CODECS_H
#define VDFS_TEST_FORMAT_CODECS_H

#include <errno.h>

#include "format.h"
#include "samples.h"

struct codec {
    const char *name;
    uint32_t kind;
    size_t size;
    void (*make)(uint8_t *buf, uint64_t addr);
    /* Decodes buf; on success and when out is not NULL, encodes the decoded
     * native struct into out. */
    int (*decode)(const uint8_t *buf, uint64_t addr, uint8_t *out);
};

#define CODEC_FUNCS(ID, BASE, TYPE, SAMPLE)                                        \
    static void ID##_make(uint8_t *buf, uint64_t addr)                            \
    {                                                                              \
        static TYPE v;                                                             \
        SAMPLE(&v, addr);                                                          \
        vdfs_##BASE##_encode(&v, buf);                                             \
    }                                                                              \
    static int ID##_decode(const uint8_t *buf, uint64_t addr, uint8_t *out)       \
    {                                                                              \
        static TYPE v;                                                             \
        int rc = vdfs_##BASE##_decode(buf, addr, &v);                              \
        if (rc == 0 && out)                                                        \
            vdfs_##BASE##_encode(&v, out);                                         \
        return rc;                                                                 \
    }

CODEC_FUNCS(super, super, struct vdfs_super, sample_super)
CODEC_FUNCS(heartbeat, heartbeat, struct vdfs_heartbeat, sample_heartbeat)
CODEC_FUNCS(lock, lock, struct vdfs_lock_rec, sample_lock)
CODEC_FUNCS(bitmap, bitmap, struct vdfs_bitmap, sample_bitmap)
CODEC_FUNCS(fd_block, fd, struct vdfs_fd, sample_fd_block)
CODEC_FUNCS(fd_resident, fd, struct vdfs_fd, sample_fd_resident)
CODEC_FUNCS(pb, pb, struct vdfs_pb, sample_pb)
CODEC_FUNCS(dir, dirblock, struct vdfs_dirblock, sample_dir)
CODEC_FUNCS(jheader, jheader, struct vdfs_jheader, sample_jheader)
CODEC_FUNCS(jdesc, jdesc, struct vdfs_jdesc, sample_jdesc)

static const struct codec codecs[] = {
    { "super", VDFS_KIND_SUPER, VDFS_META_SIZE, super_make, super_decode },
    { "heartbeat", VDFS_KIND_HEARTBEAT, VDFS_SECTOR_SIZE, heartbeat_make, heartbeat_decode },
    { "lock", VDFS_KIND_LOCK, VDFS_SECTOR_SIZE, lock_make, lock_decode },
    { "bitmap", VDFS_KIND_BITMAP, VDFS_META_SIZE, bitmap_make, bitmap_decode },
    { "fd/block", VDFS_KIND_FD, VDFS_META_SIZE, fd_block_make, fd_block_decode },
    { "fd/resident", VDFS_KIND_FD, VDFS_META_SIZE, fd_resident_make, fd_resident_decode },
    { "pb", VDFS_KIND_PB, VDFS_META_SIZE, pb_make, pb_decode },
    { "dirblock", VDFS_KIND_DIR, VDFS_META_SIZE, dir_make, dir_decode },
    { "jheader", VDFS_KIND_JHEADER, VDFS_META_SIZE, jheader_make, jheader_decode },
    { "jdesc", VDFS_KIND_JDESC, VDFS_META_SIZE, jdesc_make, jdesc_decode },
};
#define NCODECS (sizeof(codecs) / sizeof(codecs[0]))

#endif
