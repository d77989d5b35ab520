/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the overrides journal reader, the parser that reads what may be a
 * damaged file at start-up. Two ways in:
 *   - a first byte 'J': the rest is a record body and gets its correct checksum appended, so
 *     that the fuzzer explores the JSON reader and the record checks behind the CRC;
 *   - a first byte 'F': the rest is a whole journal file, written out and opened with
 *     sy_journal_open (torn tails, damaged lines, bad sequences, replay);
 *   - anything else: every line goes through sy_journal_parse_line.
 * Contract checked besides the sanitizers: a parse that fails says why and leaves nothing
 * allocated; an open that succeeds replays to a consistent set (history agrees with seq). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchyard/overrides.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_one(const char *line, size_t len)
{
    struct sy_journal_record r;
    const char *why = NULL;
    if (sy_journal_parse_line(line, len, &r, &why) != 0) {
        if (!why)
            __builtin_trap();
        return;
    }
    sy_journal_record_dispose(&r);
}

static void count_cb(const struct sy_journal_record *r, void *arg)
{
    (*(size_t *)arg)++;
}

static int open_file(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 'J') {
        size_t n = size - 1;
        char *line = malloc(n + 32);
        memcpy(line, data + 1, n);
        uint32_t crc = sy_journal_crc32(line, n);
        int k = snprintf(line + n, 32, ",\"crc\":\"%08x\"}", crc);
        parse_one(line, n + (size_t)k);
        free(line);
        return 0;
    }
    if (size > 0 && data[0] == 'F')
        return open_file(data + 1, size - 1);
    const char *text = (const char *)data;
    for (size_t off = 0; off < size;) {
        const char *nl = memchr(text + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - text) - off : size - off;
        parse_one(text + off, len);
        off += len + 1;
    }
    return 0;
}

/* The journal file path: one per fuzzing process, in a directory of its own (the journal
 * refuses a directory others can write, such as /tmp). */
static int open_file(const uint8_t *data, size_t size)
{
    static char dir[] = "/tmp/fuzz_journal-XXXXXX";
    static char path[64];
    if (!path[0]) {
        if (!mkdtemp(dir))
            return 0;
        snprintf(path, sizeof(path), "%s/state", dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct sy_journal_opts o = {.no_sync = true, .compact_after = 50};
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *j = NULL;
    if (sy_journal_open(path, &o, &d, &j) == 0) {
        size_t records = 0;
        sy_journal_history(j, 1000, count_cb, &records);
        if (records > sy_journal_seq(j) + 1)
            __builtin_trap();
        sy_journal_close(j);
    }
    sy_diags_dispose(&d);
    unlink(path);
    return 0;
}
