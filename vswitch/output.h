/* A growable text buffer for control responses, with JSON string escaping. */
#ifndef VDFS_VSWITCH_OUTPUT_H
#define VDFS_VSWITCH_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

struct output {
    char *data;
    size_t len, cap;
    bool failed; /* out of memory: the response is replaced by an error */
};

__attribute__((format(printf, 2, 3))) void out_printf(struct output *o, const char *fmt, ...);
/* Appends s as a quoted JSON string. */
void out_json_string(struct output *o, const char *s);
void out_free(struct output *o);

#endif
