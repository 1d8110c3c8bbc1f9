/*
 * report.c - collecting TLS loading errors (report.h).
 */
#include "tls/report.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tls_report(struct tls_report *r, const char *key, const char *what, int line, int column,
                const char *fmt, ...)
{
    char msg[768], where[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->conf->path)
        snprintf(where, sizeof(where), "%s:%d:%d: %s: ", r->conf->path, line, column, key);
    else
        snprintf(where, sizeof(where), "%s: ", what);
    size_t add = strlen(where) + strlen(msg) + 1;
    char *text = realloc(r->text, r->len + add + 1);
    if (!text) {
        r->oom = true;
        return;
    }
    r->text = text;
    r->len += (size_t)snprintf(text + r->len, add + 1, "%s%s\n", where, msg);
}

void tls_report_entry(struct tls_report *r, const char *section, unsigned index, const char *noun,
                      const char *name, const char *key, int line, int column, const char *fmt, ...)
{
    char msg[768], path[96], what[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s[%u].tls%s%s", section, index, *key ? "." : "", key);
    snprintf(what, sizeof(what), "%s %s", noun, name);
    tls_report(r, path, what, line, column, "%s", msg);
}

const char *tls_report_ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, size, "%s", why ? why : "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

const char *tls_report_resolve(const struct conf *conf, const char *path, char *out, size_t size)
{
    const char *slash = conf->path ? strrchr(conf->path, '/') : NULL;
    if (path[0] == '/' || !slash)
        snprintf(out, size, "%s", path);
    else
        snprintf(out, size, "%.*s/%s", (int)(slash - conf->path), conf->path, path);
    return out;
}
