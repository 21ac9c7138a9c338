/* The vdfs-switch fuzz harness (fuzz_switch.c): one input drives a fresh
 * in-process switch through frames, hellos, control commands and time, and
 * abort()s when an invariant breaks.  Shared by the libFuzzer target and the
 * plain replay driver (fuzz_replay.c). */
#ifndef VDFS_TESTS_SWITCH_FUZZ_SWITCH_H
#define VDFS_TESTS_SWITCH_FUZZ_SWITCH_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
