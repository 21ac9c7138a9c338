/* The guest's command line: space-separated key=value words. */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void cmdline_init(const char *line);
/* The value of the last occurrence of key, not NUL-terminated. */
bool cmdline_get(const char *key, const char **value, size_t *len);
bool cmdline_value_is(const char *key, const char *expected);
/* *out = value of key, or fallback when absent.  False (after printing an
 * error) when present but not a number. */
bool cmdline_u64(const char *key, uint64_t fallback, uint64_t *out);
/* False (after printing an error) if a word is not key=value or names a key
 * outside known.  Words with a '.' in the key (Linux module parameters some
 * VMMs append) are ignored. */
bool cmdline_check_keys(const char *const *known, size_t count);

#endif
