/* Damaged and hostile buffers: flipped bits, wrong address, wrong kind,
 * wrong magic, the all-zero sector exception, and random input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "codecs.h"
#include "format.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_random(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = rng();
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(buf + i, &r, n);
    }
}

static void test_samples_decode(void **state)
{
    uint8_t buf[VDFS_META_SIZE], again[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        codecs[c].make(buf, SAMPLE_ADDR);
        assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR, again), 0);
        /* Decode then encode reproduces the object byte for byte. */
        assert_memory_equal(again, buf, codecs[c].size);
    }
}

static void test_flipped_bit_is_detected(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        size_t len = codecs[c].size;
        /* Header fields, the checksum itself, first payload byte, the
         * middle, reserved areas and the last byte. */
        const size_t offsets[] = { 0, 3, 4, 8, 15, 16, 23, 24, 31, 32, 33, 100, 333,
                                   len / 2, len - 200, len - 2, len - 1 };
        for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
            for (unsigned bit = 0; bit < 8; bit += 3) {
                codecs[c].make(buf, SAMPLE_ADDR);
                buf[offsets[o]] ^= (uint8_t)(1u << bit);
                int rc = codecs[c].decode(buf, SAMPLE_ADDR, NULL);
                if (rc != -EIO)
                    fail_msg("%s: flipped bit %u of byte %zu decoded as %d",
                             codecs[c].name, bit, offsets[o], rc);
            }
        }
    }
}

static void test_wrong_address(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        codecs[c].make(buf, SAMPLE_ADDR);
        assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR + VDFS_META_SIZE, NULL), -EIO);
        assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR - VDFS_SECTOR_SIZE, NULL), -EIO);
        assert_int_equal(codecs[c].decode(buf, 0, NULL), -EIO);
        assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR, NULL), 0);
    }
}

/* A correctly checksummed object of another kind is refused. */
static void test_wrong_kind(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        for (uint32_t kind = 0; kind <= 10; kind++) {
            if (kind == codecs[c].kind)
                continue;
            codecs[c].make(buf, SAMPLE_ADDR);
            struct vdfs_header h;
            vdfs_obj_read_header(buf, &h);
            h.kind = kind;
            vdfs_obj_seal(buf, codecs[c].size, &h);
            assert_int_equal(vdfs_obj_verify(buf, codecs[c].size, kind, SAMPLE_ADDR), 0);
            assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR, NULL), -EIO);
        }
    }
}

/* A correctly checksummed object with another magic is refused. */
static void test_wrong_magic(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        codecs[c].make(buf, SAMPLE_ADDR);
        vdfs_le32 magic = vdfs_put32(VDFS_MAGIC ^ 0x20);
        memcpy(buf, &magic, sizeof(magic));
        memset(buf + 24, 0, 8);
        vdfs_le64 csum = vdfs_put64(vdfs_checksum(buf, codecs[c].size));
        memcpy(buf + 24, &csum, sizeof(csum));
        assert_int_equal(codecs[c].decode(buf, SAMPLE_ADDR, NULL), -EIO);
    }
}

static void test_verify_rejects_bad_lengths(void **state)
{
    uint8_t buf[2 * VDFS_META_SIZE] = { 0 };
    struct vdfs_header h = { VDFS_KIND_PB, 0, 0 };
    vdfs_obj_seal(buf, 16 + 16, &h);
    assert_int_equal(vdfs_obj_verify(buf, 32, VDFS_KIND_PB, 0), 0);
    assert_int_equal(vdfs_obj_verify(buf, 31, VDFS_KIND_PB, 0), -EIO);
    assert_int_equal(vdfs_obj_verify(buf, 0, VDFS_KIND_PB, 0), -EIO);
    assert_int_equal(vdfs_obj_verify(buf, sizeof(buf), VDFS_KIND_PB, 0), -EIO);
}

