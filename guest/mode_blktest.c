/* mode=blktest: the virtio-blk functional test against a disk prepared by
 * `blkcheck.py prepare`; `blkcheck.py verify` then checks the file. */
#include "blk_layout.h"
#include "cmdline.h"
#include "console.h"
#include "lib.h"
#include "modes.h"
#include "virtio_blk.h"

#define SLOTS 32
#define CHUNK_BYTES (32 * 1024)
#define BUFFER_BYTES (DISCARD_SECTORS * SECTOR_SIZE)
#define SCATTER_READS SLOTS
#define SCATTER_BYTES 4096

static struct blk_dev blk;
static uint8_t *buffer;
static struct virtio_blk_range *ranges; /* one per slot */
static unsigned failures;

static void report(const char *test, bool pass, const char *detail)
{
	console_printf("RESULT test=%s result=%s%s%s\n", test, pass ? "pass" : "fail",
		       detail[0] ? " " : "", detail);
	failures += !pass;
}

static void report_skip(const char *test, const char *why)
{
	console_printf("RESULT test=%s result=skip reason=%s\n", test, why);
}

static const char *status_name(int status)
{
	switch (status) {
	case VIRTIO_BLK_S_OK: return "ok";
	case VIRTIO_BLK_S_IOERR: return "ioerr";
	case VIRTIO_BLK_S_UNSUPP: return "unsupp";
	case BLK_TIMEOUT: return "timeout";
	case BLK_REJECTED: return "rejected";
	default: return "bad-status";
	}
}

/* Status of a batch: the first non-OK status, or OK. */
static int wait_all(unsigned outstanding, int worst)
{
	while (outstanding--) {
		uint16_t slot;
		uint8_t status;

		if (!blk_wait(&blk, &slot, &status))
			return BLK_TIMEOUT;
		if (status != VIRTIO_BLK_S_OK && worst == VIRTIO_BLK_S_OK)
			worst = status;
	}
	return worst;
}

/* Reads or writes [sector, sector + len) as CHUNK_BYTES requests, as many in
 * flight as there are slots, one kick per batch. */
static int transfer(uint32_t type, uint64_t sector, uint8_t *data, uint64_t len)
{
	int worst = VIRTIO_BLK_S_OK;

	while (len) {
		unsigned queued = 0;

		for (uint16_t slot = 0; slot < blk.slots && len; slot++) {
			uint32_t n = len < CHUNK_BYTES ? (uint32_t)len : CHUNK_BYTES;

			if (!blk_queue(&blk, slot, type, sector, data, n)) {
				blk_publish(&blk);
				return wait_all(queued, BLK_REJECTED);
			}
			queued++;
			sector += n / SECTOR_SIZE;
			data += n;
			len -= n;
		}
		blk_publish(&blk);
		worst = wait_all(queued, worst);
		if (worst == BLK_TIMEOUT)
			return worst;
	}
	return worst;
}

/* DISCARD or WRITE_ZEROES over a range, split by the device's limits. */
static int range_command(uint32_t type, uint64_t sector, uint64_t count, uint32_t max_sectors)
{
	int worst = VIRTIO_BLK_S_OK;

	if (!max_sectors)
		max_sectors = 0xffffffffu;
	while (count) {
		unsigned queued = 0;

		for (uint16_t slot = 0; slot < blk.slots && count; slot++) {
			uint32_t n = count < max_sectors ? (uint32_t)count : max_sectors;

			ranges[slot] = (struct virtio_blk_range){ sector, n, 0 };
			if (!blk_queue(&blk, slot, type, 0, &ranges[slot], sizeof(ranges[slot]))) {
				blk_publish(&blk);
				return wait_all(queued, BLK_REJECTED);
			}
			queued++;
			sector += n;
			count -= n;
		}
		blk_publish(&blk);
		worst = wait_all(queued, worst);
		if (worst == BLK_TIMEOUT)
			return worst;
	}
	return worst;
}

