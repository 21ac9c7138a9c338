/* Platform ports the guest uses to end the VM or that firmware-era code
 * pokes.  Anything else unclaimed floats (reads 0xff) and is counted by
 * the bus. */
#include "platform.h"

#include <pthread.h>
#include <stdlib.h>

#include "acpi.h"
#include "bus_core.h"
#include "layout.h"

#define I8042_CMD_RESET 0xfe
#define PM1_CNT_SCI_EN  0x0001
#define PM1_CNT_SLP_EN  0x2000
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_PWRBTN      0x0100 /* in PM1 status and enable */

struct platform {
    struct vm *vm;
    pthread_mutex_t lock;
    uint16_t pm1_status;
    uint16_t pm1_enable;
    uint16_t pm1_control;
    bool sci_raised;
};

/* The SCI is level-triggered: it stays raised while a fixed event is both
 * pending and enabled (lock held). */
static void update_sci(struct platform *p)
{
    bool raise = (p->pm1_status & p->pm1_enable & PM1_PWRBTN) && (p->pm1_control & PM1_CNT_SCI_EN);
    if (raise != p->sci_raised && vm_irq_line(p->vm, LAYOUT_ACPI_SCI_IRQ, raise) == 0)
        p->sci_raised = raise;
}

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write)
{
    if (!is_write)
        data[0] = 0x00; /* no byte pending */
}

static void i8042_cmd_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                         bool is_write)
{
    struct platform *p = opaque;
    if (!is_write) {
        /* Status: output and input buffers empty, ready for a command. */
        data[0] = 0x00;
        return;
    }
    if (data[0] == I8042_CMD_RESET)
        vm_request_stop(p->vm, VM_STOP_RESET, 0);
}

static void debug_exit_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write)
{
    struct platform *p = opaque;
    /* Like QEMU's isa-debug-exit with iosize=4: any write width to 0xf4-0xf7
     * ends the VM; the low byte is the status. */
    if (is_write)
        vm_request_stop(p->vm, VM_STOP_DEBUG_EXIT, data[0]);
}

static void post_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    /* POST codes and the classic I/O delay port: accepted, not recorded. */
}

static void pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct platform *p = opaque;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t reg = offset + i;
        uint16_t *r;
        unsigned shift = (reg & 1) * 8;
        if (reg < 2)
            r = &p->pm1_status;
        else if (reg < 4)
            r = &p->pm1_enable;
        else
            r = &p->pm1_control;
        if (!is_write) {
            data[i] = (uint8_t)(*r >> shift);
        } else if (r == &p->pm1_status) {
            *r &= (uint16_t)~((uint16_t)data[i] << shift); /* write 1 to clear */
        } else {
            *r = (uint16_t)((*r & ~(0xffu << shift)) | ((uint16_t)data[i] << shift));
        }
    }
    uint16_t control = p->pm1_control;
    p->pm1_control &= (uint16_t)~PM1_CNT_SLP_EN; /* SLP_EN reads back as 0 */
    p->pm1_control |= PM1_CNT_SCI_EN;
    update_sci(p);
    pthread_mutex_unlock(&p->lock);
    if (is_write && (control & PM1_CNT_SLP_EN) &&
        ((control >> PM1_CNT_SLP_TYP_SHIFT) & 7) == ACPI_S5_SLP_TYP)
        vm_request_stop(p->vm, VM_STOP_POWEROFF, 0);
}

struct platform *platform_create(struct vm *vm)
{
    struct platform *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->vm = vm;
    p->pm1_control = PM1_CNT_SCI_EN;
    pthread_mutex_init(&p->lock, NULL);
    struct bus *bus = vm->bus;
    if (bus_register(bus, BUS_PIO, LAYOUT_I8042_DATA, 1, i8042_data_io, p) < 0 ||
        bus_register(bus, BUS_PIO, LAYOUT_I8042_CMD, 1, i8042_cmd_io, p) < 0 ||
        bus_register(bus, BUS_PIO, LAYOUT_DEBUG_EXIT, 4, debug_exit_io, p) < 0 ||
        bus_register(bus, BUS_PIO, LAYOUT_POST_PORT, 1, post_io, p) < 0 ||
        bus_register(bus, BUS_PIO, LAYOUT_ACPI_PM_BASE, 6, pm_io, p) < 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

void platform_press_power_button(struct platform *p)
{
    pthread_mutex_lock(&p->lock);
    p->pm1_status |= PM1_PWRBTN;
    update_sci(p);
    pthread_mutex_unlock(&p->lock);
}

void platform_destroy(struct platform *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}
