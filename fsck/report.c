/* Problem records and the text and JSON reports of fsck.vdfs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

static const char *const pass_names[FSCK_PASS_COUNT] = {
    "superblock",
    "heartbeats and locks",
    "journal",
    "descriptors and block maps",
    "directories",
    "connectivity and link counts",
    "resource bitmaps",
};

const char *fsck_pass_name(int pass)
{
    return pass >= 0 && pass < FSCK_PASS_COUNT ? pass_names[pass] : "?";
}

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

bool fsck_cancelled(struct fsck *f)
{
    if (f->cancel && *f->cancel)
        f->cancelled = true;
    return f->cancelled;
}

bool fsck_problem(struct fsck *f, const char *code, const char *object, uint64_t address, bool fixable,
                  const char *fmt, ...)
{
    if (f->nproblems == f->problems_cap) {
        size_t cap = f->problems_cap ? f->problems_cap * 2 : 64;
        struct fsck_problem *p = realloc(f->problems, cap * sizeof(*p));
        if (!p) {
            f->operational_error = true;
            return false;
        }
        f->problems = p;
        f->problems_cap = cap;
    }
    struct fsck_problem *p = &f->problems[f->nproblems++];
    va_list ap;
    va_start(ap, fmt);
    p->message = vformat(fmt, ap);
    va_end(ap);
    p->pass = f->pass;
    p->code = code;
    p->object = strdup(object ? object : "");
    p->address = address;
    p->fixed = fixable && f->opt.fix;
    if (!f->opt.json) {
        if (f->opt.progress)
            fputs("\r\033[K", stdout);
        printf("  %s%s\n", p->message ? p->message : code,
               p->fixed ? ": fixed" : (fixable ? ": not fixed (read-only check)" : ": cannot be fixed"));
    }
    return p->fixed;
}

void fsck_problem_unfixed(struct fsck *f)
{
    if (f->nproblems)
        f->problems[f->nproblems - 1].fixed = false;
}

void fsck_error(struct fsck *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fsck.vdfs: %s: ", f->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void fsck_info(struct fsck *f, const char *fmt, ...)
{
    if (!f->opt.verbose || f->opt.json)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("  ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

void fsck_pass_begin(struct fsck *f, int pass)
{
    f->pass = pass;
    if (!f->opt.json) {
        printf("Pass %d: %s\n", pass, fsck_pass_name(pass));
        fflush(stdout);
    }
}

void fsck_progress(struct fsck *f, uint64_t done, uint64_t total)
{
    if (!f->opt.progress || f->opt.json || total == 0)
        return;
    /* Redraw only when the percentage changes: cheap inside hot loops. */
    uint64_t pct = done * 100 / total;
    uint64_t prev = done ? (done - 1) * 100 / total : UINT64_MAX;
    if (pct == prev && done != total)
        return;
    printf("\r  %3u%%", (unsigned)pct);
    if (done >= total)
        fputs("\r\033[K", stdout);
    fflush(stdout);
}

int fsck_exit_code(const struct fsck *f)
{
    int code = 0;
    for (size_t i = 0; i < f->nproblems; i++)
        code |= f->problems[i].fixed ? FSCK_EXIT_CORRECTED : FSCK_EXIT_UNCORRECTED;
    if (f->operational_error)
        code |= FSCK_EXIT_OPERATIONAL;
    if (f->cancelled)
        code |= FSCK_EXIT_CANCELLED;
    return code;
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void fsck_report_json(const struct fsck *f, int exit_code)
{
    FILE *out = stdout;
    fputs("{\"device\":", out);
    json_string(out, f->path);
    fprintf(out, ",\"mode\":\"%s\",\"passes\":[", f->opt.fix ? "repair" : "check");
    bool first = true;
    for (int p = 0; p < FSCK_PASS_COUNT; p++) {
        if (!f->pass_done[p])
            continue;
        size_t n = 0;
        for (size_t i = 0; i < f->nproblems; i++)
            n += f->problems[i].pass == p;
        fprintf(out, "%s{\"pass\":%d,\"name\":", first ? "" : ",", p);
        json_string(out, fsck_pass_name(p));
        fprintf(out, ",\"problems\":%zu}", n);
        first = false;
    }
    fputs("],\"problems\":[", out);
    for (size_t i = 0; i < f->nproblems; i++) {
        const struct fsck_problem *p = &f->problems[i];
        fprintf(out, "%s{\"pass\":%d,\"code\":", i ? "," : "", p->pass);
        json_string(out, p->code);
        fputs(",\"object\":", out);
        json_string(out, p->object);
        fprintf(out, ",\"address\":%llu,\"message\":", (unsigned long long)p->address);
        json_string(out, p->message);
        fprintf(out, ",\"fixed\":%s}", p->fixed ? "true" : "false");
    }
    fprintf(out, "],\"files\":%llu,\"directories\":%llu,\"exit\":%d}\n", (unsigned long long)f->files,
            (unsigned long long)f->directories, exit_code);
}

void fsck_report_summary(const struct fsck *f, int exit_code)
{
    size_t fixed = 0;
    for (size_t i = 0; i < f->nproblems; i++)
        fixed += f->problems[i].fixed;
    if (f->have_sb && f->pass_done[FSCK_PASS_BITMAPS]) {
        const struct fsck_region *fb = &f->rs[VDFS_RT_FB];
        uint64_t used = 0;
        for (uint64_t i = 0; i < fb->count; i++)
            used += fsck_bit(fb->bits, i);
        printf("%s: %llu files, %llu directories, %llu symlinks, %llu other; %llu/%llu file blocks used\n", f->path,
               (unsigned long long)f->files, (unsigned long long)f->directories, (unsigned long long)f->symlinks,
               (unsigned long long)f->others, (unsigned long long)used, (unsigned long long)fb->count);
    }
    if (f->cancelled)
        printf("%s: check cancelled\n", f->path);
    if (f->nproblems == 0 && !f->operational_error && !f->cancelled)
        printf("%s: clean\n", f->path);
    else if (f->nproblems)
        printf("%s: %zu problem%s found, %zu fixed%s\n", f->path, f->nproblems, f->nproblems == 1 ? "" : "s", fixed,
               f->opt.fix ? "" : " (run with -y to repair)");
    printf("exit code %d\n", exit_code);
}
