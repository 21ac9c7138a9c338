#include <stdarg.h>
#include <stdbool.h>

#include "console.h"
#include "io.h"
#include "lib.h"

#define COM1_THR 0x3f8

static void console_putc(char c)
{
	outb(COM1_THR, (uint8_t)c);
}

void console_write(const char *s)
{
	while (*s)
		console_putc(*s++);
}

static void put_unsigned(uint64_t value, unsigned base, int width, char pad)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[value % base];
		value /= base;
	} while (value);
	while (width-- > n)
		console_putc(pad);
	while (n)
		console_putc(digits[--n]);
}

void console_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (const char *p = fmt; *p; p++) {
		int width = 0, longs = 0;
		char pad = ' ';

		if (*p != '%') {
			console_putc(*p);
			continue;
		}
		p++;
		if (*p == '0')
			pad = '0';
		while (*p >= '0' && *p <= '9')
			width = width * 10 + (*p++ - '0');
		while (*p == 'l') {
			longs++;
			p++;
		}
		switch (*p) {
		case 's':
			console_write(va_arg(ap, const char *));
			break;
		case 'c':
			console_putc((char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);

			if (v < 0) {
				console_putc('-');
				put_unsigned(-(uint64_t)v, 10, width, pad);
			} else {
				put_unsigned((uint64_t)v, 10, width, pad);
			}
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);

			put_unsigned(v, *p == 'u' ? 10 : 16, width, pad);
			break;
		}
		case '%':
			console_putc('%');
			break;
		default:
			console_putc('?');
			if (!*p)
				p--;
			break;
		}
	}
	va_end(ap);
}
