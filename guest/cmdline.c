#include "cmdline.h"
#include "console.h"
#include "lib.h"

static const char *cmdline = "";

void cmdline_init(const char *line)
{
	cmdline = line ? line : "";
}

struct word {
	const char *key, *value;
	size_t key_len, value_len;
	bool has_value;
};

/* Splits the next word at *pos; false at the end of the line. */
static bool next_word(const char **pos, struct word *w)
{
	const char *p = *pos, *start;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (!*p)
		return false;
	start = p;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '=')
		p++;
	w->key = start;
	w->key_len = (size_t)(p - start);
	w->has_value = *p == '=';
	if (w->has_value)
		p++;
	w->value = p;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n')
		p++;
	w->value_len = (size_t)(p - w->value);
	*pos = p;
	return true;
}

bool cmdline_get(const char *key, const char **value, size_t *len)
{
	const char *pos = cmdline;
	struct word w;
	bool found = false;

	while (next_word(&pos, &w)) {
		if (w.has_value && str_equal_n(w.key, key, w.key_len)) {
			*value = w.value;
			*len = w.value_len;
			found = true;
		}
	}
	return found;
}

bool cmdline_value_is(const char *key, const char *expected)
{
	const char *value;
	size_t len;

	return cmdline_get(key, &value, &len) && str_equal_n(value, expected, len);
}

bool cmdline_u64(const char *key, uint64_t fallback, uint64_t *out)
{
	const char *value;
	size_t len;

	if (!cmdline_get(key, &value, &len)) {
		*out = fallback;
		return true;
	}
	if (parse_u64(value, len, out))
		return true;
	console_printf("VDFS-GUEST ERROR %s= needs a number\n", key);
	return false;
}

static bool has_dot(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '.')
			return true;
	return false;
}

bool cmdline_check_keys(const char *const *known, size_t count)
{
	const char *pos = cmdline;
	struct word w;
	bool ok = true;

	while (next_word(&pos, &w)) {
		bool found = false;

		if (has_dot(w.key, w.key_len))
			continue;
		for (size_t i = 0; i < count && !found; i++)
			found = str_equal_n(w.key, known[i], w.key_len);
		if (!found || !w.has_value) {
			char word[64];
			size_t n = w.key_len < sizeof(word) - 1 ? w.key_len : sizeof(word) - 1;

			memcpy(word, w.key, n);
			word[n] = 0;
			console_printf("VDFS-GUEST ERROR %s cmdline word '%s'\n",
				       found ? "no value for" : "unknown", word);
			ok = false;
		}
	}
	return ok;
}
