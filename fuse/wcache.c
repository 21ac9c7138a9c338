/* wcache.c: vdfs-fuse's write-back cache of overwrites.
 *
 * The image is opened with O_DIRECT, so without this every write(2) that
 * reaches the daemon is a device write before its reply.  A local file
 * system (and passthrough_ll over one) answers from the page cache and
 * writes back later; this gives vdfs-fuse the same behaviour for the
 * writes where it is safe:
 *  - whole, aligned pages,
 *  - that overwrite written blocks inside the file's size (no metadata
 *    changes but the times, which are applied at once),
 *  - of a file this host holds alone (vdfs_overwrite_cached): no other
 *    host can open it, so none can read stale data, and the data is
 *    written back before the file's lock is let go (close) and at fsync.
 * Reads lay the held pages over what the device returns.  Data is held
 * at most as long and as much as the kernel's dirty-page settings allow,
 * and never across an fsync, a close, a truncate, a fallocate or an
 * unmount.  Like the page cache, a write-back error is reported by the
 * next fsync or close of the file.
 *
 * Locking, per file: `lock` guards the page table and counts; `gate` is
 * held shared by cached writes and by reads (from the device read until
 * the overlay), and exclusively to retire written-back pages (so no read
 * can have fetched the old data from the device and then miss the page)
 * and by operations that change the file's blocks; `flush_lock` lets one
 * write-back run at a time, so pages reach the device in order.  The
 * order is flush_lock, gate, lock.
 */
#include "wcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define WC_PAGE 4096u
#define WC_BUCKETS 1024u
/* A write-back run: adjacent pages copied together, one device write. */
#define WC_RUN_MAX (1u << 20)
/* Page buffers come from chunks mapped populated: one fault-in per chunk
 * instead of one page fault per held page. */
#define WC_CHUNK (2u << 20)

/* A held page.  Slots with index 0 are empty (indices are stored + 1). */
struct wc_page {
    uint64_t key;     /* page index + 1 */
    uint8_t *data;    /* newest content not yet written back, or NULL */
    uint8_t *writing; /* content being written back, or NULL */
};

struct wc_inode {
    uint32_t ino;
    unsigned refs;         /* under wcache.lock */
    struct wc_inode *next; /* bucket chain, under wcache.lock */
    pthread_mutex_t lock;
    pthread_rwlock_t gate;
    pthread_mutex_t flush_lock;
    struct wc_page *slots; /* open addressing, linear probing */
    size_t nslots;         /* 0 or a power of two */
    size_t entries;        /* slots in use */
    atomic_size_t dirty;           /* pages with data */
    atomic_uint_fast64_t dirty_ns; /* when dirty last rose from 0 */
    int error;                     /* first write-back failure not reported */
    /* File blocks known to be written blocks of a file held alone, and
     * when the library last applied a write's times: a write inside
     * known blocks within the time granule needs no library call. */
    uint64_t *known;
    size_t known_words;
    uint64_t times_ns;
};

/* Free page buffers, linked through their first bytes; the chunks go
 * back to the kernel whenever every page is free again. */
struct page_pool {
    pthread_mutex_t lock;
    void *free_list;
    size_t pages, free;
    void **chunks;
    size_t nchunks, cap;
};

struct wcache {
    struct vdfs *fs;
    uint32_t block_size;
    struct page_pool pool;
    struct wcache_limits limits;
    pthread_mutex_t lock; /* table, refs, stop */
    pthread_cond_t wake;
    struct wc_inode *table[WC_BUCKETS];
    atomic_uint_fast64_t held; /* page buffers allocated */
    bool enabled; /* false: every write goes through */
    bool stop;
    pthread_t flusher;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t read_vm_setting(const char *name)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/vm/%s", name);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

static uint64_t mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long kb = 0;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024u;
}

