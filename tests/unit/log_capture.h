/*
 * log_capture.h - a unit test's error log sent to a temporary file, and its lines read back: for
 * tests that count what was logged (each bad record once while it lasts). Include after cmocka.h.
 */
#ifndef FULCRUM_TEST_LOG_CAPTURE_H
#define FULCRUM_TEST_LOG_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"

struct log_capture {
    char path[64];
};

/* From now on the error log goes to a new temporary file. */
static inline void log_capture_start(struct log_capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/fulcrum_test_log_XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_open(c->path), 0);
}

/* The lines logged so far into text (NUL-terminated, cut to size); returns how many. */
static inline unsigned log_capture_lines(const struct log_capture *c, char *text, size_t size)
{
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, size - 1, f);
    text[n] = '\0';
    fclose(f);
    unsigned lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    return lines;
}

/* The log goes back to standard error; the file is removed. */
static inline void log_capture_stop(struct log_capture *c)
{
    assert_int_equal(log_open(NULL), 0);
    unlink(c->path);
}

#endif
