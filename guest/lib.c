#include "lib.h"

void *memset(void *dst, int value, size_t len)
{
	void *ret = dst;
	__asm__ volatile("rep stosb" : "+D"(dst), "+c"(len) : "a"(value) : "memory");
	return ret;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t len)
{
	void *ret = dst;
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(len) : : "memory");
	return ret;
}

void *memmove(void *dst, const void *src, size_t len)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + len)
		return memcpy(dst, src, len);
	while (len--)
		d[len] = s[len];
	return dst;
}

int memcmp(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < len; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t str_len(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

bool str_equal_n(const char *a, const char *b, size_t n)
{
	return str_len(b) == n && memcmp(a, b, n) == 0;
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t base = 10, value = 0, scale = 1;
	size_t i = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	} else if (len > 1) {
		switch (s[len - 1]) {
		case 'k': case 'K': scale = 1ULL << 10; len--; break;
		case 'm': case 'M': scale = 1ULL << 20; len--; break;
		case 'g': case 'G': scale = 1ULL << 30; len--; break;
		default: break;
		}
	}
	if (i >= len)
		return false;
	for (; i < len; i++) {
		int d = digit_value(s[i]);

		if (d < 0 || (uint64_t)d >= base)
			return false;
		if (value > (UINT64_MAX - (uint64_t)d) / base)
			return false;
		value = value * base + (uint64_t)d;
	}
	if (value > UINT64_MAX / scale)
		return false;
	*out = value * scale;
	return true;
}