static void fill_pattern(uint8_t *data, uint64_t sector, uint64_t sectors, uint64_t base)
{
	uint64_t *word = (uint64_t *)data, offset = sector * SECTOR_SIZE;

	for (uint64_t i = 0; i < sectors * SECTOR_SIZE / 8; i++)
		word[i] = base ^ (offset + 8 * i);
}

/* Checks one sector against base ^ o, or against zeros. */
static bool sector_matches(const uint8_t *data, uint64_t sector, uint64_t base, bool zeros)
{
	const uint64_t *word = (const uint64_t *)data;
	uint64_t offset = sector * SECTOR_SIZE;

	for (unsigned i = 0; i < SECTOR_SIZE / 8; i++)
		if (word[i] != (zeros ? 0 : base ^ (offset + 8 * i)))
			return false;
	return true;
}

static void report_mismatch(const char *test, const uint8_t *data, uint64_t sector, uint64_t base, bool zeros)
{
	const uint64_t *word = (const uint64_t *)data;
	uint64_t offset = sector * SECTOR_SIZE, want = 0;
	unsigned i;

	for (i = 0; i < SECTOR_SIZE / 8 - 1; i++) {
		want = zeros ? 0 : base ^ (offset + 8 * i);
		if (word[i] != want)
			break;
	}
	console_printf("RESULT test=%s result=fail sector=%lu word=%u got=0x%lx want=0x%lx\n", test, sector, i,
		       word[i], zeros ? 0 : base ^ (offset + 8 * i));
	failures++;
}

/* Reads [sector, +count) and checks each sector: pattern base, zeros, or
 * (either_ok) either of the two. */
static bool read_and_check(const char *test, uint64_t sector, uint64_t count, uint64_t base,
			   bool zeros, bool either_ok, bool report_pass)
{
	int status;

	memset(buffer, 0x5a, count * SECTOR_SIZE);
	status = transfer(VIRTIO_BLK_T_IN, sector, buffer, count * SECTOR_SIZE);
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=%s result=fail sector=%lu count=%lu status=%s\n",
			       test, sector, count, status_name(status));
		failures++;
		return false;
	}
	for (uint64_t i = 0; i < count; i++) {
		const uint8_t *data = buffer + i * SECTOR_SIZE;
		bool ok = sector_matches(data, sector + i, base, zeros) ||
			  (either_ok && sector_matches(data, sector + i, base, !zeros));

		if (!ok) {
			report_mismatch(test, data, sector + i, base, zeros);
			return false;
		}
	}
	if (report_pass)
		report(test, true, "");
	return true;
}

static void test_read_pattern(void)
{
	const uint64_t cap = blk.capacity;
	const struct { uint64_t sector, count; } spans[] = {
		{ 0, 1 }, { 1, 8 }, { 63, 256 }, { WRITE_START, WRITE_SECTORS },
		{ ZERO_START, ZERO_SECTORS }, { cap - 8, 8 },
	};
	bool ok = true;

	for (unsigned i = 0; i < ARRAY_SIZE(spans) && ok; i++)
		ok = read_and_check("read_pattern", spans[i].sector, spans[i].count, HOST_PATTERN,
				    false, false, false);
	if (!ok)
		return;

	/* Scattered 4 KiB reads, all in flight at once behind a single kick. */
	uint64_t blocks = cap / (SCATTER_BYTES / SECTOR_SIZE);
	uint64_t kicks_before = blk.vq.kicks;

	memset(buffer, 0x5a, SCATTER_READS * SCATTER_BYTES);
	for (uint16_t i = 0; i < SCATTER_READS; i++) {
		uint64_t sector = (i * 2654435761ull) % blocks * (SCATTER_BYTES / SECTOR_SIZE);

		if (!blk_queue(&blk, i, VIRTIO_BLK_T_IN, sector, buffer + i * SCATTER_BYTES, SCATTER_BYTES)) {
			report("read_scatter", false, "queue=rejected");
			return;
		}
	}
	blk_publish(&blk);
	int status = wait_all(SCATTER_READS, VIRTIO_BLK_S_OK);
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=read_scatter result=fail status=%s\n", status_name(status));
		failures++;
		return;
	}
	for (uint16_t i = 0; i < SCATTER_READS; i++) {
		uint64_t sector = (i * 2654435761ull) % blocks * (SCATTER_BYTES / SECTOR_SIZE);

		for (unsigned s = 0; s < SCATTER_BYTES / SECTOR_SIZE; s++) {
			const uint8_t *data = buffer + i * SCATTER_BYTES + s * SECTOR_SIZE;

			if (!sector_matches(data, sector + s, HOST_PATTERN, false)) {
				report_mismatch("read_scatter", data, sector + s, HOST_PATTERN, false);
				return;
			}
		}
	}
	report("read_pattern", true, "");
	console_printf("RESULT test=read_scatter result=pass requests=%u kicks=%lu\n", SCATTER_READS,
		       blk.vq.kicks - kicks_before);
}

