/* libFuzzer entry: every decoder sees the input, both as it is and sealed
 * with a valid header so that the semantic checks behind the checksum are
 * reached.  The first byte picks the decoder's address alignment noise and
 * whether to seal; the rest is the object. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes as kind `kind`; whatever decodes must re-encode to a buffer that
 * decodes again to the same bytes. */
#define FUZZ_ONE(BASE, TYPE, LEN, KIND)                                         \
    do {                                                                        \
        static TYPE v;                                                          \
        static uint8_t again[LEN], third[LEN];                                  \
        uint8_t obj[LEN];                                                       \
        memset(obj, 0, sizeof(obj));                                            \
        memcpy(obj, body, body_len < LEN ? body_len : LEN);                     \
        if (seal) {                                                             \
            struct vdfs_header h = { KIND, addr, 1 };                           \
            vdfs_obj_seal(obj, LEN, &h);                                        \
        }                                                                       \
        int rc = vdfs_##BASE##_decode(obj, addr, &v);                           \
        if (rc != 0 && rc != -EIO && rc != -EINVAL && rc != -EOPNOTSUPP)        \
            abort();                                                            \
        if (rc == 0) {                                                          \
            vdfs_##BASE##_encode(&v, again);                                    \
            if (vdfs_##BASE##_decode(again, addr, &v) != 0)                     \
                abort();                                                        \
            vdfs_##BASE##_encode(&v, third);                                    \
            if (memcmp(again, third, LEN) != 0)                                 \
                abort();                                                        \
        }                                                                       \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool seal = data[0] & 1;
    uint64_t addr = (uint64_t)(data[0] >> 1) * VDFS_META_SIZE;
    const uint8_t *body = data + 1;
    size_t body_len = size - 1;

    FUZZ_ONE(super, struct vdfs_super, VDFS_META_SIZE, VDFS_KIND_SUPER);
    FUZZ_ONE(heartbeat, struct vdfs_heartbeat, VDFS_SECTOR_SIZE, VDFS_KIND_HEARTBEAT);
    FUZZ_ONE(lock, struct vdfs_lock_rec, VDFS_SECTOR_SIZE, VDFS_KIND_LOCK);
    FUZZ_ONE(bitmap, struct vdfs_bitmap, VDFS_META_SIZE, VDFS_KIND_BITMAP);
    FUZZ_ONE(fd, struct vdfs_fd, VDFS_META_SIZE, VDFS_KIND_FD);
    FUZZ_ONE(pb, struct vdfs_pb, VDFS_META_SIZE, VDFS_KIND_PB);
    FUZZ_ONE(dirblock, struct vdfs_dirblock, VDFS_META_SIZE, VDFS_KIND_DIR);
    FUZZ_ONE(jheader, struct vdfs_jheader, VDFS_META_SIZE, VDFS_KIND_JHEADER);
    FUZZ_ONE(jdesc, struct vdfs_jdesc, VDFS_META_SIZE, VDFS_KIND_JDESC);
    return 0;
}