void wcache_default_limits(uint64_t limit_mb, struct wcache_limits *out)
{
    uint64_t avail = mem_available_bytes();
    uint64_t bg = read_vm_setting("dirty_background_bytes");
    uint64_t hard = read_vm_setting("dirty_bytes");
    if (!bg)
        bg = avail / 100 * (read_vm_setting("dirty_background_ratio") ?: 10);
    if (!hard)
        hard = avail / 100 * (read_vm_setting("dirty_ratio") ?: 20);
    if (limit_mb) {
        bg = limit_mb << 20;
        hard = bg * 2;
    }
    if (hard < bg)
        hard = bg;
    uint64_t expire = read_vm_setting("dirty_expire_centisecs");
    uint64_t interval = read_vm_setting("dirty_writeback_centisecs");
    *out = (struct wcache_limits){
        .limit_bytes = bg,
        .hard_bytes = hard,
        .expire_ms = (expire ? expire : 3000) * 10,
        .interval_ms = (interval ? interval : 500) * 10,
    };
}

/* One more chunk of free pages (pool lock held); false without memory. */
static bool pool_grow(struct page_pool *pp)
{
    if (pp->nchunks == pp->cap) {
        size_t cap = pp->cap ? pp->cap * 2 : 64;
        void **chunks = realloc(pp->chunks, cap * sizeof(*chunks));
        if (!chunks)
            return false;
        pp->chunks = chunks;
        pp->cap = cap;
    }
    uint8_t *c = mmap(NULL, WC_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (c == MAP_FAILED)
        return false;
    pp->chunks[pp->nchunks++] = c;
    for (size_t off = 0; off < WC_CHUNK; off += WC_PAGE) {
        *(void **)(c + off) = pp->free_list;
        pp->free_list = c + off;
    }
    pp->pages += WC_CHUNK / WC_PAGE;
    pp->free += WC_CHUNK / WC_PAGE;
    return true;
}

static uint8_t *page_alloc(struct page_pool *pp)
{
    pthread_mutex_lock(&pp->lock);
    uint8_t *page = pp->free_list || pool_grow(pp) ? pp->free_list : NULL;
    if (page) {
        pp->free_list = *(void **)page;
        pp->free--;
    }
    pthread_mutex_unlock(&pp->lock);
    return page;
}

static void page_free(struct page_pool *pp, uint8_t *page)
{
    if (!page)
        return;
    pthread_mutex_lock(&pp->lock);
    *(void **)page = pp->free_list;
    pp->free_list = page;
    if (++pp->free == pp->pages) {
        for (size_t i = 0; i < pp->nchunks; i++)
            munmap(pp->chunks[i], WC_CHUNK);
        pp->nchunks = pp->pages = pp->free = 0;
        pp->free_list = NULL;
    }
    pthread_mutex_unlock(&pp->lock);
}

static uint64_t slot_of(const struct wc_inode *wi, uint64_t key)
{
    /* Fibonacci hashing spreads neighbouring pages over the table. */
    return (key * 0x9E3779B97F4A7C15ull) & (wi->nslots - 1);
}

static struct wc_page *page_find(struct wc_inode *wi, uint64_t index)
{
    if (!wi->entries)
        return NULL;
    uint64_t key = index + 1;
    for (uint64_t i = slot_of(wi, key);; i = (i + 1) & (wi->nslots - 1)) {
        if (wi->slots[i].key == key)
            return &wi->slots[i];
        if (wi->slots[i].key == 0)
            return NULL;
    }
}

static struct wc_page *slot_claim(struct wc_inode *wi, uint64_t key)
{
    uint64_t i = slot_of(wi, key);
    while (wi->slots[i].key)
        i = (i + 1) & (wi->nslots - 1);
    wi->slots[i] = (struct wc_page){.key = key};
    return &wi->slots[i];
}

/* Room for `more` entries with the table at most half full; false
 * without memory. */
static bool table_reserve(struct wc_inode *wi, size_t more)
{
    if ((wi->entries + more) * 2 <= wi->nslots)
        return true;
    size_t n = wi->nslots ? wi->nslots : 256;
    while (n < (wi->entries + more) * 2)
        n *= 2;
    struct wc_page *old = wi->slots, *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return false;
    size_t old_n = wi->nslots;
    wi->slots = slots;
    wi->nslots = n;
    for (size_t i = 0; i < old_n; i++)
        if (old[i].key)
            *slot_claim(wi, old[i].key) = old[i];
    free(old);
    return true;
}

/* The page's entry, made when missing (room reserved by the caller). */
static struct wc_page *page_get(struct wc_inode *wi, uint64_t index)
{
    struct wc_page *p = page_find(wi, index);
    if (!p) {
        p = slot_claim(wi, index + 1);
        wi->entries++;
    }
    return p;
}

/* Removes an entry, moving later entries of its probe run back so that
 * no lookup stops early at the hole. */
static void page_remove(struct wc_inode *wi, struct wc_page *p)
{
    size_t mask = wi->nslots - 1, hole = (size_t)(p - wi->slots);
    wi->slots[hole].key = 0;
    wi->entries--;
    for (size_t i = (hole + 1) & mask; wi->slots[i].key; i = (i + 1) & mask) {
        size_t home = slot_of(wi, wi->slots[i].key);
        /* The entry may move to the hole unless its home lies in (hole, i]. */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (stays)
            continue;
        wi->slots[hole] = wi->slots[i];
        wi->slots[i].key = 0;
        hole = i;
    }
    if (wi->entries == 0) {
        free(wi->slots);
        wi->slots = NULL;
        wi->nslots = 0;
    }
}

/* ---- the table of files with held pages ---- */

static struct wc_inode *inode_get(struct wcache *wc, uint32_t ino, bool create)
{
    pthread_mutex_lock(&wc->lock);
    struct wc_inode **head = &wc->table[ino % WC_BUCKETS], *wi = *head;
    while (wi && wi->ino != ino)
        wi = wi->next;
    if (!wi && create && (wi = calloc(1, sizeof(*wi)))) {
        wi->ino = ino;
        pthread_mutex_init(&wi->lock, NULL);
        /* Writer-preferring: a truncate is not starved by a stream of
         * reads and writes (none of which takes the gate twice). */
        pthread_rwlockattr_t ra;
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&wi->gate, &ra);
        pthread_rwlockattr_destroy(&ra);
        pthread_mutex_init(&wi->flush_lock, NULL);
        wi->next = *head;
        *head = wi;
    }
    if (wi)
        wi->refs++;
    pthread_mutex_unlock(&wc->lock);
    return wi;
}

