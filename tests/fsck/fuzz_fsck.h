/* fuzz_fsck.c's target, beside LLVMFuzzerTestOneInput. */
#ifndef VDFS_TESTS_FUZZ_FSCK_H
#define VDFS_TESTS_FUZZ_FSCK_H

/* Prints how often fsck -y exited with each code so far: a run that
 * never repairs anything (only 8, or only 0) tests little. */
void fuzz_fsck_print_stats(void);

#endif
