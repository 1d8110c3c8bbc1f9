/*
 * lb.c - the registry of balancing algorithms.
 *
 * The registry maps each `balance` member of the configuration to its struct lb_ops. It is keyed
 * by the configuration's enum, not by names of its own: conf is a lower layer than lb and cannot
 * ask this table whether a name exists, so the names are listed once, in conf.c, where validation
 * reports an unknown one with its file:line:column, and this table only says which
 * implementation each of them has. Adding an algorithm: its name in conf.c (balance_names) and
 * conf.h (enum conf_balance), its lb_ops in a file of its own here, and one line below; test_lb
 * checks that every name the configuration accepts resolves here.
 */
#include "lb/lb.h"

#include <string.h>

static const struct lb_ops *algorithms[CONF_BALANCE_COUNT] = {
    [CONF_BALANCE_ROUND_ROBIN] = &lb_round_robin, [CONF_BALANCE_LEAST_CONN] = &lb_least_conn,
    [CONF_BALANCE_RANDOM] = &lb_random,           [CONF_BALANCE_HASH] = &lb_hash,
    [CONF_BALANCE_PEAK_EWMA] = &lb_peak_ewma,
};

const struct lb_ops *lb_get(enum conf_balance balance)
{
    return (unsigned)balance < CONF_BALANCE_COUNT ? algorithms[balance] : NULL;
}

const struct lb_ops *lb_find(const char *name)
{
    for (unsigned i = 0; i < CONF_BALANCE_COUNT; i++) {
        const char *known = conf_balance_name((enum conf_balance)i);
        if (known && strcmp(known, name) == 0)
            return algorithms[i];
    }
    return NULL;
}

const struct lb_ops *lb_register(enum conf_balance balance, const struct lb_ops *ops)
{
    if ((unsigned)balance >= CONF_BALANCE_COUNT)
        return NULL;
    const struct lb_ops *old = algorithms[balance];
    algorithms[balance] = ops;
    return old;
}