/* The last user of a file that holds nothing, and has no write-back
 * error left to report at its next fsync or close, frees its entry. */
static void inode_put(struct wcache *wc, struct wc_inode *wi)
{
    pthread_mutex_lock(&wc->lock);
    if (--wi->refs == 0 && wi->entries == 0 && wi->error == 0) {
        struct wc_inode **pp = &wc->table[wi->ino % WC_BUCKETS];
        while (*pp != wi)
            pp = &(*pp)->next;
        *pp = wi->next;
        pthread_mutex_destroy(&wi->lock);
        pthread_rwlock_destroy(&wi->gate);
        pthread_mutex_destroy(&wi->flush_lock);
        free(wi->known);
        free(wi);
    }
    pthread_mutex_unlock(&wc->lock);
}

/* ---- which writes may be held ---- */

static bool block_known(const struct wc_inode *wi, uint64_t block)
{
    return block / 64 < wi->known_words && (wi->known[block / 64] >> (block % 64) & 1);
}

static void block_mark_known(struct wc_inode *wi, uint64_t block)
{
    if (block / 64 >= wi->known_words) {
        size_t n = (size_t)(block / 64 + 1) * 2;
        uint64_t *known = realloc(wi->known, n * sizeof(*known));
        if (!known)
            return; /* only a later write asks the library again */
        memset(known + wi->known_words, 0, (n - wi->known_words) * sizeof(*known));
        wi->known = known;
        wi->known_words = n;
    }
    wi->known[block / 64] |= 1ull << (block % 64);
}

static void forget_known(struct wc_inode *wi)
{
    pthread_mutex_lock(&wi->lock);
    free(wi->known);
    wi->known = NULL;
    wi->known_words = 0;
    wi->times_ns = 0;
    pthread_mutex_unlock(&wi->lock);
}

static bool blocks_known(struct wc_inode *wi, uint64_t first, uint64_t last)
{
    pthread_mutex_lock(&wi->lock);
    bool known = true;
    for (uint64_t b = first; known && b <= last; b++)
        known = block_known(wi, b);
    pthread_mutex_unlock(&wi->lock);
    return known;
}

/* 1 when [off, off + len) may be held, its times applied; 0 when it must
 * go through; < 0 an error.  Whole file blocks are asked about once, so a
 * stream of writes calls the library once per block and time granule. */
