/* AML byte encoding (ACPI spec, "ACPI Machine Language Specification"). */
#include "aml.h"

#include <stdlib.h>
#include <string.h>

#define AML_ZERO_OP         0x00
#define AML_ONE_OP          0x01
#define AML_NAME_OP         0x08
#define AML_BYTE_PREFIX     0x0a
#define AML_WORD_PREFIX     0x0b
#define AML_DWORD_PREFIX    0x0c
#define AML_QWORD_PREFIX    0x0e
#define AML_SCOPE_OP        0x10
#define AML_BUFFER_OP       0x11
#define AML_PACKAGE_OP      0x12
#define AML_DUAL_NAME       0x2e
#define AML_MULTI_NAME      0x2f
#define AML_ROOT_CHAR       0x5c
#define AML_EXT_OP          0x5b
#define AML_DEVICE_OP       0x82 /* after AML_EXT_OP */

void aml_init(struct aml *a)
{
    memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
    free(a->buf);
    aml_init(a);
}

void aml_bytes(struct aml *a, const void *data, size_t len)
{
    if (a->failed)
        return;
    if (a->len + len > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->len + len)
            cap *= 2;
        uint8_t *grown = realloc(a->buf, cap);
        if (!grown) {
            a->failed = true;
            return;
        }
        a->buf = grown;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, data, len);
    a->len += len;
}

static void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

void aml_append(struct aml *a, const struct aml *b)
{
    if (b->failed)
        a->failed = true;
    aml_bytes(a, b->buf, b->len);
}

/* PkgLength counts itself: one byte holds up to 63, otherwise the lead
 * byte's top two bits say how many bytes follow and its low nibble holds
 * the least significant four bits. */
static void aml_pkg_length(struct aml *a, size_t body_len)
{
    if (body_len + 1 <= 63) {
        aml_byte(a, (uint8_t)(body_len + 1));
        return;
    }
    for (unsigned extra = 1; extra <= 3; extra++) {
        size_t total = body_len + 1 + extra;
        if (total < (size_t)1 << (4 + 8 * extra)) {
            aml_byte(a, (uint8_t)((extra << 6) | (total & 0xf)));
            for (unsigned i = 0; i < extra; i++)
                aml_byte(a, (uint8_t)(total >> (4 + 8 * i)));
            return;
        }
    }
    a->failed = true;
}

static void aml_name_seg(struct aml *a, const char *seg, size_t len)
{
    char out[4] = { '_', '_', '_', '_' };
    memcpy(out, seg, len > 4 ? 4 : len);
    aml_bytes(a, out, 4);
}

void aml_name_string(struct aml *a, const char *path)
{
    if (*path == '\\') {
        aml_byte(a, AML_ROOT_CHAR);
        path++;
    }
    size_t segs = 1;
    for (const char *p = path; *p; p++)
        segs += *p == '.';
    if (segs == 2)
        aml_byte(a, AML_DUAL_NAME);
    else if (segs > 2) {
        aml_byte(a, AML_MULTI_NAME);
        aml_byte(a, (uint8_t)segs);
    }
    while (*path) {
        size_t len = strcspn(path, ".");
        aml_name_seg(a, path, len);
        path += len;
        if (*path == '.')
            path++;
    }
}

void aml_integer(struct aml *a, uint64_t value)
{
    if (value == 0) {
        aml_byte(a, AML_ZERO_OP);
    } else if (value == 1) {
        aml_byte(a, AML_ONE_OP);
    } else if (value <= 0xff) {
        aml_byte(a, AML_BYTE_PREFIX);
        aml_byte(a, (uint8_t)value);
    } else if (value <= 0xffff) {
        aml_byte(a, AML_WORD_PREFIX);
        aml_bytes(a, (uint8_t[]){ (uint8_t)value, (uint8_t)(value >> 8) }, 2);
    } else if (value <= 0xffffffffu) {
        aml_byte(a, AML_DWORD_PREFIX);
        for (int i = 0; i < 4; i++)
            aml_byte(a, (uint8_t)(value >> (8 * i)));
    } else {
        aml_byte(a, AML_QWORD_PREFIX);
        for (int i = 0; i < 8; i++)
            aml_byte(a, (uint8_t)(value >> (8 * i)));
    }
}

void aml_eisaid(struct aml *a, const char *id)
{
    /* Three letters of five bits each, then four hex digits, stored so the
     * bytes read in order: compressed vendor (big-endian), product. */
    uint32_t vendor = ((uint32_t)(id[0] - 0x40) << 10) | ((uint32_t)(id[1] - 0x40) << 5) |
                      (uint32_t)(id[2] - 0x40);
    uint32_t product = (uint32_t)strtoul(id + 3, NULL, 16);
    uint8_t bytes[4] = { (uint8_t)(vendor >> 8), (uint8_t)vendor, (uint8_t)(product >> 8),
                         (uint8_t)product };
    uint32_t value = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
                     (uint32_t)bytes[3] << 24;
    aml_byte(a, AML_DWORD_PREFIX);
    for (int i = 0; i < 4; i++)
        aml_byte(a, (uint8_t)(value >> (8 * i)));
}

void aml_name(struct aml *a, const char *name, const struct aml *value)
{
    aml_byte(a, AML_NAME_OP);
    aml_name_string(a, name);
    aml_append(a, value);
}

static void aml_named_block(struct aml *a, const uint8_t *op, size_t oplen, const char *name,
                            const struct aml *body)
{
    struct aml inner;
    aml_init(&inner);
    aml_name_string(&inner, name);
    aml_append(&inner, body);
    aml_bytes(a, op, oplen);
    aml_pkg_length(a, inner.len);
    aml_append(a, &inner);
    aml_free(&inner);
}

void aml_scope(struct aml *a, const char *name, const struct aml *body)
{
    static const uint8_t op[] = { AML_SCOPE_OP };
    aml_named_block(a, op, sizeof(op), name, body);
}

void aml_device(struct aml *a, const char *name, const struct aml *body)
{
    static const uint8_t op[] = { AML_EXT_OP, AML_DEVICE_OP };
    aml_named_block(a, op, sizeof(op), name, body);
}

void aml_package(struct aml *a, uint8_t count, const struct aml *elements)
{
    aml_byte(a, AML_PACKAGE_OP);
    aml_pkg_length(a, 1 + elements->len);
    aml_byte(a, count);
    aml_append(a, elements);
}

void aml_buffer(struct aml *a, const uint8_t *bytes, size_t len)
{
    struct aml inner;
    aml_init(&inner);
    aml_integer(&inner, len);
    aml_bytes(&inner, bytes, len);
    aml_byte(a, AML_BUFFER_OP);
    aml_pkg_length(a, inner.len);
    aml_append(a, &inner);
    aml_free(&inner);
}
