/* Patches to the metadata of a datastore image, for the fuzzers of the
 * mount path (fuzz_mount.c) and of fsck (tests/fsck/fuzz_fsck.c).
 *
 * A base image is loaded once.  Each input applies its patches to a copy:
 *
 *   le16 block, le16 offset, u8 length, that many bytes
 *
 * A patch goes to a non-empty 4 KiB block of the base's metadata
 * (everything before the file blocks): block % 7 picks a class (superblock,
 * heartbeat and lock areas; journals; bitmaps; descriptors; pointer blocks;
 * directory blocks; other), block / 7 a block of it, so that the rare kinds
 * are reached as often as descriptors.  Unless raw, every object a patch
 * touched is sealed again (magic, checksum) and journal descriptors get
 * their images' checksum recomputed: the reader then believes the corrupt
 * values instead of stopping at the checksum. */
#ifndef VDFS_TESTS_METADATA_PATCH_H
#define VDFS_TESTS_METADATA_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

enum { PATCH_CLASS_AREAS, PATCH_CLASS_JOURNAL, PATCH_CLASS_BITMAP, PATCH_CLASS_FD, PATCH_CLASS_PB,
       PATCH_CLASS_DIR, PATCH_CLASS_OTHER, PATCH_CLASSES };

#define PATCH_MAX_TOUCHED 256

struct patch_base {
    uint8_t *image;  /* pristine */
    uint8_t *work;   /* patched copy, restored block by block after each input */
    size_t size;
    struct vdfs_super sb;
    uint64_t meta_end;   /* start of the file blocks */
    uint64_t *blocks;    /* offsets of non-empty 4 KiB blocks before meta_end */
    size_t nblocks;
    uint64_t *by_class[PATCH_CLASSES];
    size_t nclass[PATCH_CLASSES];
};

/* The 4 KiB blocks one input changed (journal descriptors re-sealed for
 * it included). */
struct patch_set {
    uint64_t touched[PATCH_MAX_TOUCHED];
    size_t ntouched;
};

/* Loads `path`; aborts with a message if it is not a datastore image. */
void patch_base_load(struct patch_base *b, const char *path);
/* Applies the patches in `data` (the format above) to b->work. */
void patch_apply(struct patch_base *b, const uint8_t *data, size_t size, bool raw, struct patch_set *set);
/* The patched image in a new file: a memfd, or an unlinked file in `dir`
 * when it is not NULL (so that it can be opened with O_DIRECT). */
int patch_write_image(const struct patch_base *b, const struct patch_set *set, const char *dir);
/* Puts the pristine blocks back for the next input. */
void patch_restore(struct patch_base *b, const struct patch_set *set);

#endif