static int may_hold(struct wcache *wc, struct wc_inode *wi, uint64_t off, size_t len)
{
    uint64_t bs = wc->block_size, first = off / bs, last = (off + len - 1) / bs;
    uint64_t now = now_ns();
    bool known = blocks_known(wi, first, last);
    pthread_mutex_lock(&wi->lock);
    bool due = now - wi->times_ns >= VDFS_TIME_GRANULE_NS;
    pthread_mutex_unlock(&wi->lock);
    if (known && !due)
        return 1;
    bool asked = !known;
    for (uint64_t b = first; asked && b <= last; b++) {
        if (blocks_known(wi, b, b))
            continue;
        int rc = vdfs_overwrite_cached(wc->fs, wi->ino, b * bs, bs);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&wi->lock);
        if (rc == 1)
            block_mark_known(wi, b);
        pthread_mutex_unlock(&wi->lock);
    }
    /* The whole-block questions applied the times; a block that is not
     * whole (the file's last) is asked about exactly. */
    int rc = asked && blocks_known(wi, first, last) ? 1 : vdfs_overwrite_cached(wc->fs, wi->ino, off, len);
    if (rc == 1) {
        pthread_mutex_lock(&wi->lock);
        wi->times_ns = now;
        pthread_mutex_unlock(&wi->lock);
    }
    return rc;
}

/* ---- write-back ---- */

struct held_page {
    uint64_t index;
    uint8_t *buf;
};

static int held_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct held_page *)a)->index, y = ((const struct held_page *)b)->index;
    return x < y ? -1 : x > y;
}

/* Writes pages[0..n) (ascending) back, adjacent pages as one run; the
 * first error. */
static int write_pages(struct wcache *wc, uint32_t ino, const struct held_page *pages, size_t n)
{
    struct vdfs_write_back runs[VDFS_WRITE_BACK_MAX];
    uint8_t *copies[VDFS_WRITE_BACK_MAX];
    int first_error = 0;
    size_t i = 0;
    while (i < n) {
        unsigned nruns = 0;
        while (i < n && nruns < VDFS_WRITE_BACK_MAX) {
            size_t len = 1;
            while (i + len < n && len < WC_RUN_MAX / WC_PAGE && pages[i + len].index == pages[i].index + len)
                len++;
            uint8_t *copy = NULL;
            const uint8_t *src = pages[i].buf;
            if (len > 1 && (copy = aligned_alloc(WC_PAGE, len * WC_PAGE))) {
                for (size_t k = 0; k < len; k++)
                    memcpy(copy + k * WC_PAGE, pages[i + k].buf, WC_PAGE);
                src = copy;
            } else {
                len = 1;
            }
            copies[nruns] = copy;
            runs[nruns++] = (struct vdfs_write_back){.buf = src, .len = len * WC_PAGE,
                                                      .off = pages[i].index * WC_PAGE};
            i += len;
        }
        int rc = vdfs_pwrite_back(wc->fs, ino, runs, nruns);
        if (rc && !first_error)
            first_error = rc;
        for (unsigned k = 0; k < nruns; k++)
            free(copies[k]);
    }
    return first_error;
}

/* Pages collected at a time when there is no memory for a list of all. */
#define FLUSH_FALLBACK_PAGES 64u

/* Writes back every page held for wi when the call starts (its
 * flush_lock held, and its gate exclusively when gate_held); a write
 * failure is kept in wi->error.  Pages written while it runs may stay
 * held.  Without memory for a list of all of them, it goes in rounds of
 * a few, so that a write-back never fails for want of memory. */
