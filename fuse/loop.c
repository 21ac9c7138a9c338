/* loop.c: the multi-threaded session loop.
 *
 * libfuse's own loop keeps every idle worker blocked in read(2) on
 * /dev/fuse, and the kernel wakes the one that has waited longest: each
 * request goes to a different, cold thread, usually on another CPU than
 * the process that asked, and a wake-up across CPUs is costly (on a
 * virtual machine an inter-processor interrupt is a VM exit).  A serial
 * stream of metadata requests (create, stat, unlink) ran at about half
 * the rate of a single-threaded daemon that way.
 *
 * Here one worker at a time reads.  It serves a quick request itself and
 * reads the next one: a serial stream stays on one warm thread.  Before a
 * request that may wait for the device (data I/O, fsync, a truncate or
 * close that waits for I/O) it hands reading to the idle worker that went
 * idle last, or starts a new one up to max_threads, so requests that wait
 * still run in parallel (queue depth 32 of direct I/O).
 */
#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vdfs_fuse.h"

struct worker {
    struct session_loop *loop;
    pthread_t thread;
    pthread_cond_t wake;
    bool reader; /* handed the reading role while idle */
    struct worker *next_idle;
    struct worker *next_all;
};

struct session_loop {
    struct fuse_session *se;
    unsigned max_threads;
    pthread_mutex_t lock;
    bool reading;            /* some worker holds the reading role */
    pthread_t reader;        /* that worker, while reading */
    bool exiting;
    sem_t ended;             /* posted when the loop ends */
    int error;               /* first receive error, negative */
    unsigned nthreads;
    struct worker *idle;     /* most recently idle first */
    struct worker *all;
};

/* Requests that wait for data I/O or a device flush; they run beside each
 * other.  The rest (lookups, create, unlink, rename, close, attributes)
 * work on cached metadata under the volume lock, which serialises them
 * anyway; their device I/O is a cache miss or a journal commit. */
static bool may_wait(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_READ:
    case FUSE_WRITE:
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_SETATTR:
    case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_DESTROY:
        return true;
    default:
        return false;
    }
}

static void *worker_main(void *arg);

/* With loop->lock held: gives the reading role to the worker that went
 * idle last, or to a new one.  False when there is none to give it to (it
 * is then taken by the next worker that finishes). */
static bool hand_over_reading(struct session_loop *loop)
{
    if (loop->exiting)
        return false;
    if (loop->idle) {
        struct worker *w = loop->idle;
        loop->idle = w->next_idle;
        w->reader = true;
        pthread_cond_signal(&w->wake);
        return true;
    }
    if (loop->nthreads >= loop->max_threads)
        return false;
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return false;
    w->loop = loop;
    w->reader = true;
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_cond_destroy(&w->wake);
        free(w);
        return false;
    }
    w->next_all = loop->all;
    loop->all = w;
    loop->nthreads++;
    return true;
}

/* Returns with the reading role, or false when the loop ends. */
static bool take_reading(struct worker *w)
{
    struct session_loop *loop = w->loop;
    pthread_mutex_lock(&loop->lock);
    if (!w->reader && !loop->reading && !loop->exiting)
        w->reader = true;
    while (!w->reader && !loop->exiting) {
        w->next_idle = loop->idle;
        loop->idle = w;
        pthread_cond_wait(&w->wake, &loop->lock);
        if (!w->reader && !loop->exiting) {
            /* Woken without the role (exit broadcast): leave the stack. */
            struct worker **p = &loop->idle;
            while (*p && *p != w)
                p = &(*p)->next_idle;
            if (*p)
                *p = w->next_idle;
        }
    }
    bool go = w->reader && !loop->exiting;
    if (go) {
        loop->reading = true;
        loop->reader = pthread_self();
    }
    w->reader = false;
    pthread_mutex_unlock(&loop->lock);
    return go;
}

static void end_loop(struct session_loop *loop, int error)
{
    pthread_mutex_lock(&loop->lock);
    if (error < 0 && loop->error == 0)
        loop->error = error;
    if (!loop->exiting)
        sem_post(&loop->ended);
    loop->exiting = true;
    for (struct worker *w = loop->all; w; w = w->next_all)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&loop->lock);
}

static void free_buffer(void *mem_pointer)
{
    free(*(void **)mem_pointer);
}

/* A worker can be cancelled only while it waits in read(2) for a request
 * (how the loop ends on a signal); never while it serves one, which may
 * hold the volume's locks. */
static int receive_cancellable(struct fuse_session *se, struct fuse_buf *buf)
{
    int ignored;
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &ignored);
    int res = fuse_session_receive_buf(se, buf);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &ignored);
    return res;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct session_loop *loop = w->loop;
    int ignored;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &ignored);
    struct fuse_buf buf;
    memset(&buf, 0, sizeof(buf));
    pthread_cleanup_push(free_buffer, &buf.mem);
    bool holding = false;
    for (;;) {
        if (!holding && !take_reading(w))
            break;
        holding = true;
        int res = receive_cancellable(loop->se, &buf);
        if (res == -EINTR && !fuse_session_exited(loop->se))
            continue;
        if (res <= 0 || fuse_session_exited(loop->se)) {
            end_loop(loop, res < 0 && res != -EINTR ? res : 0);
            break;
        }
        uint32_t opcode = 0;
        if (!(buf.flags & FUSE_BUF_IS_FD) && (size_t)res >= sizeof(struct fuse_in_header))
            opcode = ((const struct fuse_in_header *)buf.mem)->opcode;
        if (opcode == 0 || may_wait(opcode)) {
            pthread_mutex_lock(&loop->lock);
            loop->reading = hand_over_reading(loop);
            pthread_mutex_unlock(&loop->lock);
            holding = false;
        }
        fuse_session_process_buf(loop->se, &buf);
    }
    pthread_cleanup_pop(0);
    free(buf.mem);
    return NULL;
}

/* Waits for the loop to end: a worker saw the unmount or an error, or a
 * signal handler of libfuse's marked the session exited (then the worker
 * blocked in read(2) is cancelled there). */
static void wait_for_end(struct session_loop *loop)
{
    for (;;) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_nsec += 100 * 1000 * 1000;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        if (sem_timedwait(&loop->ended, &at) == 0)
            return;
        if (fuse_session_exited(loop->se)) {
            end_loop(loop, 0);
            pthread_mutex_lock(&loop->lock);
            if (loop->reading)
                pthread_cancel(loop->reader);
            pthread_mutex_unlock(&loop->lock);
            return;
        }
    }
}

int vdfs_session_loop(struct fuse_session *se, unsigned max_threads)
{
    struct session_loop loop;
    memset(&loop, 0, sizeof(loop));
    loop.se = se;
    loop.max_threads = max_threads ? max_threads : 1;
    pthread_mutex_init(&loop.lock, NULL);
    sem_init(&loop.ended, 0, 0);
    pthread_mutex_lock(&loop.lock);
    bool started = hand_over_reading(&loop);
    loop.reading = started;
    pthread_mutex_unlock(&loop.lock);
    if (started)
        wait_for_end(&loop);
    /* No worker is added once the loop is exiting. */
    for (struct worker *w = loop.all, *next; w; w = next) {
        next = w->next_all;
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->wake);
        free(w);
    }
    sem_destroy(&loop.ended);
    pthread_mutex_destroy(&loop.lock);
    if (!started)
        return -ENOMEM;
    if (loop.error)
        return loop.error;
    return 0;
}
