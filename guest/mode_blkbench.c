/* mode=blkbench: virtio-blk throughput timed with the TSC inside the guest.
 * Requests are refilled as they complete and published once per polling
 * round, so a busy device sees few notifications (event-idx). */
#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "modes.h"
#include "virtio_blk.h"

#define MAX_QD 64
#define MAX_BS (4u << 20)

struct bench {
	struct blk_dev blk;
	uint32_t type;
	bool random;
	uint64_t bs, qd, blocks, next_block, rng;
	uint8_t *buffers;
};

static struct bench bench;

static uint64_t next_random(uint64_t *state)
{
	/* xorshift64* */
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dull;
}

static bool issue(uint16_t slot)
{
	uint64_t block;

	if (bench.random) {
		block = next_random(&bench.rng) % bench.blocks;
	} else {
		block = bench.next_block;
		bench.next_block = (bench.next_block + 1) % bench.blocks;
	}
	return blk_queue(&bench.blk, slot, bench.type, block * (bench.bs / SECTOR_SIZE),
			 bench.buffers + (uint64_t)slot * bench.bs, (uint32_t)bench.bs);
}

static bool parse_op(void)
{
	static const struct { const char *name; uint32_t type; bool random; } ops[] = {
		{ "randread", VIRTIO_BLK_T_IN, true }, { "randwrite", VIRTIO_BLK_T_OUT, true },
		{ "seqread", VIRTIO_BLK_T_IN, false }, { "seqwrite", VIRTIO_BLK_T_OUT, false },
	};
	const char *op;
	size_t len;

	if (!cmdline_get("op", &op, &len)) {
		op = "randread";
		len = 8;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(ops); i++) {
		if (str_equal_n(op, ops[i].name, len)) {
			bench.type = ops[i].type;
			bench.random = ops[i].random;
			return true;
		}
	}
	console_write("VDFS-GUEST ERROR op= takes randread, randwrite, seqread or seqwrite\n");
	return false;
}

static const char *op_name(void)
{
	if (bench.type == VIRTIO_BLK_T_IN)
		return bench.random ? "randread" : "seqread";
	return bench.random ? "randwrite" : "seqwrite";
}

enum guest_status mode_blkbench(void)
{
	struct pci_device dev;
	uint64_t seconds, count, span, disk, timeout_ms;
	uint64_t issued = 0, done = 0, errors = 0, start, deadline, end, elapsed_us;
	bool timed;

	if (!parse_op() || !cmdline_u64("bs", 4096, &bench.bs) || !cmdline_u64("qd", 32, &bench.qd) ||
	    !cmdline_u64("seconds", 0, &seconds) || !cmdline_u64("count", 0, &count) ||
	    !cmdline_u64("span", 0, &span) || !cmdline_u64("disk", 0, &disk) ||
	    !cmdline_u64("timeout_ms", 10000, &timeout_ms))
		return STATUS_BAD_CMDLINE;
	if (!bench.bs || bench.bs % SECTOR_SIZE || bench.bs > MAX_BS || !bench.qd || bench.qd > MAX_QD) {
		console_printf("VDFS-GUEST ERROR bs= must be a multiple of 512 up to %u, qd= 1..%u\n", MAX_BS, MAX_QD);
		return STATUS_BAD_CMDLINE;
	}
	if (!clock_known()) {
		console_write("VDFS-GUEST ERROR blkbench needs tsc_khz= (the host's TSC rate)\n");
		return STATUS_BAD_CMDLINE;
	}
	if (!seconds && !count)
		seconds = 5;
	timed = count == 0;

	if (!blk_find((unsigned)disk, &dev)) {
		console_printf("VDFS-GUEST ERROR no virtio-blk device number %lu on PCI bus 0\n", disk);
		return STATUS_NO_DEVICE;
	}
	if (!blk_open(&bench.blk, &dev, (uint16_t)bench.qd, timeout_ms))
		return STATUS_NO_DEVICE;
	if (bench.type == VIRTIO_BLK_T_OUT && blk_has(&bench.blk, VIRTIO_BLK_F_RO)) {
		console_write("VDFS-GUEST ERROR the disk is read-only\n");
		return STATUS_BAD_CMDLINE;
	}
	if (!span || span > bench.blk.capacity * SECTOR_SIZE)
		span = bench.blk.capacity * SECTOR_SIZE;
	bench.blocks = span / bench.bs;
	if (!bench.blocks) {
		console_write("VDFS-GUEST ERROR the disk (or span=) is smaller than bs=\n");
		return STATUS_BAD_CMDLINE;
	}
	bench.buffers = heap_alloc(bench.qd * bench.bs, 4096);
	if (!bench.buffers) {
		console_printf("VDFS-GUEST ERROR qd*bs = %lu bytes does not fit in guest RAM (%lu free)\n",
			       bench.qd * bench.bs, heap_free_bytes());
		return STATUS_BAD_CMDLINE;
	}
	memset(bench.buffers, 0xa5, bench.qd * bench.bs);
	bench.rng = 0x9e3779b97f4a7c15ull;

	start = rdtsc();
	deadline = start + clock_ticks_from_ms(seconds * 1000);
	for (uint16_t slot = 0; slot < bench.qd && (timed || issued < count); slot++) {
		if (!issue(slot)) {
			console_write("VDFS-GUEST ERROR the device cannot take a request of bs= bytes\n");
			return STATUS_BAD_CMDLINE;
		}
		issued++;
	}
	blk_publish(&bench.blk);

	while (done < issued) {
		uint16_t slot;
		uint8_t status;
		bool more = timed ? rdtsc() < deadline : issued < count;

		if (!blk_wait(&bench.blk, &slot, &status)) {
			console_printf("VDFS-GUEST ERROR request timed out after %lu ms\n", timeout_ms);
			return STATUS_TEST_FAILED;
		}
		/* Take every completion that is ready, refill, then publish once. */
		do {
			done++;
			errors += status != VIRTIO_BLK_S_OK;
			if (more) {
				issue(slot);
				issued++;
				more = timed || issued < count;
			}
		} while (blk_poll(&bench.blk, &slot, &status));
		blk_publish(&bench.blk);
	}
	end = rdtsc();

	elapsed_us = clock_us_from_ticks(end - start);
	if (!elapsed_us)
		elapsed_us = 1;
	uint64_t bytes = done * bench.bs;
	uint64_t iops = done * 1000000 / elapsed_us;
	uint64_t centi_mbps = bytes * 100 / elapsed_us; /* bytes per us = MB/s */

	console_printf("RESULT op=%s bs=%lu qd=%lu ios=%lu errors=%lu elapsed_us=%lu iops=%lu mbps=%lu.%02lu kicks=%lu\n",
		       op_name(), bench.bs, bench.qd, done, errors, elapsed_us, iops, centi_mbps / 100,
		       centi_mbps % 100, bench.blk.vq.kicks);
	return errors ? STATUS_TEST_FAILED : STATUS_PASS;
}
