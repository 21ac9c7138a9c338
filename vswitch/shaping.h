/* Egress traffic shaping: a token bucket per port. */
#ifndef VDFS_VSWITCH_SHAPING_H
#define VDFS_VSWITCH_SHAPING_H

#include "vswitch.h"

/* The shaping in force for a port group (its own, or the switch's). */
const struct shaping_policy *shaping_effective(const struct vswitch *sw, const struct portgroup *pg);
/* Fills the buckets so a newly attached port may send its burst at once. */
void shaping_reset(struct token_bucket *bucket, const struct shaping_policy *policy, unsigned mtu, uint64_t now_ns);
/* Takes len bytes of tokens; false if the frame must be dropped. */
bool shaping_admit(struct token_bucket *bucket, const struct shaping_policy *policy, unsigned mtu,
                   size_t len, uint64_t now_ns);
/* Parses "avg=RATE,peak=RATE,burst=SIZE" (k/M/G suffixes, powers of 1000) or "off". */
bool shaping_parse(const char *text, struct shaping_policy *out, char *err, size_t err_len);

#endif