static void flush_inode_locked(struct wcache *wc, struct wc_inode *wi, bool gate_held)
{
    size_t dirty = atomic_load(&wi->dirty);
    if (dirty == 0)
        return;
    struct held_page fallback[FLUSH_FALLBACK_PAGES];
    struct held_page *pages = malloc(dirty * sizeof(*pages));
    size_t cap = pages ? dirty : FLUSH_FALLBACK_PAGES;
    if (!pages)
        pages = fallback;
    int rc = 0;
    for (size_t total = 0, n = cap; n == cap && total < dirty; total += n) {
        size_t want = dirty - total < cap ? dirty - total : cap;
        n = 0;
        pthread_mutex_lock(&wi->lock);
        for (size_t i = 0; i < wi->nslots && n < want; i++) {
            struct wc_page *p = &wi->slots[i];
            if (p->key && p->data) {
                p->writing = p->data;
                p->data = NULL;
                pages[n++] = (struct held_page){.index = p->key - 1, .buf = p->writing};
            }
        }
        atomic_fetch_sub(&wi->dirty, n);
        pthread_mutex_unlock(&wi->lock);
        if (n == 0)
            break;
        qsort(pages, n, sizeof(*pages), held_cmp);
        int wrc = write_pages(wc, wi->ino, pages, n);
        if (wrc == -ESTALE) /* cannot happen while every block change excludes */
            wrc = -EIO;
        if (wrc && !rc)
            rc = wrc;
        if (!gate_held)
            pthread_rwlock_wrlock(&wi->gate);
        pthread_mutex_lock(&wi->lock);
        for (size_t i = 0; i < n; i++) {
            struct wc_page *p = page_find(wi, pages[i].index);
            page_free(&wc->pool, p->writing);
            p->writing = NULL;
            if (!p->data)
                page_remove(wi, p);
        }
        pthread_mutex_unlock(&wi->lock);
        if (!gate_held)
            pthread_rwlock_unlock(&wi->gate);
        atomic_fetch_sub(&wc->held, n);
    }
    if (rc) {
        pthread_mutex_lock(&wi->lock);
        if (!wi->error)
            wi->error = rc;
        pthread_mutex_unlock(&wi->lock);
    }
    if (pages != fallback)
        free(pages);
}

static void flush_inode(struct wcache *wc, struct wc_inode *wi)
{
    pthread_mutex_lock(&wi->flush_lock);
    flush_inode_locked(wc, wi, false);
    pthread_mutex_unlock(&wi->flush_lock);
}

static int take_error(struct wc_inode *wi)
{
    pthread_mutex_lock(&wi->lock);
    int rc = wi->error;
    wi->error = 0;
    pthread_mutex_unlock(&wi->lock);
    return rc;
}

/* The file the flusher should write back now: over the limit, the one
 * holding most; otherwise one whose data has been held past expiry. */
static struct wc_inode *pick_victim(struct wcache *wc, bool over, uint64_t now)
{
    struct wc_inode *best = NULL;
    size_t best_dirty = 0;
    uint64_t expire_ns = wc->limits.expire_ms * 1000000u;
    for (unsigned b = 0; b < WC_BUCKETS; b++) {
        for (struct wc_inode *wi = wc->table[b]; wi; wi = wi->next) {
            size_t d = atomic_load(&wi->dirty);
            if (d == 0)
                continue;
            if (over ? d > best_dirty : now - atomic_load(&wi->dirty_ns) >= expire_ns) {
                best = wi;
                best_dirty = d;
                if (!over)
                    break;
            }
        }
        if (best && !over)
            break;
    }
    if (best)
        best->refs++;
    return best;
}

static void *flusher_main(void *arg)
{
    struct wcache *wc = arg;
    uint64_t limit_pages = wc->limits.limit_bytes / WC_PAGE;
    pthread_mutex_lock(&wc->lock);
    while (!wc->stop) {
        bool over = atomic_load(&wc->held) > limit_pages;
        struct wc_inode *wi = pick_victim(wc, over, now_ns());
        if (!wi) {
            struct timespec until; /* wc->wake runs on CLOCK_MONOTONIC */
            clock_gettime(CLOCK_MONOTONIC, &until);
            uint64_t ns = (uint64_t)until.tv_nsec + (wc->limits.interval_ms % 1000) * 1000000u;
            until.tv_sec += (time_t)(wc->limits.interval_ms / 1000 + ns / 1000000000u);
            until.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&wc->wake, &wc->lock, &until);
            continue;
        }
        pthread_mutex_unlock(&wc->lock);
        flush_inode(wc, wi);
        inode_put(wc, wi);
        pthread_mutex_lock(&wc->lock);
    }
    pthread_mutex_unlock(&wc->lock);
    return NULL;
}

/* ---- the interface ---- */

