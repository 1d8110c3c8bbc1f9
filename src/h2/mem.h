/*
 * mem.h - the allocator nghttp2 sessions use (session.c): the C library's, except that a large
 * block starts out without memory behind it.
 *
 * Each nghttp2 session allocates a 16 KiB frame buffer when it is created and keeps it for its
 * whole life, though an idle connection, or one that only ever sends small frames, writes to the
 * first page of it at most. malloc() hands out heap pages that earlier blocks already touched,
 * so every idle HTTP/2 connection would cost those 16 KiB. Large blocks are page-aligned here
 * and their pages handed back to the kernel (MADV_DONTNEED) before nghttp2 gets them: a page
 * costs memory again only once something is written to it.
 */
#ifndef FULCRUM_H2_MEM_H
#define FULCRUM_H2_MEM_H

#include <nghttp2/nghttp2.h>

/* Blocks of at least this size start without memory behind them. */
#define H2_MEM_LAZY_BYTES 8192

/* The allocator for nghttp2_session_server_new3(); static, shared by every thread. */
nghttp2_mem *h2_mem(void);

#endif