static void test_write(bool read_only)
{
	int status;

	fill_pattern(buffer, WRITE_START, WRITE_SECTORS, GUEST_PATTERN);
	status = transfer(VIRTIO_BLK_T_OUT, WRITE_START, buffer, WRITE_SECTORS * SECTOR_SIZE);
	if (read_only) {
		/* A read-only disk must refuse the write and keep the host pattern. */
		bool refused = status == VIRTIO_BLK_S_IOERR || status == VIRTIO_BLK_S_UNSUPP;

		console_printf("RESULT test=write_refused result=%s status=%s\n", refused ? "pass" : "fail",
			       status_name(status));
		failures += !refused;
		read_and_check("write_refused_readback", WRITE_START, WRITE_SECTORS, HOST_PATTERN, false,
			       false, true);
		return;
	}
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=write_readback result=fail status=%s\n", status_name(status));
		failures++;
		return;
	}
	read_and_check("write_readback", WRITE_START, WRITE_SECTORS, GUEST_PATTERN, false, false, true);
}

static void test_flush(void)
{
	int status;

	if (!blk_has(&blk, VIRTIO_BLK_F_FLUSH)) {
		report_skip("flush", "not-offered");
		return;
	}
	status = blk_run(&blk, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	console_printf("RESULT test=flush result=%s status=%s\n",
		       status == VIRTIO_BLK_S_OK ? "pass" : "fail", status_name(status));
	failures += status != VIRTIO_BLK_S_OK;
}

static void test_discard(void)
{
	int status;

	if (!blk_has(&blk, VIRTIO_BLK_F_DISCARD)) {
		report_skip("discard", "not-offered");
		return;
	}
	status = range_command(VIRTIO_BLK_T_DISCARD, DISCARD_START, DISCARD_SECTORS, blk.max_discard_sectors);
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=discard result=fail status=%s\n", status_name(status));
		failures++;
		return;
	}
	/* Discarded data is unspecified: either the old content or zeros. */
	read_and_check("discard", DISCARD_START, DISCARD_SECTORS, HOST_PATTERN, false, true, true);
}

static void test_write_zeroes(void)
{
	int status;

	if (!blk_has(&blk, VIRTIO_BLK_F_WRITE_ZEROES)) {
		report_skip("write_zeroes", "not-offered");
		return;
	}
	status = range_command(VIRTIO_BLK_T_WRITE_ZEROES, ZERO_START, ZERO_SECTORS,
			       blk.max_write_zeroes_sectors);
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=write_zeroes result=fail status=%s\n", status_name(status));
		failures++;
		return;
	}
	read_and_check("write_zeroes", ZERO_START, ZERO_SECTORS, 0, true, false, true);
}

static void test_read_past_end(void)
{
	int at_end = blk_run(&blk, VIRTIO_BLK_T_IN, blk.capacity, buffer, SECTOR_SIZE);
	int straddling = blk_run(&blk, VIRTIO_BLK_T_IN, blk.capacity - 1, buffer, 2 * SECTOR_SIZE);
	bool ok = at_end == VIRTIO_BLK_S_IOERR && straddling == VIRTIO_BLK_S_IOERR;

	console_printf("RESULT test=read_past_end result=%s at_end=%s straddling=%s\n", ok ? "pass" : "fail",
		       status_name(at_end), status_name(straddling));
	failures += !ok;
}