int wcache_create(struct vdfs *fs, const struct wcache_limits *limits, struct wcache **out)
{
    *out = NULL;
    struct wcache *wc = calloc(1, sizeof(*wc));
    if (!wc)
        return -ENOMEM;
    wc->fs = fs;
    wc->block_size = vdfs_block_size(fs);
    wc->limits = *limits;
    /* Held data is looked for at least as often as it may expire. */
    if (wc->limits.interval_ms > wc->limits.expire_ms)
        wc->limits.interval_ms = wc->limits.expire_ms;
    if (wc->limits.interval_ms == 0)
        wc->limits.interval_ms = 1;
    wc->enabled = limits->limit_bytes >= WC_PAGE && wc->block_size >= WC_PAGE;
    pthread_mutex_init(&wc->lock, NULL);
    pthread_mutex_init(&wc->pool.lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&wc->wake, &monotonic);
    pthread_condattr_destroy(&monotonic);
    int rc = wc->enabled ? pthread_create(&wc->flusher, NULL, flusher_main, wc) : 0;
    if (rc) {
        pthread_cond_destroy(&wc->wake);
        pthread_mutex_destroy(&wc->pool.lock);
        pthread_mutex_destroy(&wc->lock);
        free(wc);
        return -rc;
    }
    *out = wc;
    return 0;
}

/* Forgets everything held for wi (nothing else uses it any more). */
static int drop_all(struct wcache *wc, struct wc_inode *wi)
{
    for (size_t i = 0; i < wi->nslots; i++) {
        if (!wi->slots[i].key)
            continue;
        page_free(&wc->pool, wi->slots[i].data);
        page_free(&wc->pool, wi->slots[i].writing);
    }
    atomic_fetch_sub(&wc->held, atomic_load(&wi->dirty));
    free(wi->slots);
    wi->slots = NULL;
    wi->nslots = wi->entries = 0;
    atomic_store(&wi->dirty, 0);
    return -EIO;
}

int wcache_destroy(struct wcache *wc)
{
    if (!wc)
        return 0;
    pthread_mutex_lock(&wc->lock);
    wc->stop = true;
    pthread_cond_signal(&wc->wake);
    pthread_mutex_unlock(&wc->lock);
    if (wc->enabled)
        pthread_join(wc->flusher, NULL);
    int first_error = 0;
    for (unsigned b = 0; b < WC_BUCKETS; b++) {
        while (wc->table[b]) {
            struct wc_inode *wi = inode_get(wc, wc->table[b]->ino, false);
            flush_inode(wc, wi);
            int rc = take_error(wi);
            if (wi->entries) /* a write-back takes every page; never expected */
                rc = drop_all(wc, wi);
            if (rc && !first_error)
                first_error = rc;
            inode_put(wc, wi);
        }
    }
    for (size_t i = 0; i < wc->pool.nchunks; i++)
        munmap(wc->pool.chunks[i], WC_CHUNK);
    free(wc->pool.chunks);
    pthread_cond_destroy(&wc->wake);
    pthread_mutex_destroy(&wc->pool.lock);
    pthread_mutex_destroy(&wc->lock);
    free(wc);
    return first_error;
}

/* Writes the file's held pages back; with `report`, returns and forgets
 * the first write-back error, otherwise leaves it for fsync or close. */
static int write_back_file(struct wcache *wc, uint32_t ino, bool report)
{
    struct wc_inode *wi = wc->enabled ? inode_get(wc, ino, false) : NULL;
    if (!wi)
        return 0;
    flush_inode(wc, wi);
    /* The file's lock may go with its last close: ask again next time. */
    forget_known(wi);
    int rc = report ? take_error(wi) : 0;
    inode_put(wc, wi);
    return rc;
}

int wcache_flush(struct wcache *wc, uint32_t ino)
{
    return write_back_file(wc, ino, true);
}

void wcache_write_back(struct wcache *wc, uint32_t ino)
{
    write_back_file(wc, ino, false);
}

int wcache_exclude(struct wcache *wc, uint32_t ino, struct wc_inode **held)
{
    *held = wc->enabled ? inode_get(wc, ino, true) : NULL;
    if (!*held)
        return wc->enabled ? -ENOMEM : 0;
    /* flush_lock before gate, as every write-back takes them. */
    pthread_mutex_lock(&(*held)->flush_lock);
    pthread_rwlock_wrlock(&(*held)->gate);
    flush_inode_locked(wc, *held, true);
    pthread_mutex_unlock(&(*held)->flush_lock);
    forget_known(*held);
    return 0;
}

