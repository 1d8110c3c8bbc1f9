/*
 * admin_guard.h - refuses admin requests that a web page could have made a browser send.
 *
 * The admin listener trusts whoever can reach it (plus the token, when one is set). A browser on
 * the operator's machine can reach it too, on behalf of any page it shows: by a form post, by a
 * no-cors fetch, or by DNS rebinding, where a name the attacker owns resolves to 127.0.0.1. The
 * browser then attaches the operator's Basic credentials by itself. Three checks, in this order,
 * close those doors, each before the token is even looked at:
 *
 *   1. Host must be a name of this machine: localhost, an IP literal of the machine, or a name in
 *      admin.allowed_hosts. A rebound name is none of those (421).
 *   2. A request from another origin is refused: an Origin that is not the Host the request was
 *      sent to, or, without Origin, Sec-Fetch-Site: cross-site. Navigating to the dashboard from
 *      a link elsewhere stays allowed: it reads nothing back and changes nothing (403).
 *   3. A request that changes anything (any method but GET, HEAD and OPTIONS) must have
 *      Content-Type: application/json, which no page can send to another origin without a CORS
 *      preflight; the preflight itself is refused by check 2, or answered without permission (415).
 *
 * Pure logic on the request's header values, so the unit tests drive every branch; admin.c
 * supplies the values and the test for "an IP address of this machine".
 */
#ifndef FULCRUM_CTL_ADMIN_GUARD_H
#define FULCRUM_CTL_ADMIN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A header field's value; ptr is NULL when the field is absent. */
struct admin_field {
    const char *ptr;
    size_t len;
};

struct admin_guard_request {
    bool changes; /* the method is neither GET, HEAD nor OPTIONS */
    struct admin_field host, origin, fetch_site, fetch_mode, content_type;
};

struct admin_guard_policy {
    char *const *allowed_hosts; /* admin.allowed_hosts: names or IP literals, without a port */
    unsigned nallowed_hosts;
    /* Is this address one of the machine's own? Loopback addresses are accepted before asking. */
    bool (*is_local_ip)(const struct sockaddr *sa);
};

/* 0 if the request may go on, else the status to refuse it with and *why, a sentence for the
 * client. */
unsigned admin_guard_check(const struct admin_guard_policy *policy,
                           const struct admin_guard_request *req, const char **why);

#endif
