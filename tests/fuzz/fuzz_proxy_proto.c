/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the PROXY protocol header parser. The first byte picks the versions
 * accepted; the rest is the connection's first bytes. Besides the sanitizers, it checks the
 * contracts: DONE consumes no more than was given, every strict prefix of a DONE header is
 * NEED_MORE (a header split into any reads parses the same), an ERROR carries a reason, and
 * NEED_MORE never claims a need below what was given. A broken contract traps. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "switchyard/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum sy_pp_accept acc = (enum sy_pp_accept)(1 + data[0] % 3);
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct sy_pp_result r;
    enum sy_pp_status st = sy_pp_parse(p, n, acc, &r);
    if (st == SY_PP_ERROR) {
        check(r.why != NULL);
        return 0;
    }
    if (st == SY_PP_NEED_MORE) {
        check(r.need == 0 || r.need > n);
        return 0;
    }
    check(r.consumed > 0 && r.consumed <= n);
    check(!r.has_addr || r.src.ss_family == r.dst.ss_family);
    size_t whole = r.consumed;
    /* Every prefix is NEED_MORE, and the header alone parses to the same length. */
    for (size_t i = 0; i < whole; i++) {
        struct sy_pp_result q;
        check(sy_pp_parse(p, i, acc, &q) == SY_PP_NEED_MORE);
    }
    struct sy_pp_result q;
    check(sy_pp_parse(p, whole, acc, &q) == SY_PP_DONE && q.consumed == whole);
    check(q.has_addr == r.has_addr && q.local == r.local);
    return 0;
}
