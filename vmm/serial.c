/* A 16550A-compatible UART: transmit to a file descriptor, receive from
 * another (fed by a reader thread into a small FIFO), scratch/line/modem
 * control registers, loopback for the probe, and the THR-empty and
 * data-ready interrupts on IRQ 4 when the guest enables them. */
#include "serial.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bus_core.h"
#include "layout.h"
#include "vmm_seccomp.h"

#define UART_RBR_THR 0
#define UART_IER 1
#define UART_IIR_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define LSR_DR 0x01
#define IIR_FIFO_ENABLED 0xc0
#define FCR_FIFO_ENABLE 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct serial {
    struct vm *vm;
    int out_fd;
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thr_interrupt; /* THR empty, not yet acknowledged by an IIR read */
    char line[4096];
    size_t line_len;
    uint8_t rx[256]; /* receive FIFO, filled by the input thread */
    size_t rx_head, rx_count;
    int in_fd;
    int stop_fd; /* eventfd: the input thread returns when it is written */
    atomic_bool stopping;
    pthread_t input_thread;
    bool input_started;
};

static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* a closed console must not stop the guest */
        p += n;
        len -= (size_t)n;
    }
}

static void flush_locked(struct serial *s)
{
    write_all(s->out_fd, s->line, s->line_len);
    s->line_len = 0;
}

static void update_irq_locked(struct serial *s)
{
    bool pending = ((s->ier & IER_THRI) && s->thr_interrupt) ||
                   ((s->ier & IER_RDI) && s->rx_count > 0);
    /* The 8250 drives an edge through the PIC/IOAPIC: pulse on assertion. */
    if (pending) {
        vm_irq_line(s->vm, LAYOUT_COM1_IRQ, 1);
        vm_irq_line(s->vm, LAYOUT_COM1_IRQ, 0);
    }
}

static uint8_t modem_status(const struct serial *s)
{
    if (!(s->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t msr = 0;
    if (s->mcr & MCR_RTS)
        msr |= MSR_CTS;
    if (s->mcr & MCR_DTR)
        msr |= MSR_DSR;
    if (s->mcr & MCR_OUT1)
        msr |= MSR_RI;
    if (s->mcr & MCR_OUT2)
        msr |= MSR_DCD;
    return msr;
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
    bool dlab = s->lcr & LCR_DLAB;
    switch (reg) {
    case UART_RBR_THR:
        if (dlab) {
            s->dll = v;
            break;
        }
        if (!(s->mcr & MCR_LOOP)) {
            s->line[s->line_len++] = (char)v;
            if (v == '\n' || s->line_len == sizeof(s->line))
                flush_locked(s);
        }
        s->thr_interrupt = true;
        update_irq_locked(s);
        break;
    case UART_IER:
        if (dlab) {
            s->dlm = v;
            break;
        }
        s->ier = v & 0x0f;
        if (s->ier & IER_THRI)
            s->thr_interrupt = true;
        update_irq_locked(s);
        break;
    case UART_IIR_FCR:
        s->fcr = v;
        break;
    case UART_LCR:
        s->lcr = v;
        break;
    case UART_MCR:
        s->mcr = v & 0x1f;
        break;
    case UART_SCR:
        s->scr = v;
        break;
    default:
        break; /* LSR and MSR are read-only */
    }
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
    bool dlab = s->lcr & LCR_DLAB;
    switch (reg) {
    case UART_RBR_THR: {
        if (dlab)
            return s->dll;
        if (s->rx_count == 0)
            return 0;
        uint8_t c = s->rx[s->rx_head];
        s->rx_head = (s->rx_head + 1) % sizeof(s->rx);
        s->rx_count--;
        return c;
    }
    case UART_IER:
        return dlab ? s->dlm : s->ier;
    case UART_IIR_FCR: {
        uint8_t fifo = (s->fcr & FCR_FIFO_ENABLE) ? IIR_FIFO_ENABLED : 0;
        if ((s->ier & IER_RDI) && s->rx_count > 0)
            return fifo | IIR_RDI;
        if ((s->ier & IER_THRI) && s->thr_interrupt) {
            s->thr_interrupt = false;
            return fifo | IIR_THRI;
        }
        return fifo | IIR_NO_INT;
    }
    case UART_LCR:
        return s->lcr;
    case UART_MCR:
        return s->mcr;
    case UART_LSR:
        return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
    case UART_MSR:
        return modem_status(s);
    case UART_SCR:
        return s->scr;
    default:
        return 0xff;
    }
}

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct serial *s = opaque;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < len && offset + i < 8; i++) {
        if (is_write)
            serial_write_reg(s, (unsigned)(offset + i), data[i]);
        else
            data[i] = serial_read_reg(s, (unsigned)(offset + i));
    }
    pthread_mutex_unlock(&s->lock);
}

/* Reads the console input and queues it for the guest; bytes that do not
 * fit in the FIFO wait until the guest drains it. */
static void *input_thread(void *arg)
{
    struct serial *s = arg;
    pthread_setname_np(pthread_self(), "serial-in");
    if (seccomp_thread_confine(SECCOMP_PROFILE_CONSOLE) < 0)
        return NULL;
    uint8_t buf[64];
    for (;;) {
        /* Stopped through an eventfd, not pthread_cancel: glibc's
         * cancellation would load libgcc_s, an open() the allow-lists
         * refuse. */
        struct pollfd pfd[2] = { { .fd = s->in_fd, .events = POLLIN },
                                 { .fd = s->stop_fd, .events = POLLIN } };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (pfd[1].revents)
            return NULL;
        ssize_t n = read(s->in_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL; /* end of input: the guest just sees no more bytes */
        for (ssize_t i = 0; i < n;) {
            pthread_mutex_lock(&s->lock);
            while (i < n && s->rx_count < sizeof(s->rx)) {
                s->rx[(s->rx_head + s->rx_count) % sizeof(s->rx)] = buf[i++];
                s->rx_count++;
            }
            update_irq_locked(s);
            pthread_mutex_unlock(&s->lock);
            if (i < n && atomic_load(&s->stopping))
                return NULL;
            if (i < n)
                usleep(1000);
        }
    }
}

int serial_start_input(struct serial *s, int in_fd)
{
    s->in_fd = in_fd;
    s->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (s->stop_fd < 0)
        return -errno;
    int rc = pthread_create(&s->input_thread, NULL, input_thread, s);
    if (rc != 0) {
        close(s->stop_fd);
        s->stop_fd = -1;
        return -rc;
    }
    s->input_started = true;
    return 0;
}

struct serial *serial_create(struct vm *vm, int out_fd)
{
    struct serial *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->vm = vm;
    s->out_fd = out_fd;
    s->in_fd = -1;
    s->stop_fd = -1;
    s->dll = 12; /* 9600 baud, what firmware leaves behind */
    pthread_mutex_init(&s->lock, NULL);
    if (bus_register(vm->bus, BUS_PIO, LAYOUT_COM1_PORT, 8, serial_io, s) < 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

void serial_flush(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    flush_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void serial_destroy(struct serial *s)
{
    if (!s)
        return;
    if (s->input_started) {
        atomic_store(&s->stopping, true);
        eventfd_write(s->stop_fd, 1);
        pthread_join(s->input_thread, NULL);
        close(s->stop_fd);
    }
    serial_flush(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