static void test_zero_sectors_are_free(void **state)
{
    uint8_t zero[VDFS_META_SIZE] = { 0 };
    struct vdfs_heartbeat h;
    memset(&h, 0xcc, sizeof(h));
    assert_int_equal(vdfs_heartbeat_decode(zero, 0x10200, &h), 0);
    assert_int_equal(h.state, VDFS_HB_FREE);
    assert_true(h.hdr.addr == 0x10200);
    assert_true(h.hdr.gen == 0);
    assert_int_equal(h.slot, 0);
    assert_true(h.hb_gen == 0 && h.counter == 0 && h.stamp_ns == 0);
    assert_int_equal(h.hostname[0], '\0');

    struct vdfs_lock_rec l;
    memset(&l, 0xcc, sizeof(l));
    assert_int_equal(vdfs_lock_decode(zero, 0x90400, &l), 0);
    assert_int_equal(l.mode, VDFS_LOCK_FREE);
    assert_int_equal(l.owner_slot, VDFS_NO_SLOT);
    assert_true(l.hdr.addr == 0x90400);
    assert_true(l.owner_hb_gen == 0 && l.object == 0 && l.acquired_ns == 0);
    assert_int_equal(l.nholders, 0);
    for (unsigned i = 0; i < VDFS_LOCK_HOLDERS; i++)
        assert_int_equal(l.holders[i].slot, 0);

    /* One non-zero byte makes it an ordinary (and here corrupt) record. */
    zero[511] = 1;
    assert_int_equal(vdfs_heartbeat_decode(zero, 0x10200, &h), -EIO);
    assert_int_equal(vdfs_lock_decode(zero, 0x90400, &l), -EIO);
    zero[511] = 0;

    /* No other structure has the exception. */
    for (size_t c = 0; c < NCODECS; c++) {
        if (codecs[c].kind == VDFS_KIND_HEARTBEAT || codecs[c].kind == VDFS_KIND_LOCK)
            continue;
        assert_int_equal(codecs[c].decode(zero, 0, NULL), -EIO);
    }
}

#define FUZZ_ROUNDS 10000

/* Unsealed random bytes never pass the checksum. */
static void test_random_buffers(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (size_t c = 0; c < NCODECS; c++) {
        for (int i = 0; i < FUZZ_ROUNDS; i++) {
            fill_random(buf, sizeof(buf));
            if (i & 1) /* give the header a plausible magic and kind */ {
                vdfs_le32 magic = vdfs_put32(VDFS_MAGIC), kind = vdfs_put32(codecs[c].kind);
                memcpy(buf, &magic, 4);
                memcpy(buf + 4, &kind, 4);
            }
            int rc = codecs[c].decode(buf, SAMPLE_ADDR, NULL);
            if (rc != -EIO && rc != -EINVAL)
                fail_msg("%s: random buffer %d decoded as %d", codecs[c].name, i, rc);
        }
    }
}

/* Random content under a valid seal reaches the semantic checks.  Whatever
 * is accepted must survive encode and decode again unchanged. */
static void test_random_sealed_buffers(void **state)
{
    uint8_t buf[VDFS_META_SIZE], again[VDFS_META_SIZE], third[VDFS_META_SIZE];
    unsigned accepted[NCODECS] = { 0 };
    for (size_t c = 0; c < NCODECS; c++) {
        size_t len = codecs[c].size;
        for (int i = 0; i < FUZZ_ROUNDS; i++) {
            if (i % 2) {
                fill_random(buf, len);
            } else {
                /* Mutate a few bytes of a valid object. */
                codecs[c].make(buf, SAMPLE_ADDR);
                int n = 1 + (int)(rng() % 4);
                for (int k = 0; k < n; k++) {
                    uint64_t r = rng();
                    size_t off = 32 + (size_t)(r % (len - 32));
                    buf[off] = (uint8_t)(r >> 32);
                }
            }
            struct vdfs_header h = { codecs[c].kind, SAMPLE_ADDR, rng() };
            vdfs_obj_seal(buf, len, &h);
            int rc = codecs[c].decode(buf, SAMPLE_ADDR, again);
            if (rc != 0 && rc != -EIO && rc != -EINVAL && rc != -EOPNOTSUPP)
                fail_msg("%s: sealed buffer %d decoded as %d", codecs[c].name, i, rc);
            if (rc == 0) {
                accepted[c]++;
                assert_int_equal(codecs[c].decode(again, SAMPLE_ADDR, third), 0);
                assert_memory_equal(third, again, len);
            }
        }
    }
    /* The mutation half must mostly land in fields that stay valid. */
    for (size_t c = 0; c < NCODECS; c++)
        if (accepted[c] == 0)
            fail_msg("%s: no mutated object was accepted", codecs[c].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_decode),
        cmocka_unit_test(test_flipped_bit_is_detected),
        cmocka_unit_test(test_wrong_address),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_verify_rejects_bad_lengths),
        cmocka_unit_test(test_zero_sectors_are_free),
        cmocka_unit_test(test_random_buffers),
        cmocka_unit_test(test_random_sealed_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
