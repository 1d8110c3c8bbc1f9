/*
 * admin.h - the admin listener: the HTTP API (/api/...), Prometheus metrics (/metrics) and the
 * dashboard (/). It runs in the control thread, so it reads and changes server state in the one
 * thread that is allowed to change it.
 */
#ifndef FULCRUM_ADMIN_H
#define FULCRUM_ADMIN_H

#include "conf/conf.h"
#include "core/loop.h"

struct control_plane;

/* Starts listening if conf enables it; requests are served through plane. Returns 0, or -1
 * (logged). */
int admin_start(struct loop *loop, const struct conf_admin *conf,
                const struct control_plane *plane);
/* Follows a reload: another address reopens the listener, a new token applies at once. */
void admin_configure(const struct conf_admin *conf);
void admin_stop(void);

#endif
