/*
 * log.h - the error log: one line per event, with a level, to stderr by default.
 *
 * Every message is formatted into one buffer and written with a single write(2), so lines from
 * different threads never interleave. Messages below the configured level cost one comparison.
 * The access log (per-request lines) is a separate concern and does not go through here.
 */
#ifndef FULCRUM_LOG_H
#define FULCRUM_LOG_H

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

extern int log_max_level;

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);

/* Sends further lines to the file at path (appended; "stderr" or NULL: standard error).
 * Returns 0, or -1 with errno set (lines keep going where they went). */
int log_open(const char *path);
/* SIGUSR1: opens the same path again, for logrotate. */
void log_reopen(void);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)                                                                              \
    do {                                                                                           \
        if (log_max_level >= LOG_WARN)                                                             \
            log_write(LOG_WARN, __VA_ARGS__);                                                      \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_max_level >= LOG_INFO)                                                             \
            log_write(LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_max_level >= LOG_DEBUG)                                                            \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
