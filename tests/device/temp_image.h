/* Scratch image files for the device tests. */
#ifndef VDFS_TEST_TEMP_IMAGE_H
#define VDFS_TEST_TEMP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Creates an image of `size` bytes (sparse) in `dir` and writes its path
 * into `path` (at least 256 bytes).  Aborts the test on failure. */
void temp_image_create(const char *dir, uint64_t size, char *path);

/* Fills `buf` with bytes derived from `seed`, so that every (seed, index)
 * pair gives a distinct, checkable pattern. */
void fill_pattern(void *buf, size_t len, uint64_t seed);

#endif
