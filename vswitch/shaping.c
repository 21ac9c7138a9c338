/* Two buckets, as a vSphere standard switch describes its shaping: the
 * average bucket holds up to `burst` bytes and refills at the average rate;
 * the peak bucket holds one maximum frame and refills at the peak rate, so a
 * burst never leaves faster than the peak rate.  A frame without tokens in
 * both buckets is dropped (and counted), never queued. */
#include "shaping.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct shaping_policy *shaping_effective(const struct vswitch *sw, const struct portgroup *pg)
{
    if (pg && pg->shaping.state != POLICY_INHERIT)
        return &pg->shaping;
    return &sw->shaping;
}

static double peak_capacity(unsigned mtu) { return (double)(mtu + VDSW_FRAME_OVERHEAD); }

static double average_capacity(const struct shaping_policy *p, unsigned mtu)
{
    double burst = (double)p->burst_bytes;
    return burst < peak_capacity(mtu) ? peak_capacity(mtu) : burst;
}

void shaping_reset(struct token_bucket *bucket, const struct shaping_policy *policy, unsigned mtu, uint64_t now_ns)
{
    bucket->average_tokens = average_capacity(policy, mtu);
    bucket->peak_tokens = peak_capacity(mtu);
    bucket->last_ns = now_ns;
}

bool shaping_admit(struct token_bucket *bucket, const struct shaping_policy *policy, unsigned mtu,
                   size_t len, uint64_t now_ns)
{
    if (policy->state != 1)
        return true;
    if (now_ns > bucket->last_ns) {
        double seconds = (double)(now_ns - bucket->last_ns) / 1e9;
        bucket->last_ns = now_ns;
        bucket->average_tokens += seconds * (double)policy->average_bps / 8.0;
        bucket->peak_tokens += seconds * (double)policy->peak_bps / 8.0;
        double avg_cap = average_capacity(policy, mtu), peak_cap = peak_capacity(mtu);
        if (bucket->average_tokens > avg_cap)
            bucket->average_tokens = avg_cap;
        if (bucket->peak_tokens > peak_cap)
            bucket->peak_tokens = peak_cap;
    }
    if (bucket->average_tokens < (double)len || bucket->peak_tokens < (double)len)
        return false;
    bucket->average_tokens -= (double)len;
    bucket->peak_tokens -= (double)len;
    return true;
}

static bool parse_quantity(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || !(v >= 0) || errno) /* !(v >= 0): NaN too */
        return false;
    double scale = 1;
    if (*end == 'k' || *end == 'K')
        scale = 1e3, end++;
    else if (*end == 'm' || *end == 'M')
        scale = 1e6, end++;
    else if (*end == 'g' || *end == 'G')
        scale = 1e9, end++;
    if (*end != '\0' || !(v * scale <= 1e15))
        return false;
    *out = (uint64_t)(v * scale);
    return true;
}

bool shaping_parse(const char *text, struct shaping_policy *out, char *err, size_t err_len)
{
    if (strcmp(text, "off") == 0) {
        *out = (struct shaping_policy){.state = 0};
        return true;
    }
    if (strcmp(text, "inherit") == 0) {
        *out = (struct shaping_policy){.state = POLICY_INHERIT};
        return true;
    }
    struct shaping_policy p = {.state = 1};
    bool have_avg = false, have_peak = false, have_burst = false;
    char copy[256];
    if (strlen(text) >= sizeof(copy)) {
        snprintf(err, err_len, "shaping spec too long");
        return false;
    }
    strcpy(copy, text);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            snprintf(err, err_len, "shaping item '%s' is not key=value", item);
            return false;
        }
        *eq = '\0';
        uint64_t *slot;
        bool *seen;
        if (strcmp(item, "avg") == 0 || strcmp(item, "average") == 0)
            slot = &p.average_bps, seen = &have_avg;
        else if (strcmp(item, "peak") == 0)
            slot = &p.peak_bps, seen = &have_peak;
        else if (strcmp(item, "burst") == 0)
            slot = &p.burst_bytes, seen = &have_burst;
        else {
            snprintf(err, err_len, "unknown shaping key '%s' (want avg, peak, burst)", item);
            return false;
        }
        if (!parse_quantity(eq + 1, slot) || *slot == 0) {
            snprintf(err, err_len, "bad %s value '%s' (a positive number, optional k/M/G)", item, eq + 1);
            return false;
        }
        *seen = true;
    }
    if (!have_avg || !have_peak || !have_burst) {
        snprintf(err, err_len, "shaping needs avg=BITS/S,peak=BITS/S,burst=BYTES, or off, or inherit");
        return false;
    }
    if (p.peak_bps < p.average_bps) {
        snprintf(err, err_len, "peak (%llu) must be at least avg (%llu)", (unsigned long long)p.peak_bps,
                 (unsigned long long)p.average_bps);
        return false;
    }
    *out = p;
    return true;
}
