/*
 * rules.c - header rules built for the rewriter (see rules.h).
 */
#include "route/rules.h"

#include <stdlib.h>
#include <string.h>

static struct rewrite_field *fields_of(const struct conf_header *v, unsigned n)
{
    struct rewrite_field *out = calloc(n, sizeof(*out));
    for (unsigned i = 0; out && i < n; i++)
        out[i] = (struct rewrite_field){.name = v[i].name,
                                        .name_len = strlen(v[i].name),
                                        .value = v[i].value,
                                        .value_len = strlen(v[i].value)};
    return out;
}

int route_rules_build(const struct conf_header_rules *in, struct rewrite_rules *out)
{
    *out = (struct rewrite_rules){0};
    struct rewrite_field *set = in->nset ? fields_of(in->set, in->nset) : NULL;
    struct rewrite_field *add = in->nadd ? fields_of(in->add, in->nadd) : NULL;
    struct rewrite_field *remove = in->nremove ? calloc(in->nremove, sizeof(*remove)) : NULL;
    if ((in->nset && !set) || (in->nadd && !add) || (in->nremove && !remove)) {
        free(set);
        free(add);
        free(remove);
        return -1;
    }
    for (unsigned i = 0; i < in->nremove; i++)
        remove[i] =
            (struct rewrite_field){.name = in->remove[i], .name_len = strlen(in->remove[i])};
    *out = (struct rewrite_rules){.remove = remove,
                                  .nremove = in->nremove,
                                  .set = set,
                                  .nset = in->nset,
                                  .add = add,
                                  .nadd = in->nadd};
    return 0;
}

void route_rules_free(struct rewrite_rules *r)
{
    /* The arrays were allocated here; the const is for the rewriter's sake. */
    free((void *)r->remove);
    free((void *)r->set);
    free((void *)r->add);
    *r = (struct rewrite_rules){0};
}
