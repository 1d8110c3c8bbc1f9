/*
 * report.h - the error lines of loading TLS settings, in the configuration's own format
 * ("FILE:LINE:COLUMN: KEY.PATH: message"), collected so that every problem shows at once.
 */
#ifndef FULCRUM_TLS_REPORT_H
#define FULCRUM_TLS_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"

struct tls_report {
    const struct conf *conf;
    char *text; /* lines, each ending in '\n'; NULL: no error yet */
    size_t len;
    bool oom;
};

/* One line at key (a path such as "listeners[0].tls.certificates[1]") and line:column of the
 * file; for a configuration from flags, the line names what instead (e.g. "listener web"). */
__attribute__((format(printf, 6, 7))) void tls_report(struct tls_report *r, const char *key,
                                                      const char *what, int line, int column,
                                                      const char *fmt, ...);

/* The same about the tls mapping of an entry of a list: at "SECTION[INDEX].tls.KEY" (KEY ""
 * for the mapping itself) in the file, or "NOUN NAME" ("listener web") for flags. */
__attribute__((format(printf, 9, 10))) void
tls_report_entry(struct tls_report *r, const char *section, unsigned index, const char *noun,
                 const char *name, const char *key, int line, int column, const char *fmt, ...);

/* OpenSSL's last error as text (its reason), the error queue emptied. */
const char *tls_report_ssl_reason(char *buf, size_t size);

/* path, or the same path inside the configuration file's folder when it is relative. */
const char *tls_report_resolve(const struct conf *conf, const char *path, char *out, size_t size);

#endif
