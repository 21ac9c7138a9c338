/* A minimal ACPI Machine Language encoder: just what the DSDT of a PCI
 * host bridge and an _S5 package need. */
#ifndef VDFS_VMM_AML_H
#define VDFS_VMM_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed; the content is incomplete */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
void aml_bytes(struct aml *a, const void *data, size_t len);
void aml_append(struct aml *a, const struct aml *b);

/* "\\_SB_.PCI0", "_HID", "PCI0": segments shorter than 4 are padded '_'. */
void aml_name_string(struct aml *a, const char *path);
/* Smallest encoding: ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix. */
void aml_integer(struct aml *a, uint64_t value);
/* EISA ID such as "PNP0A03", as the DWord the ASL EisaId() macro yields. */
void aml_eisaid(struct aml *a, const char *id);
/* Name(name, value) */
void aml_name(struct aml *a, const char *name, const struct aml *value);
/* Scope(name) { body } and Device(name) { body } */
void aml_scope(struct aml *a, const char *name, const struct aml *body);
void aml_device(struct aml *a, const char *name, const struct aml *body);
/* Package(count) { elements } */
void aml_package(struct aml *a, uint8_t count, const struct aml *elements);
/* Buffer() { bytes } */
void aml_buffer(struct aml *a, const uint8_t *bytes, size_t len);

#endif
