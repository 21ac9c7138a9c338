/* The few C library pieces a freestanding guest needs. */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GCC may emit calls to these four even with -ffreestanding. */
void *memset(void *dst, int value, size_t len);
void *memcpy(void *restrict dst, const void *restrict src, size_t len);
void *memmove(void *dst, const void *src, size_t len);
int memcmp(const void *a, const void *b, size_t len);

size_t str_len(const char *s);
bool str_equal_n(const char *a, const char *b, size_t n);
/* Parses decimal, or hex with 0x; an optional K/M/G suffix multiplies by
 * 1024^n.  Returns false on any other character or overflow. */
bool parse_u64(const char *s, size_t len, uint64_t *out);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline uint64_t align_up(uint64_t value, uint64_t align)
{
	return (value + align - 1) & ~(align - 1);
}

#endif
