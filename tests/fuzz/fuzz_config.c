/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the routing file loader: arbitrary bytes go through sy_config_parse and
 * every diagnostic is formatted, so the sanitizers see the whole path, errors included. Name
 * resolution is turned off (a non-numeric endpoint is then an error), which keeps each run
 * offline and deterministic. */
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    sy_config_set_resolve(false);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sy_diags diags;
    sy_diags_init(&diags);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("fuzz.yaml", (const char *)data, size, &diags, &cfg);
    /* The contract: success means a config and no diagnostics, failure the reverse. */
    if ((rc == SY_OK) != (cfg != NULL) || (rc == SY_OK) != (diags.n == 0))
        __builtin_trap();
    for (size_t i = 0; i < diags.n; i++) {
        char buf[512];
        sy_diag_format(&diags.v[i], buf, sizeof(buf));
    }
    sy_config_free(cfg);
    sy_diags_dispose(&diags);
    return 0;
}