void wcache_unexclude(struct wcache *wc, struct wc_inode *held)
{
    if (!held)
        return;
    pthread_rwlock_unlock(&held->gate);
    inode_put(wc, held);
}

int wcache_write(struct wcache *wc, uint32_t ino, const void *buf, size_t len, uint64_t off)
{
    if (!wc->enabled)
        return 0;
    if (len == 0 || len % WC_PAGE || off % WC_PAGE || len > WC_RUN_MAX || off + len < off) {
        wcache_write_back(wc, ino);
        return 0;
    }
    struct wc_inode *wi = inode_get(wc, ino, true);
    if (!wi)
        return 0; /* no entry, so nothing held: the write goes through */
    pthread_rwlock_rdlock(&wi->gate);
    int rc = may_hold(wc, wi, off, len);
    if (rc <= 0) {
        pthread_rwlock_unlock(&wi->gate);
        if (rc == 0)
            wcache_write_back(wc, ino);
        inode_put(wc, wi);
        return rc;
    }
    size_t npages = len / WC_PAGE;
    uint8_t *fresh[WC_RUN_MAX / WC_PAGE];
    size_t nfresh = 0, used = 0;
    for (; nfresh < npages; nfresh++)
        if (!(fresh[nfresh] = page_alloc(&wc->pool)))
            break;
    pthread_mutex_lock(&wi->lock);
    /* Room for every page is there before anything changes, so a held
     * write is all or nothing. */
    rc = nfresh == npages ? 1 : -ENOMEM;
    if (rc == 1 && !table_reserve(wi, npages))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 1 && i < npages; i++) {
        struct wc_page *p = page_get(wi, off / WC_PAGE + i);
        if (!p->data) {
            p->data = fresh[used++];
            if (atomic_fetch_add(&wi->dirty, 1) == 0)
                atomic_store(&wi->dirty_ns, now_ns());
        }
        memcpy(p->data, (const uint8_t *)buf + i * WC_PAGE, WC_PAGE);
    }
    /* Counted before a write-back can see the pages and take them off. */
    uint64_t held = atomic_fetch_add(&wc->held, used) + used;
    pthread_mutex_unlock(&wi->lock);
    pthread_rwlock_unlock(&wi->gate);
    for (size_t i = used; i < nfresh; i++)
        page_free(&wc->pool, fresh[i]);
    if (rc < 0) {
        /* No memory to hold it: the write goes through, after what is
         * held of the file, which it may overlap. */
        flush_inode(wc, wi);
        rc = 0;
    } else if (held > wc->limits.hard_bytes / WC_PAGE) {
        flush_inode(wc, wi); /* the writer pays, as balance_dirty_pages makes it */
    } else if (held > wc->limits.limit_bytes / WC_PAGE && held - used <= wc->limits.limit_bytes / WC_PAGE) {
        pthread_cond_signal(&wc->wake);
    }
    inode_put(wc, wi);
    return rc;
}

ssize_t wcache_read(struct wcache *wc, uint32_t ino, void *buf, size_t len, uint64_t off)
{
    struct wc_inode *wi = wc->enabled ? inode_get(wc, ino, false) : NULL;
    if (!wi)
        return vdfs_pread(wc->fs, ino, buf, len, off);
    pthread_rwlock_rdlock(&wi->gate);
    ssize_t n = vdfs_pread(wc->fs, ino, buf, len, off);
    if (n > 0) {
        pthread_mutex_lock(&wi->lock);
        uint64_t end = off + (uint64_t)n;
        for (uint64_t index = off / WC_PAGE; wi->entries && index * WC_PAGE < end; index++) {
            struct wc_page *p = page_find(wi, index);
            const uint8_t *src = p ? (p->data ? p->data : p->writing) : NULL;
            if (!src)
                continue;
            uint64_t from = index * WC_PAGE > off ? index * WC_PAGE : off;
            uint64_t to = (index + 1) * WC_PAGE < end ? (index + 1) * WC_PAGE : end;
            memcpy((uint8_t *)buf + (from - off), src + (from - index * WC_PAGE), to - from);
        }
        pthread_mutex_unlock(&wi->lock);
    }
    pthread_rwlock_unlock(&wi->gate);
    inode_put(wc, wi);
    return n;
}
