/*
 * log.c - the error log (see log.h).
 *
 * Format: "2026-11-23T22:31:05.123Z warn  message". Time is UTC so that lines from
 * machines in different zones sort together.
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_max_level = LOG_INFO;
/* Written by the main thread (open, reopen), read by every thread that logs. */
static _Atomic int log_fd = 2;
static char *log_path;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int log_open(const char *path)
{
    if (!path || strcmp(path, "stderr") == 0) {
        int old = atomic_exchange(&log_fd, 2);
        if (old > 2)
            close(old);
        free(log_path);
        log_path = NULL;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    free(log_path);
    log_path = copy;
    /* A thread that loaded the old descriptor may still write one line to it; the file is
     * closed only after the exchange, so that line lands in the old file, not in a reused fd. */
    int old = atomic_exchange(&log_fd, fd);
    if (old > 2)
        close(old);
    return 0;
}

void log_reopen(void)
{
    if (!log_path)
        return;
    char *path = strdup(log_path);
    if (path && log_open(path) < 0)
        log_error("error log %s: cannot reopen: %s", path, strerror(errno));
    free(path);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;

    if ((int)level > log_max_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: keep the newline */
    line[len++] = '\n';
    /* A failed log write has nowhere to be reported; drop it rather than block the caller. */
    ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, len);
    (void)w;
}
