/*
 * mem.c - nghttp2's allocator (mem.h): malloc, except that large blocks are page-aligned and
 * their pages given back before use.
 */
#include "h2/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void)
{
    static size_t page;
    if (!page) {
        long n = sysconf(_SC_PAGESIZE);
        page = n > 0 ? (size_t)n : 4096;
    }
    return page;
}

/* A large block, page-aligned, whose whole pages have no memory behind them (their contents
 * are undefined, as malloc's are). */
static void *lazy_block(size_t size)
{
    size_t page = page_size();
    void *p;
    if (posix_memalign(&p, page, size) != 0)
        return NULL;
    size_t whole = size / page * page;
    /* A failure only costs memory: the block is usable either way. */
    (void)madvise(p, whole, MADV_DONTNEED);
    return p;
}

static void *mem_malloc(size_t size, void *user)
{
    return size >= H2_MEM_LAZY_BYTES ? lazy_block(size) : malloc(size);
}

static void mem_free(void *ptr, void *user)
{
    free(ptr);
}

static void *mem_calloc(size_t n, size_t size, void *user)
{
    return calloc(n, size);
}

/* nghttp2 makes its buffers with realloc(NULL, size) */
static void *mem_realloc(void *ptr, size_t size, void *user)
{
    return ptr ? realloc(ptr, size) : mem_malloc(size, user);
}

static nghttp2_mem mem = {
    .malloc = mem_malloc, .free = mem_free, .calloc = mem_calloc, .realloc = mem_realloc};

nghttp2_mem *h2_mem(void)
{
    (void)page_size(); /* read once, before threads share it */
    return &mem;
}
