/*
 * fuzz_conf.c - libFuzzer target: the YAML configuration loader.
 *
 * Built with FULCRUM_NO_DNS so that host names in the input are never looked up.
 */
#include <stdint.h>
#include <stdlib.h>

#include "conf/conf.h"
#include "core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *errors = NULL;
    log_max_level = -1;
    struct conf *conf = conf_load_string((const char *)data, size, "fuzz.yaml", &errors);
    if (!conf == !errors) /* exactly one of a conf or an error text */
        abort();
    conf_free(conf);
    free(errors);
    return 0;
}
