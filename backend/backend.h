/*
 * backend.h - what the two halves of fulcrum-backend share.
 *
 * backend.c is the server: command line, listener, signals, and the per-connection state machine
 * that reads requests and writes responses. controls.c is everything that decides *what* to
 * answer without doing I/O: the test controls of a request (query parameters and X-Test-*
 * headers), the CRC-32 of request bodies, the body pattern, and the --help text.
 */
#ifndef FULCRUM_BACKEND_H
#define FULCRUM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"

/* What to do once the request body has been read. */
enum be_action {
    BE_RESPOND = 0, /* a normal response */
    BE_RESET,       /* reset=1: RST without answering */
    BE_HANG,        /* hang=1: never answer */
    BE_GARBAGE,     /* garbage=1: an invalid status line, then close */
};

enum be_framing {
    BE_FRAME_LENGTH = 0, /* Content-Length */
    BE_FRAME_CHUNKED,    /* Transfer-Encoding: chunked */
    BE_FRAME_CLOSE,      /* neither: the body ends when the connection closes */
};

/* Which built-in resource the path names. */
enum be_route {
    BE_ROUTE_HELLO = 0,
    BE_ROUTE_HEALTH,      /* GET/HEAD /healthcheck */
    BE_ROUTE_HEALTH_FAIL, /* POST /healthcheck/fail */
    BE_ROUTE_HEALTH_OK,   /* POST /healthcheck/ok */
    BE_ROUTE_STATS,       /* GET/HEAD /stats */
    BE_ROUTE_SLOW,        /* POST /slow?delay=MS: every later hello waits MS (0: none) */
};

#define BE_DEFAULT_CHUNK 16384
#define BE_MAX_SIZE      (1ull << 40)
#define BE_ERROR_TEXT    256

/* The response a request asked for: its route and test controls, validated. */
struct be_plan {
    uint8_t action;  /* enum be_action */
    uint8_t framing; /* enum be_framing */
    uint8_t route;   /* enum be_route */
    bool has_status, has_size, has_reset_after;
    bool trailers, close, echo;
    uint16_t status;  /* with has_status */
    uint16_t interim; /* 0: none */
    uint64_t size, chunk, delay_ms, drip_ms, reset_after;
    /* A control was invalid: answer 400 with this text instead. */
    bool bad;
    char error[BE_ERROR_TEXT];
};

/*
 * Fills plan from a parsed request head (buf is the buffer the head was parsed in). Never fails:
 * an invalid control sets plan->bad and plan->error.
 */
void be_plan_request(struct be_plan *plan, const struct http1_msg *msg, const char *buf);

/* Standard reason phrase, with a few codes http1_reason() does not know; "" if none. */
const char *be_reason(unsigned status);

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320). Start with crc = BE_CRC_INIT, finish with ~crc. */
#define BE_CRC_INIT 0xFFFFFFFFu
void be_crc32_init(void);
uint32_t be_crc32_update(uint32_t crc, const void *data, size_t len);

/*
 * Body pattern: byte i of a generated body is 'a' + i % 26. be_pattern_init() prepares a table
 * of max_piece + 26 bytes so that any piece of up to max_piece bytes is one memcpy.
 */
int be_pattern_init(size_t max_piece);
void be_pattern_free(void);
void be_pattern_fill(char *dst, uint64_t offset, size_t len);

extern const char be_help_text[];

#endif
