#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push(void **array, size_t *count, size_t elem, const void *item)
{
    void *more = realloc(*array, (*count + 1) * elem);
    if (!more)
        return -ENOMEM;
    memcpy((char *)more + *count * elem, item, elem);
    *array = more;
    (*count)++;
    return 0;
}

int manifest_load(const char *path, struct manifest *m)
{
    memset(m, 0, sizeof(*m));
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -errno;
    }
    char line[512];
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char word[16], arg[256], hex[65];
        unsigned long long num = 0;
        struct sync_section *cur = m->count ? &m->sections[m->count - 1] : NULL;
        if (sscanf(line, "sync %llu", &num) == 1) {
            struct sync_section s = {.trace_bytes = num};
            rc = push((void **)&m->sections, &m->count, sizeof(s), &s);
        } else if (!cur) {
            rc = -EINVAL;
        } else if (sscanf(line, "file %255s %llu %64s", arg, &num, hex) == 3 && strlen(hex) == 64) {
            struct expectation e = {.kind = EXPECT_FILE, .path = strdup(arg), .size = num};
            memcpy(e.sha256, hex, sizeof(e.sha256));
            rc = e.path ? push((void **)&cur->expect, &cur->nexpect, sizeof(e), &e) : -ENOMEM;
        } else if (sscanf(line, "%15s %255s", word, arg) == 2 &&
                   (!strcmp(word, "dir") || !strcmp(word, "absent"))) {
            struct expectation e = {.kind = !strcmp(word, "dir") ? EXPECT_DIR : EXPECT_ABSENT, .path = strdup(arg)};
            rc = e.path ? push((void **)&cur->expect, &cur->nexpect, sizeof(e), &e) : -ENOMEM;
        } else if (sscanf(line, "touched %255s", arg) == 1) {
            char *p = strdup(arg);
            rc = p ? push((void **)&cur->touched, &cur->ntouched, sizeof(p), &p) : -ENOMEM;
        } else {
            rc = -EINVAL;
        }
    }
    fclose(f);
    if (rc == -EINVAL)
        fprintf(stderr, "%s:%u: malformed manifest line\n", path, lineno);
    if (rc == 0 && m->count == 0) {
        fprintf(stderr, "%s: no sync points\n", path);
        rc = -EINVAL;
    }
    if (rc)
        manifest_free(m);
    return rc;
}

void manifest_free(struct manifest *m)
{
    for (size_t i = 0; i < m->count; i++) {
        struct sync_section *s = &m->sections[i];
        for (size_t j = 0; j < s->ntouched; j++)
            free(s->touched[j]);
        for (size_t j = 0; j < s->nexpect; j++)
            free(s->expect[j].path);
        free(s->touched);
        free(s->expect);
    }
    free(m->sections);
    memset(m, 0, sizeof(*m));
}

const struct sync_section *manifest_durable(const struct manifest *m, size_t records)
{
    const struct sync_section *best = NULL;
    for (size_t i = 0; i < m->count; i++)
        if (m->sections[i].records <= records)
            best = &m->sections[i];
    return best;
}

bool manifest_in_flux(const struct manifest *m, const struct sync_section *s, const char *path)
{
    size_t next = (size_t)(s - m->sections) + 1;
    if (next >= m->count)
        return false;
    const struct sync_section *n = &m->sections[next];
    for (size_t i = 0; i < n->ntouched; i++)
        if (strcmp(n->touched[i], path) == 0)
            return true;
    return false;
}
