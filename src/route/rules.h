/*
 * rules.h - header rules from the configuration (conf_header_rules) in the form the head rewriter
 * applies them (http/rewrite.h struct rewrite_rules): names and values with their lengths, built
 * once per snapshot so that no request measures a string.
 */
#ifndef FULCRUM_ROUTE_RULES_H
#define FULCRUM_ROUTE_RULES_H

#include "conf/conf.h"
#include "http/rewrite.h"

/* Fills *out from *in; the arrays point into in's strings, which must outlive out. Returns -1 if
 * memory ran out (out is then empty). route_rules_free() releases the arrays. */
int route_rules_build(const struct conf_header_rules *in, struct rewrite_rules *out);
void route_rules_free(struct rewrite_rules *r);

/* Does the rule set do anything? */
static inline bool route_rules_empty(const struct rewrite_rules *r)
{
    return !r->nremove && !r->nset && !r->nadd;
}

#endif
