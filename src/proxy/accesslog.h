/*
 * accesslog.h - one line per request, written without ever making a request wait for a disk.
 *
 * Each worker formats its lines into its own buffer (struct accesslog_buf). A full buffer, or any
 * buffer once a second, is handed to a writer thread through a short mutex-protected queue; that
 * thread alone calls write(). If the writer falls behind by more than access_log.max_backlog (a
 * stalled disk, a reader that does not read stdout), new lines are dropped and counted
 * (accesslog_dropped) instead of piling up.
 *
 * SIGUSR1 makes the writer reopen its file, for logrotate.
 */
#ifndef FULCRUM_ACCESSLOG_H
#define FULCRUM_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"

/* What one line says. Strings are (pointer, length) pairs; NULL means unknown. A TCP mode
 * connection (proxy/tcp.c) is a line too: version 0, no method, target or status (0). */
struct accesslog_entry {
    uint64_t start_wall_us; /* when the request began, wall clock */
    const struct sockaddr *client;
    const char *method, *target, *user_agent, *referer;
    size_t method_len, target_len, user_agent_len, referer_len;
    uint8_t version; /* 10 or 11; 0: a TCP mode connection (protocol "TCP") */
    uint16_t status; /* 0: no response was sent */
    uint64_t bytes_in, bytes_out;
    const char *pool, *server;
    const char *route;   /* the route the request matched; NULL: none */
    const char *balance; /* the pool's algorithm ("round-robin"); NULL: no pool */
    bool spilled;        /* hash with bounded load sent it past its key's own server */
    /* milliseconds (fractional); negative: did not happen */
    double queue_ms, connect_ms, response_ms, total_ms;
    unsigned retries;
    const char *termination;
};

/* Starts the writer thread if conf enables the access log. Returns 0, or -1 (logged). */
int accesslog_start(const struct conf_access_log *conf);
/* Follows a reload: another path reopens, a removed access log stops accepting lines. */
void accesslog_configure(const struct conf_access_log *conf);
/* SIGUSR1: reopen the file at the next opportunity. */
void accesslog_reopen(void);
/* Writes what is queued and stops the writer. */
void accesslog_stop(void);
bool accesslog_enabled(void);
uint64_t accesslog_dropped(void);

struct accesslog_buf;
struct accesslog_buf *accesslog_buf_new(void);
void accesslog_buf_free(struct accesslog_buf *b);
void accesslog_add(struct accesslog_buf *b, const struct accesslog_entry *e,
                   enum conf_log_format format);
/* Hands whatever b holds to the writer (called once a second by each worker). */
void accesslog_flush(struct accesslog_buf *b);

#endif
