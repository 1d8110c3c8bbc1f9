/*
 * admin.h - the admin listener: the HTTP API (/api/...), Prometheus metrics (/metrics) and the
 * dashboard (/). It runs in the control thread, so it reads and changes server state in the one
 * thread that is allowed to change it.
 */
#ifndef FULCRUM_ADMIN_H
#define FULCRUM_ADMIN_H

#include "conf.h"
#include "loop.h"

/* Starts listening if conf enables it. Returns 0, or -1 (logged). */
int admin_start(struct loop *loop, const struct conf_admin *conf);
/* Follows a reload: another address reopens the listener, a new token applies at once. */
void admin_configure(const struct conf_admin *conf);
void admin_stop(void);

/* Is the Authorization header value (NULL if absent) the token? Bearer TOKEN, or Basic with the
 * token as the password. Constant time in the token's length. (Exported for the unit tests.) */
bool admin_authorized(const char *token, const char *authorization, size_t len);

#endif
