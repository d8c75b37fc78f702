/* A Modbus TCP server built on libmodbus, an implementation independent of pymodbus, used to
 * check the gateway's decoding. Holding and input registers hold the same known values:
 *
 *   0  float32 123.456 ABCD     2  float32 123.456 DCBA     4  float32 123.456 BADC
 *   6  float32 123.456 CDAB    10  int16 -12345             11 uint16 54321
 *  12  int32 -123456789 ABCD   14  int32 -123456789 CDAB    16 uint32 3000000000 ABCD
 *  18  uint32 3000000000 DCBA  20  float64 -2.5e-3 ABCD     24 int64 -1099511627783 ABCD
 *  28  uint64 4503599627370499 CDAB (words reversed)        40 string "PDM-SIM!" (4 regs)
 *  900 any read touching it is answered "server busy" (exception 6)
 *
 * Floats are laid out from their IEEE bits here rather than with libmodbus's
 * modbus_set_float_abcd() and friends: on a little-endian host those put the bytes on the wire
 * as B A D C for "abcd" (their names follow the host's memory view, not the wire order), which
 * is precisely the confusion this test guards against.
 *
 * Usage: libmodbus_server PORT. Prints "ready" once listening; serves clients one at a time
 * until killed.
 */
#include <errno.h>
#include <modbus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put_words(uint16_t *r, int addr, uint64_t v, int words, int swap_words) {
    for (int i = 0; i < words; i++) {
        uint16_t w = (uint16_t)(v >> (16 * (words - 1 - i)));
        r[addr + (swap_words ? words - 1 - i : i)] = w;
    }
}

static uint16_t swap16(uint16_t w) { return (uint16_t)((w << 8) | (w >> 8)); }

/* a 32-bit value in the named wire order, A = most significant byte */
static void put32(uint16_t *r, int addr, uint32_t v, const char *order) {
    uint16_t hi = (uint16_t)(v >> 16), lo = (uint16_t)v;
    if (strcmp(order, "ABCD") == 0) { r[addr] = hi; r[addr + 1] = lo; }
    if (strcmp(order, "CDAB") == 0) { r[addr] = lo; r[addr + 1] = hi; }
    if (strcmp(order, "BADC") == 0) { r[addr] = swap16(hi); r[addr + 1] = swap16(lo); }
    if (strcmp(order, "DCBA") == 0) { r[addr] = swap16(lo); r[addr + 1] = swap16(hi); }
}

static void fill(uint16_t *r) {
    float f = 123.456f;
    uint32_t fb;
    memcpy(&fb, &f, sizeof fb);
    put32(r, 0, fb, "ABCD");
    put32(r, 2, fb, "DCBA");
    put32(r, 4, fb, "BADC");
    put32(r, 6, fb, "CDAB");
    r[10] = (uint16_t)(int16_t)-12345;
    r[11] = 54321;
    put_words(r, 12, (uint32_t)(int32_t)-123456789, 2, 0);
    put_words(r, 14, (uint32_t)(int32_t)-123456789, 2, 1);
    put_words(r, 16, 3000000000u, 2, 0);
    put32(r, 18, 3000000000u, "DCBA");
    double d = -2.5e-3;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_words(r, 20, bits, 4, 0);
    put_words(r, 24, (uint64_t)(int64_t)-1099511627783LL, 4, 0);
    put_words(r, 28, 4503599627370499ULL, 4, 1);
    const char *s = "PDM-SIM!";
    for (int i = 0; i < 4; i++) r[40 + i] = (uint16_t)((s[2 * i] << 8) | s[2 * i + 1]);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
    modbus_mapping_t *map = modbus_mapping_new(0, 0, 1000, 1000);
    if (ctx == NULL || map == NULL) return 1;
    fill(map->tab_registers);
    fill(map->tab_input_registers);
    int listener = modbus_tcp_listen(ctx, 4);
    if (listener < 0) {
        fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
        return 3;
    }
    printf("ready\n");
    fflush(stdout);
    uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        if (modbus_tcp_accept(ctx, &listener) < 0) continue;
        for (;;) {
            int n = modbus_receive(ctx, q);
            if (n == 0) continue;
            if (n < 0) break; /* client gone: accept the next one */
            int off = modbus_get_header_length(ctx);
            int fc = q[off];
            int addr = (q[off + 1] << 8) | q[off + 2];
            int count = (q[off + 3] << 8) | q[off + 4];
            if ((fc == 3 || fc == 4) && addr <= 900 && 900 < addr + count) {
                modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_SLAVE_OR_SERVER_BUSY);
                continue;
            }
            modbus_reply(ctx, q, n, map);
        }
        modbus_close(ctx);
    }
}