static void test_get_id(void)
{
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	int status;

	memset(buffer, 0, VIRTIO_BLK_ID_BYTES);
	status = blk_run(&blk, VIRTIO_BLK_T_GET_ID, 0, buffer, VIRTIO_BLK_ID_BYTES);
	if (status == VIRTIO_BLK_S_UNSUPP) {
		report_skip("get_id", "unsupported");
		return;
	}
	if (status != VIRTIO_BLK_S_OK) {
		console_printf("RESULT test=get_id result=fail status=%s\n", status_name(status));
		failures++;
		return;
	}
	/* The serial is printed as one token: anything else becomes '_'. */
	unsigned n;
	for (n = 0; n < VIRTIO_BLK_ID_BYTES && buffer[n]; n++)
		serial[n] = (buffer[n] > ' ' && buffer[n] < 0x7f && buffer[n] != '=') ? (char)buffer[n] : '_';
	serial[n] = 0;
	console_printf("RESULT test=get_id result=pass serial=%s\n", n ? serial : "-");
}

static void test_device_status(void)
{
	uint8_t status = virtio_pci_status(&blk.vp);
	bool ok = !(status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));

	console_printf("RESULT test=device_status result=%s status=0x%x kicks=%lu\n", ok ? "pass" : "fail",
		       status, blk.vq.kicks);
	failures += !ok;
}

enum guest_status mode_blktest(void)
{
	struct pci_device dev;
	uint64_t disk, timeout_ms;
	bool read_only;

	if (!cmdline_u64("disk", 0, &disk) || !cmdline_u64("timeout_ms", 10000, &timeout_ms))
		return STATUS_BAD_CMDLINE;
	if (!blk_find((unsigned)disk, &dev)) {
		console_printf("VDFS-GUEST ERROR no virtio-blk device number %lu on PCI bus 0\n", disk);
		return STATUS_NO_DEVICE;
	}
	if (!blk_open(&blk, &dev, SLOTS, timeout_ms))
		return STATUS_NO_DEVICE;
	buffer = heap_alloc(BUFFER_BYTES, 4096);
	ranges = heap_alloc(sizeof(*ranges) * SLOTS, 64);
	if (!buffer || !ranges) {
		console_write("VDFS-GUEST ERROR out of memory for test buffers\n");
		return STATUS_NO_DEVICE;
	}
	read_only = blk_has(&blk, VIRTIO_BLK_F_RO);
	console_printf("RESULT test=device result=%s bdf=%02x:%02x.%u capacity=%lu features=0x%lx queue_size=%u "
		       "ro=%u flush=%u discard=%u write_zeroes=%u\n",
		       blk.capacity >= BLKTEST_MIN_SECTORS ? "pass" : "fail", dev.bus, dev.dev, dev.fn,
		       blk.capacity, blk.vp.features, blk.vq.size, read_only,
		       blk_has(&blk, VIRTIO_BLK_F_FLUSH), blk_has(&blk, VIRTIO_BLK_F_DISCARD),
		       blk_has(&blk, VIRTIO_BLK_F_WRITE_ZEROES));
	if (blk.capacity < BLKTEST_MIN_SECTORS) {
		console_printf("VDFS-GUEST ERROR blktest needs a disk of at least %u sectors\n", BLKTEST_MIN_SECTORS);
		return STATUS_TEST_FAILED;
	}

	test_read_pattern();
	test_write(read_only);
	test_flush();
	if (read_only) {
		report_skip("discard", "read-only");
		report_skip("write_zeroes", "read-only");
	} else {
		test_discard();
		test_write_zeroes();
	}
	test_read_past_end();
	test_get_id();
	test_device_status();
	return failures ? STATUS_TEST_FAILED : STATUS_PASS;
}
