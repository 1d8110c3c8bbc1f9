/*
 * tickets.h - the keys that encrypt TLS session tickets, the same in every thread and across
 * reloads, rotated by the clock.
 *
 * A ticket lets a returning client resume its session without a full handshake; fulcrum must be
 * able to decrypt what any of its threads issued, before and after a reload. Rather than a key
 * list that threads share and a timer rotates, the keys are derived: from a secret drawn once per
 * process and the number of the current period (TLS_TICKET_PERIOD seconds), with HMAC-SHA256.
 * Every thread computes the same keys with no shared mutable state and no lock; a new period
 * starts a new key by itself. Tickets of the current and the previous period are accepted, those
 * of the previous one are renewed; older ones fall back to a full handshake.
 */
#ifndef FULCRUM_TLS_TICKETS_H
#define FULCRUM_TLS_TICKETS_H

#include <stdint.h>

#define TLS_TICKET_PERIOD 3600 /* seconds a key encrypts new tickets */

struct ssl_ctx_st;

/* Draws the process's secret. Call once, before any context is set up. Returns 0, or -1 if the
 * random generator failed. */
int tls_tickets_init(void);

/* Makes ctx issue and accept tickets with the derived keys (TLS 1.2 and 1.3). Returns 0 or -1. */
int tls_tickets_use(struct ssl_ctx_st *ctx);

/* The key names in use at Unix time now: for tests, which check that they are the same in every
 * thread and change with the period. name is 16 bytes. */
void tls_tickets_name(uint64_t now, unsigned char name[16]);

#endif
