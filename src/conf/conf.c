/*
 * conf.c - turns a YAML file (or the quick-start flags) into a validated struct conf (see conf.h).
 *
 * How the pieces fit:
 *   - libyaml's document API loads the whole input into a node tree first. A syntax error stops
 *     there with one message; otherwise every node keeps its line and column for later messages.
 *   - The tree is walked by schema tables: one table per kind of YAML mapping, one row per key,
 *     naming the handler that parses the value and where it goes in the struct (offsetof). A new
 *     key is one row; a nested mapping or a sequence of mappings is a row that points at another
 *     table. Unknown keys, duplicate keys, missing required keys and wrong node types are found by
 *     the walker itself, so handlers only deal with their own value.
 *   - Nothing stops at the first problem: each one is recorded with its position and the key path
 *     (kept in struct ctx while walking) and the walk goes on.
 *   - A table's init hook sets an entry's defaults before it is parsed; its finish hook fills the
 *     defaults that depend on other keys (a pool's health-check timeout follows its interval)
 *     and runs checks across the keys of one mapping. conf_finish() completes the quick-start
 *     pool the same way.
 *   - validate() then runs the checks that span several entries (unique names and addresses, pool
 *     references). It works on the structs, so a conf built by the flag helpers gets the same
 *     checks; for a file it looks the entries up in the node tree again to point at the value.
 *   - Errors are sorted by position at the end, so they read in document order whichever phase
 *     found them.
 */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <regex.h>
#include <string.h>

#include <yaml.h>

#include "core/log.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_FIELDS    32          /* keys in one schema table (checked at compile time) */
#define PATH_SIZE     256         /* longest key path shown; longer ones are cut */
#define ESC_SIZE      96          /* longest value quoted in a message */
#define MAX_ITEMS     65536       /* listeners, pools and servers together */
#define MAX_FILE_SIZE (16u << 20) /* a configuration, not a data file */
#define DAY_MS        86400000u
#define HOUR_MS       3600000u
#define CHECK_MIN_MS  10u /* shortest health-check interval or timeout */
#define DEFAULT_POOL  "default"
#define DEFAULT_ADMIN "127.0.0.1:9900"

/* Integer handlers store through uint32_t whatever the member is declared as (unsigned). */
_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "unsigned must be 32 bits");

struct error {
    int line, column;
    unsigned seq; /* keeps errors at the same position in the order they were found */
    char *text;
};

struct ctx {
    const char *file; /* name used in messages; NULL for flag-built configs (no positions) */
    const char *text; /* the input, to turn a reader error's byte offset into a line */
    size_t len;
    yaml_document_t *doc; /* NULL outside a file load */
    char path[PATH_SIZE]; /* key path of the node being parsed, e.g. "pools[0].servers[1]" */
    size_t plen;
    struct error *errors;
    size_t nerrors, cap;
    bool oom, too_many;
    size_t items; /* sequence entries allocated so far, bounded by MAX_ITEMS */
};

/* ---- messages ---- */

/*
 * Copies a value for a message: control characters become \xNN so that one error can never span
 * lines or carry terminal escapes, and a long value is cut with "...".
 */
static const char *escape(char *out, size_t size, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c < 0x20 || c == 0x7f) ? 4 : 1;
        if (o + need + 4 > size) {    /* keep room for "..." and the NUL */
            if ((c & 0xc0) == 0x80) { /* do not leave half a UTF-8 character */
                while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
                    o--;
                if (o > 0 && (unsigned char)out[o - 1] >= 0xc0)
                    o--;
            }
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 4)
            snprintf(out + o, 5, "\\x%02x", c);
        else
            out[o] = (char)c;
        o += need;
    }
    out[o] = '\0';
    return out;
}

#define PRINTF(f, a) __attribute__((format(printf, f, a)))

static PRINTF(5, 0) void verror_at(struct ctx *ctx, int line, int column, const char *path,
                                   const char *fmt, va_list ap)
{
    char msg[1024];
    char *text;
    int n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    const char *sep = *path ? ": " : "";
    if (ctx->file)
        n = asprintf(&text, "%s:%d:%d: %s%s%s", ctx->file, line, column, path, sep, msg);
    else
        n = asprintf(&text, "%s%s%s", path, sep, msg);
    if (n < 0) {
        ctx->oom = true;
        return;
    }
    if (ctx->nerrors == ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap * 2 : 8;
        struct error *v = realloc(ctx->errors, cap * sizeof(*v));
        if (!v) {
            free(text);
            ctx->oom = true;
            return;
        }
        ctx->errors = v;
        ctx->cap = cap;
    }
    ctx->errors[ctx->nerrors] = (struct error){line, column, (unsigned)ctx->nerrors, text};
    ctx->nerrors++;
}

static PRINTF(5, 6) void error_at(struct ctx *ctx, int line, int column, const char *path,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ctx, line, column, path, fmt, ap);
    va_end(ap);
}

static int line_of(const yaml_node_t *node)
{
    return (int)node->start_mark.line + 1;
}

static int column_of(const yaml_node_t *node)
{
    return (int)node->start_mark.column + 1;
}

/* An error about node, at the key path being walked. */
static PRINTF(3, 4) void node_error(struct ctx *ctx, const yaml_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(ctx, line_of(node), column_of(node), ctx->path, fmt, ap);
    va_end(ap);
}

static int cmp_errors(const void *a, const void *b)
{
    const struct error *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Hands the collected errors to the caller as one string. Returns 0 if there were none, else -1. */
static int finish_errors(struct ctx *ctx, char **errors)
{
    char *out = NULL;
    size_t size;
    int rc = (ctx->nerrors || ctx->oom) ? -1 : 0;

    if (ctx->nerrors)
        qsort(ctx->errors, ctx->nerrors, sizeof(*ctx->errors), cmp_errors);
    FILE *m = rc < 0 && !ctx->oom ? open_memstream(&out, &size) : NULL;
    for (size_t i = 0; i < ctx->nerrors; i++) {
        if (m) /* newline-separated: none after the last line */
            fprintf(m, "%s%s", i ? "\n" : "", ctx->errors[i].text);
        free(ctx->errors[i].text);
    }
    free(ctx->errors);
    *ctx = (struct ctx){0};
    if (m) {
        bool bad = ferror(m); /* a failed fprintf() leaves its mark here */
        if (fclose(m) != 0 || bad) {
            free(out);
            out = NULL;
        }
    }
    if (rc < 0 && !out)
        out = strdup("out of memory");
    if (errors)
        *errors = out;
    else
        free(out);
    return rc;
}

/* For the flag helpers and file errors: one malloc'ed message, and -1 to return. */
static PRINTF(2, 3) int fail(char **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (error && vasprintf(error, fmt, ap) < 0)
        *error = NULL;
    va_end(ap);
    return -1;
}

/* ---- key path ---- */

/* Appends to the key path; returns the old length for path_pop(). Overlong paths are cut. */
static PRINTF(2, 3) size_t path_push(struct ctx *ctx, const char *fmt, ...)
{
    size_t old = ctx->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ctx->path + old, sizeof(ctx->path) - old, fmt, ap);
    va_end(ap);
    if (n > 0)
        ctx->plen = old + (size_t)n < sizeof(ctx->path) ? old + (size_t)n : sizeof(ctx->path) - 1;
    return old;
}

static size_t path_push_key(struct ctx *ctx, const char *key, size_t len)
{
    char shown[ESC_SIZE];
    return path_push(ctx, "%s%s", ctx->plen ? "." : "", escape(shown, sizeof(shown), key, len));
}

static void path_pop(struct ctx *ctx, size_t old)
{
    ctx->plen = old;
    ctx->path[old] = '\0';
}

/* ---- numbers, durations, sizes ---- */

enum { NUM_OK = 0, NUM_BAD = -1, NUM_BIG = 1, NUM_NO_UNIT = 2 };

struct unit {
    const char *suffix;
    uint32_t scale;
};

static const struct unit plain_units[] = {{"", 1}, {NULL, 0}};
static const struct unit size_units[] = {{"", 1},        {"k", 1024},    {"K", 1024},
                                         {"m", 1048576}, {"M", 1048576}, {NULL, 0}};
static const struct unit time_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0}};

/*
 * Decimal digits then one of units' suffixes; nothing else (no sign, space, hex or fraction).
 * NUM_BIG: well formed but over limit. NUM_NO_UNIT: bare digits where a suffix is needed.
 */
static int parse_scaled(const char *s, const struct unit *units, uint64_t limit, uint64_t *out)
{
    size_t n = strspn(s, "0123456789");
    uint64_t v = 0;
    bool big = false;

    if (n == 0)
        return NUM_BAD;
    for (size_t i = 0; i < n && !big; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        big = v > UINT32_MAX; /* stop long before 64 bits could wrap */
    }
    for (; units->suffix; units++) {
        if (strcmp(s + n, units->suffix) == 0) {
            if (big || v * units->scale > limit)
                return NUM_BIG;
            *out = v * units->scale;
            return NUM_OK;
        }
    }
    return s[n] ? NUM_BAD : NUM_NO_UNIT;
}

static int duration_ms(const char *s, uint64_t *ms)
{
    if (strcmp(s, "0") == 0) { /* the one duration that needs no unit */
        *ms = 0;
        return NUM_OK;
    }
    return parse_scaled(s, time_units, DAY_MS, ms);
}

int conf_parse_duration(const char *text, uint32_t *ms)
{
    uint64_t v;
    if (!text || duration_ms(text, &v) != NUM_OK)
        return -1;
    *ms = (uint32_t)v;
    return 0;
}

int conf_parse_size(const char *text, uint32_t *bytes)
{
    uint64_t v;
    if (!text || parse_scaled(text, size_units, UINT32_MAX, &v) != NUM_OK)
        return -1;
    *bytes = (uint32_t)v;
    return 0;
}

/* A duration in the largest unit that divides it exactly: "24h", "90s", "10ms". */
static const char *format_duration(char *out, size_t size, uint32_t ms)
{
    static const struct unit units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t i = 0;
    while (ms != 0 && ms % units[i].scale != 0)
        i++;
    if (ms == 0)
        snprintf(out, size, "0");
    else
        snprintf(out, size, "%u%s", ms / units[i].scale, units[i].suffix);
    return out;
}

/*
 * A duration that must lie in min..max, for a key or a flag. Returns NUM_OK with *ms set, or
 * another NUM_ value with the reason in why. For NUM_BAD the reason does not repeat the text.
 */
static int check_duration(const char *s, uint32_t min, uint32_t max, uint32_t *ms, char *why,
                          size_t size)
{
    char limit[32];
    uint64_t v = 0;
    int r = duration_ms(s, &v);

    if (r == NUM_OK && v >= min && v <= max) {
        *ms = (uint32_t)v;
        return NUM_OK;
    }
    if (r == NUM_BAD)
        snprintf(why, size, "expected a duration such as 500ms, 2s, 1m or 1h");
    else if (r == NUM_NO_UNIT)
        snprintf(why, size, "a duration needs a unit, e.g. 500ms, 2s, 1m");
    else if (r == NUM_OK && v < min && min == 1)
        snprintf(why, size, "must be greater than 0");
    else if (r == NUM_OK && v < min)
        snprintf(why, size, "must be at least %s", format_duration(limit, sizeof(limit), min));
    else /* over max, or over the 24 hours any duration is limited to */
        snprintf(why, size, "must be at most %s", format_duration(limit, sizeof(limit), max));
    return r == NUM_OK ? NUM_BIG : r;
}

/* ---- HTTP status sets ---- */

#define STATUS_MIN  100
#define STATUS_MAX  599
#define STATUS_WHAT "a status code such as 200 or a range such as 200-399"

static void status_add(struct conf_status_set *set, unsigned low, unsigned high)
{
    for (unsigned c = low; c <= high; c++)
        set->bits[c / 64] |= UINT64_C(1) << (c % 64);
}

/* Digits at *p, advancing it. Values over 9999 are kept as 9999: out of range either way. */
static bool status_digits(const char **p, unsigned *v)
{
    size_t n = strspn(*p, "0123456789");
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = *v > 999 ? 9999 : *v * 10 + (unsigned)((*p)[i] - '0');
    *p += n;
    return n > 0;
}

/* "200" or "200-299" into set; NULL, or why not (a message that shows s itself). */
static const char *status_item(const char *s, struct conf_status_set *set, char *why, size_t size)
{
    char shown[ESC_SIZE];
    const char *p = s;
    unsigned low, high;
    bool range = false;

    escape(shown, sizeof(shown), s, strlen(s));
    if (!status_digits(&p, &low))
        goto bad;
    high = low;
    if (*p == '-') {
        p++;
        range = true;
        if (!status_digits(&p, &high))
            goto bad;
    }
    if (*p)
        goto bad;
    if (low < STATUS_MIN || low > STATUS_MAX || high < STATUS_MIN || high > STATUS_MAX)
        snprintf(why, size, "invalid status %s \"%s\" (codes are %d-%d)", range ? "range" : "code",
                 shown, STATUS_MIN, STATUS_MAX);
    else if (low > high)
        snprintf(why, size, "invalid status range \"%s\"", shown);
    else {
        status_add(set, low, high);
        return NULL;
    }
    return why;
bad:
    snprintf(why, size, "expected " STATUS_WHAT ", found \"%s\"", shown);
    return why;
}

/* ---- schema ---- */

struct field;
typedef void parse_fn(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f);

struct field {
    const char *key;
    parse_fn *parse;
    size_t offset;  /* where the value goes in the object */
    size_t offset2; /* a second destination: the parsed address, or a sequence's count */
    uint32_t min, max;
    const struct number *num;            /* for parse_number */
    const struct enumeration *names;     /* for parse_enum */
    const char *(*check)(const char *s); /* for parse_string: NULL if s is valid, else why not */
    bool secret;                         /* parse_string: never show the value in a message */
    bool required;
    const struct schema *sub; /* a nested mapping, or the entries of a sequence */
};

struct schema {
    const struct field *fields;
    size_t nfields;
    size_t size;                 /* size of one entry, for sequences of mappings */
    size_t line_off, column_off; /* where an entry records its position */
    void (*init)(void *obj);     /* defaults set before an entry is parsed */
    /* Defaults that need the rest, and checks across keys. node is the mapping (or whatever
     * stood in its place). A sequence entry's runs always; a nested mapping's only if every one
     * of its keys was accepted. */
    void (*finish)(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index);
};

static void store(void *obj, size_t offset, const void *value, size_t size)
{
    /* memcpy rather than a cast pointer: the member's declared type varies by table row. */
    memcpy((char *)obj + offset, value, size);
}

static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE)
        return false;
    if (node->tag && strcmp((const char *)node->tag, YAML_NULL_TAG) == 0)
        return true;
    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false; /* "" and 'null' are strings */
    const char *v = (const char *)node->data.scalar.value;
    return node->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *node_kind(const yaml_node_t *node)
{
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE)
        return "a sequence";
    return is_null(node) ? "an empty value" : "a scalar";
}

static yaml_node_t *get_node(struct ctx *ctx, int index)
{
    return ctx->doc ? yaml_document_get_node(ctx->doc, index) : NULL;
}

/* The text of a scalar node, or NULL (error reported) if node is anything else. */
static const char *scalar_value(struct ctx *ctx, const yaml_node_t *node, const char *what)
{
    if (node->type != YAML_SCALAR_NODE || is_null(node)) {
        node_error(ctx, node, "expected %s, found %s", what, node_kind(node));
        return NULL;
    }
    const char *s = (const char *)node->data.scalar.value;
    if (strlen(s) != node->data.scalar.length) { /* "\0" escape: C strings would cut it */
        node_error(ctx, node, "must not contain a NUL character");
        return NULL;
    }
    return s;
}

static void quoted_error(struct ctx *ctx, const yaml_node_t *node, const char *what, const char *s)
{
    char shown[ESC_SIZE];
    node_error(ctx, node, "expected %s, found \"%s\"", what,
               escape(shown, sizeof(shown), s, strlen(s)));
}

/* How a number field is written; picked per table row. */
struct number {
    const struct unit *units;
    const char *what;      /* for "expected ..., found" */
    const char *range_end; /* after "must be between MIN and MAX" */
};

static const struct number num_integer = {plain_units, "an integer", ""};
static const struct number num_size = {size_units, "a size such as 16384, 16k or 1m", " bytes"};
static const struct number num_duration = {time_units, "a duration such as 500ms, 2s, 1m or 1h",
                                           ""};

static void parse_number(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    const struct number *k = f->num;
    const char *s = scalar_value(ctx, node, k->what);
    char why[128];
    uint64_t v = 0;
    uint32_t ms;

    if (!s)
        return;
    if (k == &num_duration) {
        int r = check_duration(s, f->min, f->max, &ms, why, sizeof(why));
        if (r == NUM_OK)
            store(obj, f->offset, &ms, sizeof(ms));
        else if (r == NUM_BAD)
            quoted_error(ctx, node, k->what, s);
        else
            node_error(ctx, node, "%s", why);
        return;
    }
    int r = parse_scaled(s, k->units, UINT32_MAX, &v);
    if (r == NUM_BAD || r == NUM_NO_UNIT)
        quoted_error(ctx, node, k->what, s);
    else if (r == NUM_OK && v >= f->min && v <= f->max)
        store(obj, f->offset, &(uint32_t){(uint32_t)v}, sizeof(uint32_t));
    else
        node_error(ctx, node, "must be between %u and %u%s", f->min, f->max, k->range_end);
}

/* Stores a copy of s as the char * at offset. */
static bool store_copy(struct ctx *ctx, void *obj, size_t offset, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        ctx->oom = true;
    else
        store(obj, offset, &copy, sizeof(copy));
    return copy != NULL;
}

/* A non-empty string; a row's check function may limit it further. */
static void parse_string(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    const char *s = scalar_value(ctx, node, "a string");
    const char *why = s && *s && f->check ? f->check(s) : NULL;
    char shown[ESC_SIZE];

    if (s && !*s)
        node_error(ctx, node, "must not be empty");
    else if (why && f->secret)
        node_error(ctx, node, "%s", why);
    else if (why)
        node_error(ctx, node, "%s, found \"%s\"", why, escape(shown, sizeof(shown), s, strlen(s)));
    else if (s)
        store_copy(ctx, obj, f->offset, s);
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Checks for parse_string rows (and the flags): NULL if s is acceptable, else why not. */

static const char *method_problem(const char *s)
{
    for (; *s; s++) /* an RFC 9110 token: tchar only */
        if (!is_alnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return "must be a token (letters, digits and !#$%&'*+-.^_`|~)";
    return NULL;
}

/* Only visible ASCII: no spaces, control characters or bytes above 0x7e. */
static bool all_visible(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static const char *path_problem(const char *s)
{
    if (*s != '/')
        return "must start with '/'";
    return all_visible(s) ? NULL : "must contain only visible ASCII characters (no spaces)";
}

static const char *host_problem(const char *s)
{
    for (; *s; s++)
        if (!is_alnum((unsigned char)*s) && !strchr("-._~%!$&'()*+,;=:[]", *s))
            return "must contain only letters, digits and -._~%!$&'()*+,;=:[]";
    return NULL;
}

/* An admin.allowed_hosts entry: a host name or IP literal as a Host field carries it, no port. */
static const char *allowed_host_problem(const char *s)
{
    if (*s == '[')
        return strchr(s, ']') && strchr(s, ']')[1] == '\0'
                   ? NULL
                   : "must be a host name or IP address without a port";
    for (; *s; s++)
        if (*s == ':')
            return "must be a host name or IP address without a port";
        else if (!is_alnum((unsigned char)*s) && !strchr("-._", *s))
            return "must be a host name (letters, digits, '-', '_' and '.') or an IP address";
    return NULL;
}

/* An ALPN protocol name (RFC 7301): 1-255 bytes; fulcrum takes visible ASCII only. */
static const char *alpn_problem(const char *s)
{
    if (strlen(s) > 255)
        return "must be at most 255 characters";
    return all_visible(s) ? NULL : "must contain only visible ASCII characters, such as http/1.1";
}

/* An OpenSSL cipher list; OpenSSL itself judges the names when the listener is set up. */
static const char *cipher_list_problem(const char *s)
{
    for (; *s; s++)
        if (!is_alnum((unsigned char)*s) && !strchr("-_:!+@=,. ", *s))
            return "must be an OpenSSL cipher list such as ECDHE-ECDSA-AES128-GCM-SHA256:"
                   "ECDHE-RSA-AES128-GCM-SHA256";
    return NULL;
}

/* The admin token is compared with what a client sends in the Authorization field. */
static const char *token_problem(const char *s)
{
    return all_visible(s) ? NULL
                          : "must contain only visible ASCII characters, no spaces or control "
                            "characters (it is sent in an HTTP header)";
}

/* A file path, or "stderr"; "stdout" is where the access log goes, never the error log. */
static const char *error_log_problem(const char *s)
{
    if (strcmp(s, "stdout") == 0)
        return "must be a file or stderr (write ./stdout for a file of that name)";
    return NULL;
}

/* An address: the text goes to offset, the parsed struct net_addr to offset2. */
static void parse_address(struct ctx *ctx, const yaml_node_t *node, void *obj,
                          const struct field *f)
{
    const char *s = scalar_value(ctx, node, "an address (host:port)");
    struct net_addr addr;
    char shown[ESC_SIZE];
    const char *why;

    if (!s)
        return;
    if (net_parse_addr(s, &addr, &why) < 0)
        node_error(ctx, node, "\"%s\": %s", escape(shown, sizeof(shown), s, strlen(s)), why);
    else if (store_copy(ctx, obj, f->offset, s))
        store(obj, f->offset2, &addr, sizeof(addr));
}

static void parse_log_level(struct ctx *ctx, const yaml_node_t *node, void *obj,
                            const struct field *f)
{
    const char *s = scalar_value(ctx, node, "a log level");
    if (!s)
        return;
    int level = log_level_parse(s);
    if (level < 0)
        quoted_error(ctx, node, "one of: error, warn, info, debug", s);
    else
        store(obj, f->offset, &level, sizeof(level));
}

/* The words an enum member may be written as, indexed by value. */
struct enumeration {
    const char *what; /* for "expected ..., found a mapping" */
    const char *names[6];
};

/* The one list of balancing algorithm names (see conf.h): lb/lb.c's registry maps each to its
 * implementation, and test_lb checks that every name here has one. */
static const struct enumeration balance_names = {"a balancing method",
                                                 {[CONF_BALANCE_ROUND_ROBIN] = "round-robin",
                                                  [CONF_BALANCE_LEAST_CONN] = "least-conn",
                                                  [CONF_BALANCE_RANDOM] = "random",
                                                  [CONF_BALANCE_HASH] = "hash",
                                                  [CONF_BALANCE_PEAK_EWMA] = "peak-ewma"}};
_Static_assert(CONF_BALANCE_COUNT <= ARRAY_LEN(balance_names.names), "room for every name");

const char *conf_balance_name(enum conf_balance balance)
{
    return (unsigned)balance < CONF_BALANCE_COUNT ? balance_names.names[balance] : NULL;
}
static const char *const hash_key_names[] = {
    [CONF_HASH_CLIENT_IP] = "client_ip", [CONF_HASH_HEADER] = "header",
    [CONF_HASH_COOKIE] = "cookie",       [CONF_HASH_QUERY] = "query",
    [CONF_HASH_PATH] = "path",           [CONF_HASH_URI] = "uri"};

const char *conf_hash_key_name(enum conf_hash_key key)
{
    return (unsigned)key < ARRAY_LEN(hash_key_names) ? hash_key_names[key] : NULL;
}

static const struct enumeration samesite_names = {"lax, strict or none",
                                                  {[CONF_SAMESITE_LAX] = "lax",
                                                   [CONF_SAMESITE_STRICT] = "strict",
                                                   [CONF_SAMESITE_NONE] = "none"}};

/* hash_key: client_ip, path or uri, or header:NAME, cookie:NAME, query:NAME. The kind goes to
 * offset, the name (a copy) to the char * at offset2. */
static void parse_hash_key(struct ctx *ctx, const yaml_node_t *node, void *obj,
                           const struct field *f)
{
    static const char want[] = "client_ip, path, uri, header:NAME, cookie:NAME or query:NAME";
    const char *s = scalar_value(ctx, node, want);
    if (!s)
        return;
    const char *colon = strchr(s, ':');
    size_t kind_len = colon ? (size_t)(colon - s) : strlen(s);
    for (int i = 0; i < (int)ARRAY_LEN(hash_key_names); i++) {
        if (strlen(hash_key_names[i]) != kind_len || memcmp(s, hash_key_names[i], kind_len) != 0)
            continue;
        bool named = i == CONF_HASH_HEADER || i == CONF_HASH_COOKIE || i == CONF_HASH_QUERY;
        if (named && (!colon || !colon[1])) {
            node_error(ctx, node, "%s needs a name: %s:NAME", hash_key_names[i], hash_key_names[i]);
            return;
        }
        if (!named && colon) {
            node_error(ctx, node, "%s takes no name", hash_key_names[i]);
            return;
        }
        const char *why = named && i != CONF_HASH_QUERY ? method_problem(colon + 1)
                          : named && !all_visible(colon + 1)
                              ? "must contain only visible ASCII characters"
                              : NULL;
        if (why) {
            node_error(ctx, node, "the name %s", why);
            return;
        }
        if (named && !store_copy(ctx, obj, f->offset2, colon + 1))
            return;
        store(obj, f->offset, &i, sizeof(i));
        return;
    }
    quoted_error(ctx, node, want, s);
}
static const struct enumeration check_type_names = {
    "a check type",
    {[CONF_CHECK_HTTP] = "http", [CONF_CHECK_TCP] = "tcp", [CONF_CHECK_GRPC] = "grpc"}};
static const struct enumeration all_down_names = {
    "reject or use-all", {[CONF_ALL_DOWN_REJECT] = "reject", [CONF_ALL_DOWN_USE_ALL] = "use-all"}};
static const struct enumeration log_format_names = {
    "a log format", {[CONF_LOG_JSON] = "json", [CONF_LOG_COMBINED] = "combined"}};
static const struct enumeration underscores_names = {"drop, allow or reject",
                                                     {[CONF_UNDERSCORES_DROP] = "drop",
                                                      [CONF_UNDERSCORES_ALLOW] = "allow",
                                                      [CONF_UNDERSCORES_REJECT] = "reject"}};

static const struct enumeration listener_mode_names = {
    "http or tcp", {[CONF_MODE_HTTP] = "http", [CONF_MODE_TCP] = "tcp"}};
static const struct enumeration pool_protocol_names = {
    "http1 or h2", {[CONF_POOL_HTTP1] = "http1", [CONF_POOL_H2] = "h2"}};
static const struct enumeration proxy_send_names = {
    "v1 or v2 (or none)",
    {[CONF_PROXY_SEND_NONE] = "none", [CONF_PROXY_SEND_V1] = "v1", [CONF_PROXY_SEND_V2] = "v2"}};
static const struct enumeration tls_version_names = {
    "a TLS version", {[CONF_TLS_1_2] = "tls1.2", [CONF_TLS_1_3] = "tls1.3"}};

/* Enum members are stored as int. */
_Static_assert(sizeof(enum conf_balance) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_check_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_when_all_down) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_underscores) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_tls_version) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_listener_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_proxy_send) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_pool_protocol) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_samesite) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_hash_key) == sizeof(int), "enum size");

static void parse_enum(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    const struct enumeration *e = f->names;
    const char *s = scalar_value(ctx, node, e->what);
    char list[128] = "one of: ";
    size_t o = strlen(list);

    if (!s)
        return;
    for (int i = 0; i < (int)ARRAY_LEN(e->names) && e->names[i]; i++) {
        if (strcmp(s, e->names[i]) == 0) {
            store(obj, f->offset, &i, sizeof(i));
            return;
        }
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", e->names[i]);
        if (n > 0)
            o = o + (size_t)n < sizeof(list) ? o + (size_t)n : sizeof(list) - 1;
    }
    quoted_error(ctx, node, list, s);
}

static void parse_bool(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    const char *s = scalar_value(ctx, node, "true or false");
    if (!s)
        return;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
        store(obj, f->offset, &(bool){s[0] == 't'}, sizeof(bool));
    else
        quoted_error(ctx, node, "true or false", s);
}

/* One status code or range, as a sequence entry or the whole value. */
static bool parse_status_item(struct ctx *ctx, const yaml_node_t *node, const char *what,
                              struct conf_status_set *set)
{
    char why[2 * ESC_SIZE];
    const char *s = scalar_value(ctx, node, what);

    if (s && status_item(s, set, why, sizeof(why))) {
        node_error(ctx, node, "%s", why);
        return false;
    }
    return s != NULL;
}

/* A struct conf_status_set: 200, "200-299", or a sequence of those. Replaces the default. */
static void parse_status_set(struct ctx *ctx, const yaml_node_t *node, void *obj,
                             const struct field *f)
{
    static const char one[] = "a status code or a range such as 200-399";
    static const char any[] = "a status code, a range such as 200-399, or a list of them";
    struct conf_status_set set = {{0}};
    bool ok = true;

    if (node->type != YAML_SEQUENCE_NODE) {
        ok = parse_status_item(ctx, node, any, &set);
    } else {
        size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
        if (n == 0) {
            node_error(ctx, node, "must not be empty");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const yaml_node_t *child = get_node(ctx, node->data.sequence.items.start[i]);
            size_t mark = path_push(ctx, "[%zu]", i);
            if (child && !parse_status_item(ctx, child, one, &set))
                ok = false;
            path_pop(ctx, mark);
        }
    }
    if (ok)
        store(obj, f->offset, &set, sizeof(set));
}

static size_t find_field(const struct schema *s, const char *key, size_t len)
{
    size_t i;
    for (i = 0; i < s->nfields; i++)
        if (strlen(s->fields[i].key) == len && memcmp(s->fields[i].key, key, len) == 0)
            break;
    return i;
}

static const char *key_list(const struct schema *s, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < s->nfields && o < size; i++) {
        int n = snprintf(out + o, size - o, "%s%s", i ? ", " : "", s->fields[i].key);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return out;
}

static void report_missing(struct ctx *ctx, const struct schema *s, const yaml_node_t **seen,
                           int line, int column)
{
    for (size_t i = 0; i < s->nfields; i++) {
        if (s->fields[i].required && !seen[i]) {
            size_t mark = path_push_key(ctx, s->fields[i].key, strlen(s->fields[i].key));
            error_at(ctx, line, column, ctx->path, "required key is missing");
            path_pop(ctx, mark);
        }
    }
}

/* The walker: checks keys against the table and hands each value to its row's handler. */
static void parse_mapping(struct ctx *ctx, const yaml_node_t *node, void *obj,
                          const struct schema *s)
{
    const yaml_node_t *seen[MAX_FIELDS] = {NULL};

    if (node->type != YAML_MAPPING_NODE) {
        node_error(ctx, node, "expected a mapping, found %s", node_kind(node));
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *key = get_node(ctx, p->key), *value = get_node(ctx, p->value);
        if (!key || !value)
            continue;
        if (key->type != YAML_SCALAR_NODE) {
            node_error(ctx, key, "a key must be a name, found %s", node_kind(key));
            continue;
        }
        const char *name = (const char *)key->data.scalar.value;
        size_t i = find_field(s, name, key->data.scalar.length);
        size_t mark = path_push_key(ctx, name, key->data.scalar.length);
        if (i == s->nfields) {
            char list[512];
            node_error(ctx, key, "unknown key (expected one of: %s)",
                       key_list(s, list, sizeof(list)));
        } else if (seen[i]) {
            node_error(ctx, key, "duplicate key (first given at line %d)", line_of(seen[i]));
        } else {
            seen[i] = key;
            if (!is_null(value))
                s->fields[i].parse(ctx, value, obj, &s->fields[i]);
            else if (s->fields[i].required)
                node_error(ctx, key, "a value is required");
            /* else: an empty optional value keeps the default */
        }
        path_pop(ctx, mark);
    }
    report_missing(ctx, s, seen, line_of(node), column_of(node));
}

static void parse_submapping(struct ctx *ctx, const yaml_node_t *node, void *obj,
                             const struct field *f)
{
    size_t before = ctx->nerrors;
    void *sub = (char *)obj + f->offset;

    parse_mapping(ctx, node, sub, f->sub);
    if (f->sub->finish && ctx->nerrors == before && !ctx->oom)
        f->sub->finish(ctx, node, sub, 0);
}

/* A nested mapping whose presence turns something on: the bool at offset2 becomes true. */
static void parse_switch(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    if (node->type == YAML_MAPPING_NODE)
        store(obj, f->offset2, &(bool){true}, sizeof(bool));
    parse_submapping(ctx, node, obj, f);
}

/*
 * The walk every sequence shares: node must be a sequence of at least f->min entries within the
 * item budget; n items of size bytes go into a zeroed array whose pointer is stored at offset
 * and count at offset2 before any is parsed (so conf_free() releases a partial one), then each()
 * parses item i from child (NULL without a document) with "[i]" on the path. what names the
 * items in the type error ("strings": "expected a sequence of strings"), or is NULL.
 */
static void parse_sequence(struct ctx *ctx, const yaml_node_t *node, void *obj,
                           const struct field *f, const char *what, size_t size,
                           void (*each)(struct ctx *ctx, const yaml_node_t *child, void *item,
                                        const struct field *f, size_t i))
{
    if (node->type != YAML_SEQUENCE_NODE) {
        node_error(ctx, node, "expected a sequence%s%s, found %s", what ? " of " : "",
                   what ? what : "", node_kind(node));
        return;
    }
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n < f->min) {
        node_error(ctx, node, "must not be empty");
        return;
    }
    /* Aliases can repeat one entry many times at the cost of a few bytes each; cap the total. */
    if (n > MAX_ITEMS - ctx->items) {
        if (!ctx->too_many) /* once is enough */
            node_error(ctx, node, "too many entries (at most %u in all)", MAX_ITEMS);
        ctx->too_many = true;
        return;
    }
    if (n == 0)
        return;
    ctx->items += n;
    char *array = calloc(n, size);
    if (!array) {
        ctx->oom = true;
        return;
    }
    unsigned count = (unsigned)n;
    store(obj, f->offset, &array, sizeof(array));
    store(obj, f->offset2, &count, sizeof(count));
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *child = get_node(ctx, node->data.sequence.items.start[i]);
        size_t mark = path_push(ctx, "[%zu]", i);
        each(ctx, child, array + i * size, f, i);
        path_pop(ctx, mark);
    }
}

static void one_string(struct ctx *ctx, const yaml_node_t *child, void *item, const struct field *f,
                       size_t i)
{
    const struct field one = {.key = f->key, .offset = 0, .check = f->check};
    if (child)
        parse_string(ctx, child, item, &one);
}

/* A sequence of strings, each accepted by the row's check: a char * array and its count. */
static void parse_strings(struct ctx *ctx, const yaml_node_t *node, void *obj,
                          const struct field *f)
{
    parse_sequence(ctx, node, obj, f, "strings", sizeof(char *), one_string);
}

static void one_cidr(struct ctx *ctx, const yaml_node_t *child, void *item, const struct field *f,
                     size_t i)
{
    const char *s =
        child ? scalar_value(ctx, child, "an address or a range such as 10.0.0.0/8") : NULL;
    const char *why;
    char shown[ESC_SIZE];
    if (s && net_parse_cidr(s, item, &why) < 0)
        node_error(ctx, child, "%s, found \"%s\"", why, escape(shown, sizeof(shown), s, strlen(s)));
}

/* A sequence of address ranges (core/net.h struct net_cidr) and its count. */
static void parse_cidrs(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    parse_sequence(ctx, node, obj, f, "addresses or ranges", sizeof(struct net_cidr), one_cidr);
}

/* One entry of a sequence of mappings: its defaults, position, keys and cross-key checks. */
static void one_entry(struct ctx *ctx, const yaml_node_t *child, void *entry, const struct field *f,
                      size_t i)
{
    const struct schema *item = f->sub;
    if (item->init)
        item->init(entry);
    if (!child)
        return;
    store(entry, item->line_off, &(int){line_of(child)}, sizeof(int));
    store(entry, item->column_off, &(int){column_of(child)}, sizeof(int));
    parse_mapping(ctx, child, entry, item);
    if (item->finish)
        item->finish(ctx, child, entry, i);
}

/* A sequence of mappings (f->sub describes one entry); min is the least number of entries. */
static void parse_list(struct ctx *ctx, const yaml_node_t *node, void *obj, const struct field *f)
{
    parse_sequence(ctx, node, obj, f, NULL, f->sub->size, one_entry);
}

static void server_init(void *obj)
{
    ((struct conf_server *)obj)->weight = 1;
}

static void server_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    (void)node;
    (void)index;
    struct conf_server *s = obj;
    if (!s->name && s->address && !(s->name = strdup(s->address)))
        ctx->oom = true;
}

static void listener_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_listener *l = obj;
    if (!l->name && asprintf(&l->name, "listener%zu", index + 1) < 0) {
        l->name = NULL;
        ctx->oom = true;
    }
}

#define FIELD(k, fn, type, member, ...)                                                            \
    {                                                                                              \
        .key = (k), .parse = (fn), .offset = offsetof(type, member), __VA_ARGS__                   \
    }
#define SCHEMA(table, ...)                                                                         \
    {                                                                                              \
        .fields = (table), .nfields = ARRAY_LEN(table), __VA_ARGS__                                \
    }
/* A sequence entry: its size and where it records its line and column. */
#define ENTRY(type)                                                                                \
    .size = sizeof(type), .line_off = offsetof(type, line), .column_off = offsetof(type, column)
#define SECONDS(n) ((n)*1000u)

static const yaml_node_t *map_get(struct ctx *ctx, const yaml_node_t *map, const char *key);

/* Every pool's defaults, for files and flags. The strings come in pool_complete(). */
static void pool_init(void *obj)
{
    struct conf_pool *p = obj;
    p->retries = 2;
    p->tls.verify = true;
    p->check = (struct conf_health_check){
        .type = CONF_CHECK_HTTP, .interval_ms = SECONDS(2), .rise = 2, .fall = 3};
    status_add(&p->check.expect_status, 200, 399);
    p->choices = 2;
    p->hash_table_size = CONF_HASH_TABLE_DEFAULT;
    p->ewma_decay_ms = SECONDS(10);
    p->ewma_default_ms = 10;
    p->sticky.httponly = true;
    p->max_servers = CONF_MAX_SERVERS_DEFAULT;
    p->discovery.dns = (struct conf_dns_discovery){
        .interval_ms = SECONDS(5), .hold_on_error_ms = SECONDS(300), .timeout_ms = SECONDS(2)};
    p->discovery.etcd.timeout_ms = SECONDS(2);
    p->discovery.etcd.tls.verify = true;
    p->passive = (struct conf_passive){.consecutive_failures = 5,
                                       .ejection_time_ms = SECONDS(30),
                                       .max_ejection_time_ms = SECONDS(300),
                                       .max_ejected_percent = 50};
    status_add(&p->passive.failure_status, 502, 504);
}

/* The defaults that depend on other values (0 means not given: none of these may be 0). */
static void pool_complete(struct ctx *ctx, struct conf_pool *p)
{
    struct conf_health_check *c = &p->check;
    if (!c->method && !(c->method = strdup("GET")))
        ctx->oom = true;
    if (!c->path && !(c->path = strdup("/healthcheck")))
        ctx->oom = true;
    if (!c->fast_interval_ms)
        c->fast_interval_ms = c->interval_ms;
    if (!c->down_interval_ms)
        c->down_interval_ms = c->interval_ms;
    if (!c->timeout_ms)
        c->timeout_ms = c->interval_ms < SECONDS(2) ? c->interval_ms : SECONDS(2);
    /* The attributes of the sticky cookie, the same for every answer: written out once. */
    if (p->sticky.enabled && !p->sticky.attributes &&
        !(p->sticky.attributes = conf_sticky_attributes(&p->sticky)))
        ctx->oom = true;
}

char *conf_sticky_attributes(const struct conf_sticky *st)
{
    static const char *const samesite[] = {[CONF_SAMESITE_LAX] = "Lax",
                                           [CONF_SAMESITE_STRICT] = "Strict",
                                           [CONF_SAMESITE_NONE] = "None"};
    char max_age[32] = "", *out;
    if (st->max_age)
        snprintf(max_age, sizeof(max_age), "; Max-Age=%u", st->max_age);
    if (asprintf(&out, "; Path=%s%s%s%s; SameSite=%s", st->path ? st->path : "/", max_age,
                 st->secure ? "; Secure" : "", st->httponly ? "; HttpOnly" : "",
                 samesite[st->samesite]) < 0)
        return NULL;
    return out;
}

static bool is_prime(uint32_t n)
{
    if (n < 2)
        return false;
    for (uint32_t d = 2; d <= n / d; d++)
        if (n % d == 0)
            return false;
    return true;
}

/* A balancing key written for an algorithm the pool does not use is a mistake (most likely in
 * balance): say so rather than ignore it. */
static void balance_keys_check(struct ctx *ctx, const yaml_node_t *node, const struct conf_pool *p)
{
    static const struct {
        const char *key;
        unsigned algorithms; /* bits of enum conf_balance */
    } owners[] = {
        {"choices", 1u << CONF_BALANCE_RANDOM | 1u << CONF_BALANCE_PEAK_EWMA},
        {"hash_key", 1u << CONF_BALANCE_HASH},
        {"hash_key_required", 1u << CONF_BALANCE_HASH},
        {"hash_table_size", 1u << CONF_BALANCE_HASH},
        {"hash_balance_factor", 1u << CONF_BALANCE_HASH},
        {"ewma_decay", 1u << CONF_BALANCE_PEAK_EWMA},
        {"ewma_default_latency", 1u << CONF_BALANCE_PEAK_EWMA},
    };
    for (size_t i = 0; i < ARRAY_LEN(owners); i++) {
        const yaml_node_t *at = map_get(ctx, node, owners[i].key);
        if (!at || (owners[i].algorithms >> p->balance & 1u))
            continue;
        char users[64] = "";
        for (unsigned b = 0; b < CONF_BALANCE_COUNT; b++)
            if (owners[i].algorithms >> b & 1u)
                snprintf(users + strlen(users), sizeof(users) - strlen(users), "%s%s",
                         users[0] ? " or " : "", conf_balance_name((enum conf_balance)b));
        size_t mark = path_push_key(ctx, owners[i].key, strlen(owners[i].key));
        node_error(ctx, at, "applies only to balance: %s (this pool balances with %s)", users,
                   conf_balance_name(p->balance));
        path_pop(ctx, mark);
    }
    const yaml_node_t *size = map_get(ctx, node, "hash_table_size");
    if (size && p->hash_table_size && !is_prime(p->hash_table_size)) {
        size_t mark = path_push_key(ctx, "hash_table_size", strlen("hash_table_size"));
        node_error(ctx, size, "must be a prime number, such as 65537 or 655373");
        path_pop(ctx, mark);
    }
    const yaml_node_t *factor = map_get(ctx, node, "hash_balance_factor");
    if (factor && p->hash_balance_factor && p->hash_balance_factor <= 100) {
        size_t mark = path_push_key(ctx, "hash_balance_factor", strlen("hash_balance_factor"));
        node_error(ctx, factor,
                   "must be 0 (off) or above 100: it is the percent of the average load a "
                   "server may take, such as 125 or 150");
        path_pop(ctx, mark);
    }
}

/* A pool has servers, written or discovered, and no more written ones than max_servers. */
static void servers_check(struct ctx *ctx, const yaml_node_t *node, const struct conf_pool *p)
{
    const yaml_node_t *servers = map_get(ctx, node, "servers");
    bool discovered = p->discovery.dns.enabled || p->discovery.etcd.enabled;
    if (!servers && !discovered) {
        size_t mark = path_push_key(ctx, "servers", strlen("servers"));
        node_error(ctx, node, "required key is missing (unless discovery finds the servers)");
        path_pop(ctx, mark);
        return;
    }
    if (servers && servers->type == YAML_SEQUENCE_NODE && p->nservers == 0 && !discovered) {
        size_t mark = path_push_key(ctx, "servers", strlen("servers"));
        node_error(ctx, servers, "must not be empty without discovery");
        path_pop(ctx, mark);
        return;
    }
    if (p->nservers > p->max_servers) {
        const yaml_node_t *max = map_get(ctx, node, "max_servers");
        size_t mark = path_push_key(ctx, "max_servers", strlen("max_servers"));
        node_error(ctx, max ? max : node, "is %u, but the pool lists %u servers", p->max_servers,
                   p->nservers);
        path_pop(ctx, mark);
    }
}

static void pool_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_pool *p = obj;
    p->check_type_given = map_get(ctx, map_get(ctx, node, "health_check"), "type") != NULL;
    if (p->protocol == CONF_POOL_H2) {
        /* an HTTP/1.1 probe would find every HTTP/2-only server down: a connect is the safe
         * default, and type: grpc the one to write for gRPC servers */
        if (!p->check_type_given)
            p->check.type = CONF_CHECK_TCP;
        if (p->proxy_protocol) {
            const yaml_node_t *at = map_get(ctx, node, "proxy_protocol");
            size_t mark = path_push_key(ctx, "proxy_protocol", strlen("proxy_protocol"));
            node_error(ctx, at ? at : node,
                       "cannot go with protocol: h2: a PROXY header names one client, and an "
                       "HTTP/2 connection carries the requests of many");
            path_pop(ctx, mark);
        }
    }
    balance_keys_check(ctx, node, p);
    servers_check(ctx, node, p);
    pool_complete(ctx, p);
}

/* SameSite=None without Secure is refused by browsers. */
static void sticky_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_sticky *st = obj;
    if (st->samesite != CONF_SAMESITE_NONE || st->secure)
        return;
    const yaml_node_t *at = map_get(ctx, node, "samesite");
    size_t mark = path_push_key(ctx, "samesite", strlen("samesite"));
    node_error(ctx, at ? at : node,
               "none needs secure: true (browsers refuse SameSite=None cookies without Secure)");
    path_pop(ctx, mark);
}

/* A cookie name is an RFC 6265 token; a Path attribute value has no ';' or control bytes. */
static const char *cookie_path_problem(const char *s)
{
    if (*s != '/')
        return "must start with '/'";
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ';')
            return "must contain only visible ASCII characters other than ';'";
    return NULL;
}

static const struct field sticky_fields[] = {
    FIELD("cookie", parse_string, struct conf_sticky, cookie, .check = method_problem,
          .required = true),
    FIELD("max_age", parse_number, struct conf_sticky, max_age, .num = &num_integer, .min = 0,
          .max = 400u * 24 * 3600),
    FIELD("secure", parse_bool, struct conf_sticky, secure),
    FIELD("httponly", parse_bool, struct conf_sticky, httponly),
    FIELD("samesite", parse_enum, struct conf_sticky, samesite, .names = &samesite_names),
    FIELD("path", parse_string, struct conf_sticky, path, .check = cookie_path_problem),
};
static const struct schema sticky_schema = SCHEMA(sticky_fields, .finish = sticky_finish);

/* Runs only when every passive key was accepted (see struct schema). */
static void passive_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_passive *p = obj;
    const yaml_node_t *max = map_get(ctx, node, "max_ejection_time");
    const yaml_node_t *min = map_get(ctx, node, "ejection_time");
    char limit[32];

    if (p->max_ejection_time_ms >= p->ejection_time_ms)
        return;
    /* At the maximum if it was written; otherwise the ejection time went past the default one. */
    const char *key = max ? "max_ejection_time" : "ejection_time";
    size_t mark = path_push_key(ctx, key, strlen(key));
    if (max)
        node_error(ctx, max, "must be at least ejection_time (%s)",
                   format_duration(limit, sizeof(limit), p->ejection_time_ms));
    else
        node_error(ctx, min ? min : node, "must be at most max_ejection_time (%s, the default)",
                   format_duration(limit, sizeof(limit), p->max_ejection_time_ms));
    path_pop(ctx, mark);
}

static const struct field server_fields[] = {
    FIELD("name", parse_string, struct conf_server, name),
    FIELD("address", parse_address, struct conf_server, address,
          .offset2 = offsetof(struct conf_server, addr), .required = true),
    FIELD("weight", parse_number, struct conf_server, weight, .num = &num_integer, .min = 0,
          .max = CONF_MAX_WEIGHT),
};
static const struct schema server_schema =
    SCHEMA(server_fields, ENTRY(struct conf_server), .init = server_init, .finish = server_finish);

/* A gRPC service name as the health protocol takes it: "package.Service", up to 200 visible
 * ASCII characters (empty: the server as a whole). */
static const char *service_problem(const char *s)
{
    if (strlen(s) > 200)
        return "must be at most 200 characters";
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return "must be visible ASCII characters (a gRPC service name, e.g. pkg.Service)";
    return NULL;
}

/* Keys that belong to another check type. */
static void check_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_health_check *c = obj;
    static const char *const http_only[] = {"method", "path", "expect_status", "expect_body"};
    const char *key = NULL, *why = NULL;
    if (c->type == CONF_CHECK_GRPC) {
        for (size_t i = 0; i < sizeof(http_only) / sizeof(http_only[0]) && !key; i++)
            if (map_get(ctx, node, http_only[i]))
                key = http_only[i];
        why = "is for http checks (a grpc check asks grpc.health.v1.Health/Check)";
    } else if (map_get(ctx, node, "service")) {
        key = "service";
        why = "is for grpc checks (type: grpc)";
    }
    if (!key)
        return;
    size_t mark = path_push_key(ctx, key, strlen(key));
    node_error(ctx, map_get(ctx, node, key), "%s", why);
    path_pop(ctx, mark);
}

#define CHECK_TIME(k, member)                                                                      \
    FIELD(k, parse_number, struct conf_health_check, member, .num = &num_duration,                 \
          .min = CHECK_MIN_MS, .max = HOUR_MS)
#define CHECK_COUNT(k, member)                                                                     \
    FIELD(k, parse_number, struct conf_health_check, member, .num = &num_integer, .min = 1,        \
          .max = 100)
static const struct field check_fields[] = {
    FIELD("type", parse_enum, struct conf_health_check, type, .names = &check_type_names),
    FIELD("method", parse_string, struct conf_health_check, method, .check = method_problem),
    FIELD("path", parse_string, struct conf_health_check, path, .check = path_problem),
    FIELD("host", parse_string, struct conf_health_check, host, .check = host_problem),
    FIELD("expect_status", parse_status_set, struct conf_health_check, expect_status),
    FIELD("expect_body", parse_string, struct conf_health_check, expect_body),
    FIELD("port", parse_number, struct conf_health_check, port, .num = &num_integer, .min = 1,
          .max = 65535),
    FIELD("service", parse_string, struct conf_health_check, service, .check = service_problem),
    CHECK_TIME("interval", interval_ms),
    CHECK_TIME("fast_interval", fast_interval_ms),
    CHECK_TIME("down_interval", down_interval_ms),
    CHECK_TIME("timeout", timeout_ms),
    CHECK_COUNT("rise", rise),
    CHECK_COUNT("fall", fall),
};
static const struct schema check_schema = SCHEMA(check_fields, .finish = check_finish);

static const struct field passive_fields[] = {
    FIELD("consecutive_failures", parse_number, struct conf_passive, consecutive_failures,
          .num = &num_integer, .min = 0, .max = 1000),
    FIELD("failure_status", parse_status_set, struct conf_passive, failure_status),
    FIELD("ejection_time", parse_number, struct conf_passive, ejection_time_ms,
          .num = &num_duration, .min = 1, .max = HOUR_MS),
    FIELD("max_ejection_time", parse_number, struct conf_passive, max_ejection_time_ms,
          .num = &num_duration, .min = 1, .max = DAY_MS),
    FIELD("max_ejected_percent", parse_number, struct conf_passive, max_ejected_percent,
          .num = &num_integer, .min = 0, .max = 100),
};
static const struct schema passive_schema = SCHEMA(passive_fields, .finish = passive_finish);

/* cert and key go together. */
static void pool_tls_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_pool_tls *t = obj;
    if (!t->cert == !t->key)
        return;
    const char *missing = t->cert ? "key" : "cert";
    size_t mark = path_push_key(ctx, missing, strlen(missing));
    node_error(ctx, node, "%s is needed with %s", missing, t->cert ? "cert" : "key");
    path_pop(ctx, mark);
}

static const struct field pool_tls_fields[] = {
    FIELD("verify", parse_bool, struct conf_pool_tls, verify),
    FIELD("ca", parse_string, struct conf_pool_tls, ca),
    FIELD("sni", parse_string, struct conf_pool_tls, sni, .check = host_problem),
    FIELD("cert", parse_string, struct conf_pool_tls, cert),
    FIELD("key", parse_string, struct conf_pool_tls, key),
};
static const struct schema pool_tls_schema = SCHEMA(pool_tls_fields, .finish = pool_tls_finish);

/* ---- discovery (docs/discovery.md) ---- */

static const struct enumeration dns_type_names = {"SRV, A, AAAA or A+AAAA",
                                                  {[CONF_DNS_SRV] = "SRV",
                                                   [CONF_DNS_A] = "A",
                                                   [CONF_DNS_AAAA] = "AAAA",
                                                   [CONF_DNS_A_AAAA] = "A+AAAA"}};

/* A DNS name as queried: letters, digits, '-', '_' (SRV labels) and '.', labels of 1-63. */
static const char *dns_name_problem(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len > 253)
        return "must be at most 253 characters";
    for (; *s; s++) {
        if (*s == '.') {
            if (label == 0)
                return "must not have an empty label (two dots, or a leading dot)";
            label = 0;
        } else if (!is_alnum((unsigned char)*s) && *s != '-' && *s != '_') {
            return "must be a DNS name (letters, digits, '-', '_' and '.')";
        } else if (++label > 63) {
            return "must have labels of at most 63 characters";
        }
    }
    return NULL;
}

/* A resolver: an IP address, with ":PORT" (53 if not given); never a name. */
static void one_resolver(struct ctx *ctx, const yaml_node_t *child, void *item,
                         const struct field *f, size_t i)
{
    const char *s = child ? scalar_value(ctx, child, "an IP address, or IP:PORT") : NULL;
    if (!s)
        return;
    char text[80], shown[ESC_SIZE];
    struct in6_addr ip6;
    struct in_addr ip4;
    /* without a port: 127.0.0.1, ::1 or [::1] */
    if (inet_pton(AF_INET, s, &ip4) == 1 || inet_pton(AF_INET6, s, &ip6) == 1)
        snprintf(text, sizeof(text), strchr(s, ':') ? "[%s]:53" : "%s:53", s);
    else if (s[0] == '[' && s[strlen(s) - 1] == ']')
        snprintf(text, sizeof(text), "%s:53", s);
    else
        snprintf(text, sizeof(text), "%s", s);
    struct net_addr *addr = item;
    const char *why = NULL;
    const char *colon = strrchr(text, ':');
    char host[80];
    size_t hl = colon ? (size_t)(colon - text) : 0;
    memcpy(host, text, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    if (!colon || (inet_pton(AF_INET, host, &ip4) != 1 && inet_pton(AF_INET6, host, &ip6) != 1))
        why = "must be an IP address, or IP:PORT ([IPv6]:PORT): a resolver cannot be a name";
    else if (net_parse_addr(text, addr, &why) == 0 && addr->any)
        why = "must name one address";
    if (why)
        node_error(ctx, child, "%s, found \"%s\"", why, escape(shown, sizeof(shown), s, strlen(s)));
}

static void parse_resolvers(struct ctx *ctx, const yaml_node_t *node, void *obj,
                            const struct field *f)
{
    parse_sequence(ctx, node, obj, f, "addresses", sizeof(struct net_addr), one_resolver);
}

/* A and AAAA records carry no port: the mapping gives it. */
static void dns_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_dns_discovery *d = obj;
    if (d->type != CONF_DNS_SRV && !d->port) {
        size_t mark = path_push_key(ctx, "port", strlen("port"));
        node_error(ctx, node, "is needed with type %s (A and AAAA records carry no port)",
                   dns_type_names.names[d->type]);
        path_pop(ctx, mark);
    }
}

static const struct field dns_fields[] = {
    FIELD("name", parse_string, struct conf_dns_discovery, name, .check = dns_name_problem,
          .required = true),
    FIELD("type", parse_enum, struct conf_dns_discovery, type, .names = &dns_type_names),
    FIELD("port", parse_number, struct conf_dns_discovery, port, .num = &num_integer, .min = 1,
          .max = 65535),
    FIELD("resolvers", parse_resolvers, struct conf_dns_discovery, resolvers,
          .offset2 = offsetof(struct conf_dns_discovery, nresolvers), .min = 1),
    FIELD("interval", parse_number, struct conf_dns_discovery, interval_ms, .num = &num_duration,
          .min = 1000, .max = DAY_MS),
    FIELD("hold_on_error", parse_number, struct conf_dns_discovery, hold_on_error_ms,
          .num = &num_duration, .min = 0, .max = DAY_MS),
    FIELD("timeout", parse_number, struct conf_dns_discovery, timeout_ms, .num = &num_duration,
          .min = 100, .max = 60000),
};
static const struct schema dns_schema = SCHEMA(dns_fields, .finish = dns_finish);

/* The length of an etcd endpoint's scheme and "://", or 0 if it is neither http nor https. */
static size_t etcd_scheme_length(const char *s)
{
    return strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
}

/* An etcd endpoint: http(s)://HOST:PORT (the host is resolved now, like a server's). */
static const char *etcd_endpoint_problem(const char *s)
{
    size_t scheme = etcd_scheme_length(s);
    if (!scheme)
        return "must be http://HOST:PORT or https://HOST:PORT";
    const char *hostport = s + scheme;
    if (!*hostport || strchr(hostport, '/') || strchr(hostport, '@'))
        return "must be http(s)://HOST:PORT, with no path or user";
    return NULL;
}

/* Each endpoint's address and Host field; one scheme for all; tls only with https. */
static void etcd_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_etcd_discovery *e = obj;
    const yaml_node_t *list = map_get(ctx, node, "endpoints");
    if (!e->nendpoints)
        return;
    e->https = etcd_scheme_length(e->endpoints[0]) == 8;
    for (unsigned i = 1; i < e->nendpoints; i++)
        if ((etcd_scheme_length(e->endpoints[i]) == 8) != e->https) {
            size_t mark = path_push_key(ctx, "endpoints", strlen("endpoints"));
            node_error(ctx, list ? list : node,
                       "mixes http:// and https:// endpoints: one cluster speaks one of them");
            path_pop(ctx, mark);
            return;
        }
    if (e->tls.enabled && !e->https) {
        size_t mark = path_push_key(ctx, "tls", strlen("tls"));
        const yaml_node_t *at = map_get(ctx, node, "tls");
        node_error(ctx, at ? at : node, "needs https:// endpoints");
        path_pop(ctx, mark);
        return;
    }
    e->endpoint_addrs = calloc(e->nendpoints, sizeof(*e->endpoint_addrs));
    e->endpoint_hosts = calloc(e->nendpoints, sizeof(*e->endpoint_hosts));
    if (!e->endpoint_addrs || !e->endpoint_hosts) {
        ctx->oom = true;
        return;
    }
    for (unsigned i = 0; i < e->nendpoints; i++) {
        const char *written = e->endpoints[i] + etcd_scheme_length(e->endpoints[i]);
        const char *why;
        char shown[ESC_SIZE], hostport[300];
        /* etcd's client port when none is written */
        bool has_port =
            written[0] == '[' ? strstr(written, "]:") != NULL : strchr(written, ':') != NULL;
        snprintf(hostport, sizeof(hostport), has_port ? "%s" : "%s:2379", written);
        if (!(e->endpoint_hosts[i] = strdup(hostport))) {
            ctx->oom = true;
            return;
        }
        if (net_parse_addr(hostport, &e->endpoint_addrs[i], &why) == 0 && !e->endpoint_addrs[i].any)
            continue;
        const yaml_node_t *at = list && list->type == YAML_SEQUENCE_NODE
                                    ? get_node(ctx, list->data.sequence.items.start[i])
                                    : node;
        size_t mark = path_push_key(ctx, "endpoints", strlen("endpoints"));
        path_push(ctx, "[%u]", i);
        node_error(ctx, at ? at : node, "\"%s\": %s",
                   escape(shown, sizeof(shown), e->endpoints[i], strlen(e->endpoints[i])),
                   e->endpoint_addrs[i].any ? "needs a host" : why);
        path_pop(ctx, mark);
    }
}

static const struct field etcd_fields[] = {
    FIELD("endpoints", parse_strings, struct conf_etcd_discovery, endpoints,
          .offset2 = offsetof(struct conf_etcd_discovery, nendpoints), .min = 1,
          .check = etcd_endpoint_problem, .required = true),
    FIELD("prefix", parse_string, struct conf_etcd_discovery, prefix, .check = token_problem,
          .required = true),
    FIELD("timeout", parse_number, struct conf_etcd_discovery, timeout_ms, .num = &num_duration,
          .min = 100, .max = 60000),
    FIELD("hold_on_error", parse_number, struct conf_etcd_discovery, hold_on_error_ms,
          .num = &num_duration, .min = 0, .max = 30u * DAY_MS),
    FIELD("tls", parse_switch, struct conf_etcd_discovery, tls,
          .offset2 = offsetof(struct conf_etcd_discovery, tls.enabled), .sub = &pool_tls_schema),
};
static const struct schema etcd_schema = SCHEMA(etcd_fields, .finish = etcd_finish);

static const struct field discovery_fields[] = {
    FIELD("dns", parse_switch, struct conf_discovery, dns,
          .offset2 = offsetof(struct conf_discovery, dns.enabled), .sub = &dns_schema),
    FIELD("etcd", parse_switch, struct conf_discovery, etcd,
          .offset2 = offsetof(struct conf_discovery, etcd.enabled), .sub = &etcd_schema),
};
static const struct schema discovery_schema = SCHEMA(discovery_fields);

static const struct field pool_fields[] = {
    FIELD("name", parse_string, struct conf_pool, name, .required = true),
    FIELD("balance", parse_enum, struct conf_pool, balance, .names = &balance_names),
    FIELD("protocol", parse_enum, struct conf_pool, protocol, .names = &pool_protocol_names),
    FIELD("servers", parse_list, struct conf_pool, servers,
          .offset2 = offsetof(struct conf_pool, nservers), .sub = &server_schema),
    FIELD("discovery", parse_submapping, struct conf_pool, discovery, .sub = &discovery_schema),
    FIELD("max_servers", parse_number, struct conf_pool, max_servers, .num = &num_integer, .min = 1,
          .max = 100000),
    FIELD("retries", parse_number, struct conf_pool, retries, .num = &num_integer, .min = 0,
          .max = 10),
    FIELD("retry_on_timeout", parse_bool, struct conf_pool, retry_on_timeout),
    FIELD("slow_start", parse_number, struct conf_pool, slow_start_ms, .num = &num_duration,
          .min = 0, .max = HOUR_MS),
    FIELD("when_all_down", parse_enum, struct conf_pool, when_all_down, .names = &all_down_names),
    FIELD("ignore_client_abort", parse_bool, struct conf_pool, ignore_client_abort),
    FIELD("health_check", parse_switch, struct conf_pool, check,
          .offset2 = offsetof(struct conf_pool, check.enabled), .sub = &check_schema),
    FIELD("passive", parse_submapping, struct conf_pool, passive, .sub = &passive_schema),
    FIELD("tls", parse_switch, struct conf_pool, tls,
          .offset2 = offsetof(struct conf_pool, tls.enabled), .sub = &pool_tls_schema),
    FIELD("proxy_protocol", parse_enum, struct conf_pool, proxy_protocol,
          .names = &proxy_send_names),
    FIELD("choices", parse_number, struct conf_pool, choices, .num = &num_integer, .min = 1,
          .max = 10),
    FIELD("hash_key", parse_hash_key, struct conf_pool, hash_key,
          .offset2 = offsetof(struct conf_pool, hash_key_name)),
    FIELD("hash_key_required", parse_bool, struct conf_pool, hash_key_required),
    FIELD("hash_table_size", parse_number, struct conf_pool, hash_table_size, .num = &num_integer,
          .min = 101, .max = CONF_HASH_TABLE_MAX),
    FIELD("hash_balance_factor", parse_number, struct conf_pool, hash_balance_factor,
          .num = &num_integer, .min = 0, .max = 10000),
    FIELD("ewma_decay", parse_number, struct conf_pool, ewma_decay_ms, .num = &num_duration,
          .min = 10, .max = HOUR_MS),
    FIELD("ewma_default_latency", parse_number, struct conf_pool, ewma_default_ms,
          .num = &num_duration, .min = 1, .max = 60000),
    FIELD("sticky", parse_switch, struct conf_pool, sticky,
          .offset2 = offsetof(struct conf_pool, sticky.enabled), .sub = &sticky_schema),
};
static const struct schema pool_schema =
    SCHEMA(pool_fields, ENTRY(struct conf_pool), .init = pool_init, .finish = pool_finish);

static const struct field tls_certificate_fields[] = {
    FIELD("cert", parse_string, struct conf_tls_certificate, cert, .required = true),
    FIELD("key", parse_string, struct conf_tls_certificate, key, .required = true),
};
static const struct schema tls_certificate_schema =
    SCHEMA(tls_certificate_fields, ENTRY(struct conf_tls_certificate));

/* default_certificate names one of the certificates by its cert path; a subject can be passed on
 * only if client certificates are verified (a backend would otherwise trust a field nobody set). */
static void listener_tls_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_listener_tls *t = obj;
    char shown[ESC_SIZE];
    if (t->client_subject_header && !t->client_ca) {
        const yaml_node_t *at = map_get(ctx, node, "client_subject_header");
        size_t mark = path_push_key(ctx, "client_subject_header", strlen("client_subject_header"));
        node_error(ctx, at ? at : node,
                   "needs client_ca: without verified client certificates "
                   "there is no subject to pass on");
        path_pop(ctx, mark);
    }
    if (!t->default_certificate)
        return;
    for (unsigned i = 0; i < t->ncertificates; i++)
        if (t->certificates[i].cert && strcmp(t->certificates[i].cert, t->default_certificate) == 0)
            return;
    const yaml_node_t *at = map_get(ctx, node, "default_certificate");
    size_t mark = path_push_key(ctx, "default_certificate", strlen("default_certificate"));
    node_error(
        ctx, at ? at : node, "\"%s\" is not the cert of one of the certificates",
        escape(shown, sizeof(shown), t->default_certificate, strlen(t->default_certificate)));
    path_pop(ctx, mark);
}

static const struct field listener_tls_fields[] = {
    FIELD("certificates", parse_list, struct conf_listener_tls, certificates,
          .offset2 = offsetof(struct conf_listener_tls, ncertificates), .min = 1, .required = true,
          .sub = &tls_certificate_schema),
    FIELD("default_certificate", parse_string, struct conf_listener_tls, default_certificate),
    FIELD("sni_strict", parse_bool, struct conf_listener_tls, sni_strict),
    FIELD("min_version", parse_enum, struct conf_listener_tls, min_version,
          .names = &tls_version_names),
    FIELD("ciphers", parse_string, struct conf_listener_tls, ciphers, .check = cipher_list_problem),
    FIELD("alpn", parse_strings, struct conf_listener_tls, alpn,
          .offset2 = offsetof(struct conf_listener_tls, nalpn), .check = alpn_problem),
    FIELD("client_ca", parse_string, struct conf_listener_tls, client_ca),
    FIELD("client_subject_header", parse_string, struct conf_listener_tls, client_subject_header,
          .check = method_problem),
    FIELD("session_tickets", parse_bool, struct conf_listener_tls, session_tickets),
};
static const struct schema listener_tls_schema =
    SCHEMA(listener_tls_fields, .finish = listener_tls_finish);

/* Accepting the header needs a list of who may send it, and the list needs accepting. */
static void proxy_accept_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_proxy_accept *p = obj;
    const char *key = p->accept ? "trusted" : "accept";
    if (p->accept == (p->ntrusted > 0))
        return;
    size_t mark = path_push_key(ctx, key, strlen(key));
    if (p->accept)
        node_error(ctx, node,
                   "required with accept: true: the header is believed only from "
                   "these addresses");
    else
        node_error(ctx, node, "must be true for trusted to mean anything");
    path_pop(ctx, mark);
}

static const struct field proxy_accept_fields[] = {
    FIELD("accept", parse_bool, struct conf_proxy_accept, accept),
    FIELD("trusted", parse_cidrs, struct conf_proxy_accept, trusted,
          .offset2 = offsetof(struct conf_proxy_accept, ntrusted)),
};
static const struct schema proxy_accept_schema =
    SCHEMA(proxy_accept_fields, .finish = proxy_accept_finish);

/* ---- routes and header rules ---- */

/* Fields fulcrum itself frames or consumes: rules must not touch them (a wrong Content-Length or
 * Transfer-Encoding would desynchronise the two sides; the others are per connection). */
static const char *const framing_fields[] = {
    "content-length",   "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "proxy-connection", "trailer",
};

static const char *header_name_problem(const char *s)
{
    const char *why = method_problem(s);
    if (why)
        return "must be a field name (a token: letters, digits and !#$%&'*+-.^_`|~)";
    for (size_t i = 0; i < ARRAY_LEN(framing_fields); i++)
        if (strcasecmp(s, framing_fields[i]) == 0)
            return "is a field fulcrum frames or manages itself and cannot be changed by a rule";
    return NULL;
}

/* Host may be set (a backend that wants another name) but never removed: HTTP/1.1 needs it. */
static const char *removable_header_problem(const char *s)
{
    if (strcasecmp(s, "host") == 0)
        return "cannot be removed: every HTTP/1.1 request has a Host field (set it instead)";
    return header_name_problem(s);
}

/* A field value (RFC 9110 section 5.5): visible characters, spaces and tabs inside. */
static const char *header_value_problem(const char *s)
{
    size_t n = strlen(s);
    if (n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        return "must not start or end with a space";
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return "must not contain control characters (a field value is one line)";
    return NULL;
}

/* A route's host or sni: a name in lowercase, or "*." and a name (exactly one label). */
static const char *host_pattern_problem(const char *s)
{
    if (s[0] == '*' && s[1] == '.' && s[2])
        s += 2;
    if (*s == '[')
        return strchr(s, ']') && strchr(s, ']')[1] == '\0' ? NULL : "must be a host name";
    for (; *s; s++)
        if (*s == ':')
            return "must be a host name without a port (the port is ignored when matching)";
        else if (!is_alnum((unsigned char)*s) && !strchr("-._", *s))
            return "must be a host name (letters, digits, '-', '_' and '.'), or *. and a name";
    return NULL;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/*
 * A route's path or path_prefix is compared with the request's normalised path (http/path.h), so
 * it must be in that form itself, or it could never match: no "." or ".." segment, no "//" (with
 * merge_slashes, the default, requests never have one), no escape of an unreserved character
 * ("%7E" is "~") and upper-case hex digits in the others.
 */
static const char *route_path_problem(const char *s)
{
    const char *why = path_problem(s);
    if (why)
        return why;
    for (const char *p = s; *p; p++) {
        bool dot_segment = p[0] == '/' && p[1] == '.' &&
                           (p[2] == '/' || !p[2] || (p[2] == '.' && (p[3] == '/' || !p[3])));
        if (p[0] == '/' && p[1] == '/')
            return "must not contain \"//\" (requests are matched with slashes merged)";
        if (dot_segment)
            return "must not contain \".\" or \"..\" segments (requests are matched with them "
                   "resolved)";
        if (*p != '%')
            continue;
        if (!is_hex(p[1]) || !is_hex(p[2]))
            return "has a '%' that is not followed by two hex digits";
        char c = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
        if (is_alnum((unsigned char)c) || strchr("-._~", c))
            return "must not escape a letter, digit or -._~ (write the character itself: requests "
                   "are matched with such escapes decoded)";
        if ((p[1] >= 'a' && p[1] <= 'f') || (p[2] >= 'a' && p[2] <= 'f'))
            return "must write escapes with upper-case hex digits, as in %2F";
    }
    return NULL;
}

static const char *scheme_problem(const char *s)
{
    return strcmp(s, "http") == 0 || strcmp(s, "https") == 0 ? NULL : "must be http or https";
}

/* A redirect location: an absolute URL or a path; one line of visible characters. */
static const char *location_problem(const char *s)
{
    if (!all_visible(s))
        return "must contain only visible ASCII characters (no spaces)";
    if (s[0] == '/' || strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)
        return NULL;
    return "must be an absolute URL (http:// or https://) or a path starting with '/'";
}

static void lowercase(char *s)
{
    for (; s && *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* One string, or a sequence of them: a char * array and its count either way. */
static void parse_one_or_more(struct ctx *ctx, const yaml_node_t *node, void *obj,
                              const struct field *f)
{
    if (node->type == YAML_SEQUENCE_NODE) {
        parse_strings(ctx, node, obj, f);
        return;
    }
    char **one = calloc(1, sizeof(*one));
    if (!one) {
        ctx->oom = true;
        return;
    }
    store(obj, f->offset, &one, sizeof(one));
    store(obj, f->offset2, &(unsigned){1}, sizeof(unsigned));
    one_string(ctx, node, one, f, 0);
}

/* A mapping of field names to values (set, add): a struct conf_header array and its count. */
static void parse_header_map(struct ctx *ctx, const yaml_node_t *node, void *obj,
                             const struct field *f)
{
    char shown[ESC_SIZE];
    if (node->type != YAML_MAPPING_NODE) {
        node_error(ctx, node, "expected a mapping of field names to values, found %s",
                   node_kind(node));
        return;
    }
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0)
        return;
    if (n > MAX_ITEMS - ctx->items) {
        node_error(ctx, node, "too many entries (at most %u in all)", MAX_ITEMS);
        return;
    }
    ctx->items += n;
    struct conf_header *v = calloc(n, sizeof(*v));
    if (!v) {
        ctx->oom = true;
        return;
    }
    store(obj, f->offset, &v, sizeof(v));
    store(obj, f->offset2, &(unsigned){(unsigned)n}, sizeof(unsigned));
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
        const yaml_node_t *key = get_node(ctx, p->key), *value = get_node(ctx, p->value);
        if (!key || !value)
            continue;
        const char *name = scalar_value(ctx, key, "a field name");
        if (!name)
            continue;
        size_t mark = path_push_key(ctx, name, strlen(name));
        const char *why = *name ? header_name_problem(name) : "must not be empty";
        const char *text = scalar_value(ctx, value, "a field value");
        const char *vwhy = text ? header_value_problem(text) : NULL;
        v[i].line = line_of(key);
        v[i].column = column_of(key);
        for (size_t j = 0; j < i && !why; j++)
            if (v[j].name && strcasecmp(v[j].name, name) == 0)
                why = "is given twice";
        if (why)
            node_error(ctx, key, "\"%s\" %s", escape(shown, sizeof(shown), name, strlen(name)),
                       why);
        else if (vwhy)
            node_error(ctx, value, "%s", vwhy);
        else if (text && (!(v[i].name = strdup(name)) || !(v[i].value = strdup(text))))
            ctx->oom = true;
        path_pop(ctx, mark);
    }
}

static const struct field header_rule_fields[] = {
    FIELD("set", parse_header_map, struct conf_header_rules, set,
          .offset2 = offsetof(struct conf_header_rules, nset)),
    FIELD("add", parse_header_map, struct conf_header_rules, add,
          .offset2 = offsetof(struct conf_header_rules, nadd)),
    FIELD("remove", parse_strings, struct conf_header_rules, remove,
          .offset2 = offsetof(struct conf_header_rules, nremove),
          .check = removable_header_problem),
};
static const struct schema header_rule_schema = SCHEMA(header_rule_fields);

static const struct field match_field_fields[] = {
    FIELD("name", parse_string, struct conf_header, name, .check = method_problem,
          .required = true),
    FIELD("value", parse_string, struct conf_header, value, .check = header_value_problem),
};
static const struct schema match_field_schema = SCHEMA(match_field_fields);

/* A regular expression is compiled here only to report a bad one with its position; the route
 * table compiles its own (route/route.c). */
static void match_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_route_match *m = obj;
    for (unsigned i = 0; i < m->nhosts; i++)
        lowercase(m->hosts[i]);
    for (unsigned i = 0; i < m->nsnis; i++)
        lowercase(m->snis[i]);
    if (!m->path_regex)
        return;
    regex_t re;
    int r = regcomp(&re, m->path_regex, REG_EXTENDED | REG_NOSUB);
    if (r == 0) {
        regfree(&re);
        return;
    }
    char why[160];
    regerror(r, &re, why, sizeof(why));
    const yaml_node_t *at = map_get(ctx, node, "path_regex");
    size_t mark = path_push_key(ctx, "path_regex", strlen("path_regex"));
    node_error(ctx, at ? at : node, "not a valid POSIX extended regular expression: %s", why);
    path_pop(ctx, mark);
}

static const struct field match_fields[] = {
    FIELD("host", parse_one_or_more, struct conf_route_match, hosts,
          .offset2 = offsetof(struct conf_route_match, nhosts), .min = 1,
          .check = host_pattern_problem),
    FIELD("path", parse_string, struct conf_route_match, path, .check = route_path_problem),
    FIELD("path_prefix", parse_string, struct conf_route_match, path_prefix,
          .check = route_path_problem),
    FIELD("path_regex", parse_string, struct conf_route_match, path_regex),
    FIELD("method", parse_one_or_more, struct conf_route_match, methods,
          .offset2 = offsetof(struct conf_route_match, nmethods), .min = 1,
          .check = method_problem),
    FIELD("header", parse_submapping, struct conf_route_match, header, .sub = &match_field_schema),
    FIELD("query", parse_submapping, struct conf_route_match, query, .sub = &match_field_schema),
    FIELD("sni", parse_one_or_more, struct conf_route_match, snis,
          .offset2 = offsetof(struct conf_route_match, nsnis), .min = 1,
          .check = host_pattern_problem),
};
static const struct schema match_schema = SCHEMA(match_fields, .finish = match_finish);

static void key_error(struct ctx *ctx, const yaml_node_t *node, const char *key,
                      const char *message)
{
    const yaml_node_t *at = map_get(ctx, node, key);
    size_t mark = path_push_key(ctx, key, strlen(key));
    node_error(ctx, at ? at : node, "%s", message);
    path_pop(ctx, mark);
}

static void redirect_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    const struct conf_redirect *r = obj;
    bool parts = r->scheme || r->host || r->port;
    if (!r->location && !parts)
        node_error(ctx, node,
                   "a redirect needs a target: location, or a scheme, host or port to change");
    else if (r->location && parts)
        key_error(ctx, node, "location",
                  "replaces the whole URL: give it alone, or scheme, host and port without it");
    if (r->status != 301 && r->status != 302 && r->status != 303 && r->status != 307 &&
        r->status != 308)
        key_error(ctx, node, "status", "must be one of 301, 302, 303, 307 or 308");
}

static const struct field redirect_fields[] = {
    FIELD("location", parse_string, struct conf_redirect, location, .check = location_problem),
    FIELD("scheme", parse_string, struct conf_redirect, scheme, .check = scheme_problem),
    FIELD("host", parse_string, struct conf_redirect, host, .check = allowed_host_problem),
    FIELD("port", parse_number, struct conf_redirect, port, .num = &num_integer, .min = 1,
          .max = 65535),
    FIELD("status", parse_number, struct conf_redirect, status, .num = &num_integer, .min = 100,
          .max = 599),
};
static const struct schema redirect_schema = SCHEMA(redirect_fields, .finish = redirect_finish);

static void respond_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_respond *r = obj;
    if ((r->status == 204 || r->status == 304) && r->body)
        key_error(ctx, node, "body", "a 204 or 304 response has no body");
    if (!r->content_type && !(r->content_type = strdup("text/plain")))
        ctx->oom = true;
}

static const struct field respond_fields[] = {
    FIELD("status", parse_number, struct conf_respond, status, .num = &num_integer, .min = 200,
          .max = 599, .required = true),
    FIELD("body", parse_string, struct conf_respond, body),
    FIELD("content_type", parse_string, struct conf_respond, content_type,
          .check = header_value_problem),
};
static const struct schema respond_schema = SCHEMA(respond_fields, .finish = respond_finish);

static void route_init(void *obj)
{
    ((struct conf_route *)obj)->redirect.status = 302;
}

/* Exactly one of pool, redirect and respond says what the route does. */
static void route_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    struct conf_route *r = obj;
    unsigned n = (r->pool_name != NULL) + r->has_redirect + r->has_respond;
    if (!r->name && asprintf(&r->name, "route%zu", index + 1) < 0) {
        r->name = NULL;
        ctx->oom = true;
    }
    r->action = r->has_redirect  ? CONF_ROUTE_REDIRECT
                : r->has_respond ? CONF_ROUTE_RESPOND
                                 : CONF_ROUTE_POOL;
    if (n == 1 || !node || node->type != YAML_MAPPING_NODE)
        return;
    if (n == 0)
        node_error(ctx, node, "a route needs one of pool, redirect or respond");
    else
        node_error(ctx, node, "a route takes only one of pool, redirect and respond");
}

static const struct field route_fields[] = {
    FIELD("name", parse_string, struct conf_route, name, .check = method_problem),
    FIELD("match", parse_switch, struct conf_route, match,
          .offset2 = offsetof(struct conf_route, has_match), .sub = &match_schema,
          .required = true),
    FIELD("pool", parse_string, struct conf_route, pool_name),
    FIELD("redirect", parse_switch, struct conf_route, redirect,
          .offset2 = offsetof(struct conf_route, has_redirect), .sub = &redirect_schema),
    FIELD("respond", parse_switch, struct conf_route, respond,
          .offset2 = offsetof(struct conf_route, has_respond), .sub = &respond_schema),
    FIELD("request_headers", parse_submapping, struct conf_route, request_headers,
          .sub = &header_rule_schema),
    FIELD("response_headers", parse_submapping, struct conf_route, response_headers,
          .sub = &header_rule_schema),
};
static const struct schema route_schema =
    SCHEMA(route_fields, ENTRY(struct conf_route), .init = route_init, .finish = route_finish);

/* HTTP/2 limits by default (docs/http2.md), for files and flags. */
static const struct conf_http2 http2_defaults = {
    .max_concurrent_streams = 100,
    .max_header_list_size = 16384,
    .stream_idle_ms = SECONDS(300),
    .idle_ms = SECONDS(60),
};

static void listener_init(void *obj)
{
    struct conf_listener *l = obj;
    l->tls.session_tickets = true;
    l->merge_slashes = true;
    l->pool = CONF_NO_POOL;
    l->http2 = http2_defaults;
}

bool conf_listener_offers_h2(const struct conf_listener *l)
{
    if (!l->tls.enabled)
        return false;
    if (!l->tls.nalpn) /* the default list: h2 first for HTTP, none of it for a byte relay */
        return l->mode == CONF_MODE_HTTP;
    for (unsigned i = 0; i < l->tls.nalpn; i++)
        if (strcmp(l->tls.alpn[i], "h2") == 0)
            return l->mode == CONF_MODE_HTTP;
    return false;
}

static const struct field http2_fields[] = {
    FIELD("max_concurrent_streams", parse_number, struct conf_http2, max_concurrent_streams,
          .num = &num_integer, .min = 1, .max = 10000),
    FIELD("max_header_list_size", parse_number, struct conf_http2, max_header_list_size,
          .num = &num_size, .min = 1024, .max = 1048576),
    FIELD("stream_idle_timeout", parse_number, struct conf_http2, stream_idle_ms,
          .num = &num_duration, .min = 1, .max = DAY_MS),
    FIELD("idle_timeout", parse_number, struct conf_http2, idle_ms, .num = &num_duration, .min = 1,
          .max = DAY_MS),
};
static const struct schema http2_schema = SCHEMA(http2_fields);

static const struct field listener_fields[] = {
    FIELD("name", parse_string, struct conf_listener, name),
    FIELD("bind", parse_address, struct conf_listener, bind,
          .offset2 = offsetof(struct conf_listener, addr), .required = true),
    FIELD("mode", parse_enum, struct conf_listener, mode, .names = &listener_mode_names),
    FIELD("pool", parse_string, struct conf_listener, pool_name),
    FIELD("routes", parse_list, struct conf_listener, routes,
          .offset2 = offsetof(struct conf_listener, nroutes), .sub = &route_schema),
    FIELD("request_headers", parse_submapping, struct conf_listener, request_headers,
          .sub = &header_rule_schema),
    FIELD("response_headers", parse_submapping, struct conf_listener, response_headers,
          .sub = &header_rule_schema),
    FIELD("merge_slashes", parse_bool, struct conf_listener, merge_slashes),
    FIELD("forward_normalized_path", parse_bool, struct conf_listener, forward_normalized_path),
    FIELD("tls", parse_switch, struct conf_listener, tls,
          .offset2 = offsetof(struct conf_listener, tls.enabled), .sub = &listener_tls_schema),
    FIELD("proxy_protocol", parse_submapping, struct conf_listener, proxy_protocol,
          .sub = &proxy_accept_schema),
    FIELD("h2c", parse_bool, struct conf_listener, h2c),
    FIELD("http2", parse_submapping, struct conf_listener, http2, .sub = &http2_schema),
};
static const struct schema listener_schema = SCHEMA(
    listener_fields, ENTRY(struct conf_listener), .init = listener_init, .finish = listener_finish);

#define TIMEOUT(k, member)                                                                         \
    FIELD(k, parse_number, struct conf_timeouts, member, .num = &num_duration, .min = 1,           \
          .max = DAY_MS)
static const struct field timeout_fields[] = {
    TIMEOUT("client_header", client_header_ms),
    TIMEOUT("client_idle", client_idle_ms),
    TIMEOUT("client", client_ms),
    TIMEOUT("connect", connect_ms),
    TIMEOUT("server", server_ms),
    TIMEOUT("server_idle", server_idle_ms),
    TIMEOUT("server_body_idle", server_body_idle_ms),
    TIMEOUT("tls_handshake", tls_handshake_ms),
    TIMEOUT("tunnel", tunnel_ms),
};
static const struct schema timeout_schema = SCHEMA(timeout_fields);

static const struct field limit_fields[] = {
    FIELD("max_connections", parse_number, struct conf_limits, max_connections, .num = &num_integer,
          .min = 1, .max = 10000000),
    FIELD("max_header_bytes", parse_number, struct conf_limits, max_header_bytes, .num = &num_size,
          .min = 1024, .max = 1048576),
    FIELD("max_headers", parse_number, struct conf_limits, max_headers, .num = &num_integer,
          .min = 1, .max = 10000),
};
static const struct schema limit_schema = SCHEMA(limit_fields);

static const struct field http_fields[] = {
    FIELD("underscores_in_headers", parse_enum, struct conf_http, underscores_in_headers,
          .names = &underscores_names),
};
static const struct schema http_schema = SCHEMA(http_fields);

/* The admin listener's default address, for files and flags. */
static void admin_complete(struct ctx *ctx, struct conf_admin *a)
{
    const char *why;
    if (!a->enabled || a->bind)
        return;
    if (!(a->bind = strdup(DEFAULT_ADMIN)))
        ctx->oom = true;
    else if (net_parse_addr(a->bind, &a->addr, &why) < 0) /* a numeric address: cannot fail */
        error_at(ctx, 0, 0, "admin.bind", "default %s: %s", DEFAULT_ADMIN, why);
}

static void admin_finish(struct ctx *ctx, const yaml_node_t *node, void *obj, size_t index)
{
    admin_complete(ctx, obj);
}

static const struct field admin_fields[] = {
    FIELD("bind", parse_address, struct conf_admin, bind,
          .offset2 = offsetof(struct conf_admin, addr)),
    FIELD("token", parse_string, struct conf_admin, token, .check = token_problem, .secret = true),
    FIELD("allowed_hosts", parse_strings, struct conf_admin, allowed_hosts,
          .offset2 = offsetof(struct conf_admin, nallowed_hosts), .check = allowed_host_problem),
};
static const struct schema admin_schema = SCHEMA(admin_fields, .finish = admin_finish);

static const struct field access_log_fields[] = {
    FIELD("path", parse_string, struct conf_access_log, path, .required = true),
    FIELD("format", parse_enum, struct conf_access_log, format, .names = &log_format_names),
    FIELD("max_backlog", parse_number, struct conf_access_log, max_backlog, .num = &num_size,
          .min = 65536, .max = 1u << 30),
};
static const struct schema access_log_schema = SCHEMA(access_log_fields);

static const struct field root_fields[] = {
    FIELD("threads", parse_number, struct conf, threads, .num = &num_integer, .min = 1,
          .max = 1024),
    FIELD("log_level", parse_log_level, struct conf, log_level),
    FIELD("shutdown_timeout", parse_number, struct conf, shutdown_timeout_ms, .num = &num_duration,
          .max = DAY_MS),
    FIELD("listeners", parse_list, struct conf, listeners,
          .offset2 = offsetof(struct conf, nlisteners), .min = 1, .required = true,
          .sub = &listener_schema),
    FIELD("pools", parse_list, struct conf, pools, .offset2 = offsetof(struct conf, npools),
          .min = 1, .required = true, .sub = &pool_schema),
    FIELD("timeouts", parse_submapping, struct conf, timeouts, .sub = &timeout_schema),
    FIELD("limits", parse_submapping, struct conf, limits, .sub = &limit_schema),
    FIELD("http", parse_submapping, struct conf, http, .sub = &http_schema),
    FIELD("admin", parse_switch, struct conf, admin,
          .offset2 = offsetof(struct conf, admin.enabled), .sub = &admin_schema),
    FIELD("access_log", parse_switch, struct conf, access_log,
          .offset2 = offsetof(struct conf, access_log.enabled), .sub = &access_log_schema),
    FIELD("error_log", parse_string, struct conf, error_log, .check = error_log_problem),
};
static const struct schema root_schema = SCHEMA(root_fields);

_Static_assert(ARRAY_LEN(server_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(pool_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(check_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(passive_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(listener_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(listener_tls_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(http2_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(timeout_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(limit_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(http_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(admin_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(access_log_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(root_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(route_fields) <= MAX_FIELDS, "MAX_FIELDS too small");
_Static_assert(ARRAY_LEN(match_fields) <= MAX_FIELDS, "MAX_FIELDS too small");

/* ---- checks across entries ---- */

/* The value of key in a mapping node, or NULL. */
static const yaml_node_t *map_get(struct ctx *ctx, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = get_node(ctx, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return get_node(ctx, p->value);
    }
    return NULL;
}

static const yaml_node_t *seq_get(struct ctx *ctx, const yaml_node_t *seq, size_t i)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE ||
        i >= (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start))
        return NULL;
    return get_node(ctx, seq->data.sequence.items.start[i]);
}

/* One array of entries (the listeners, the pools, or one pool's servers) for the checks below. */
struct entries {
    const char *noun;       /* "listener" */
    const char *prefix;     /* key path of the sequence: "listeners", "pools[1].servers" */
    const char *flag;       /* what names an entry in flag-mode messages: "--listen" */
    const yaml_node_t *seq; /* the sequence node; NULL without a document */
    const char *base;
    size_t n, stride;
    size_t text_off;             /* the string shown after flag (bind, address) */
    size_t line_off, column_off; /* the entry's own position, when the value has none */
};

#define ENTRIES(noun, prefix, flag, seq, type, array, n, text)                                     \
    {                                                                                              \
        noun, prefix, flag, seq, (const char *)(array), n, sizeof(type), offsetof(type, text),     \
            offsetof(type, line), offsetof(type, column)                                           \
    }

static const void *entry_field(const struct entries *e, size_t i, size_t off)
{
    return e->base + i * e->stride + off;
}

static const char *entry_str(const struct entries *e, size_t i, size_t off)
{
    const char *s;
    memcpy(&s, entry_field(e, i, off), sizeof(s));
    return s;
}

/* At key's value when the file has one, else at the entry (0:0 for flag-built entries). */
static void entry_pos(struct ctx *ctx, const struct entries *e, unsigned i, const char *key,
                      int pos[2])
{
    const yaml_node_t *v = map_get(ctx, seq_get(ctx, e->seq, i), key);
    if (v) {
        pos[0] = line_of(v);
        pos[1] = column_of(v);
    } else {
        memcpy(&pos[0], entry_field(e, i, e->line_off), sizeof(int));
        memcpy(&pos[1], entry_field(e, i, e->column_off), sizeof(int));
    }
}

static PRINTF(5, 6) void entry_error(struct ctx *ctx, const struct entries *e, unsigned i,
                                     const char *key, const char *fmt, ...)
{
    char path[PATH_SIZE], shown[ESC_SIZE];
    const char *text = entry_str(e, i, e->text_off);
    int pos[2];
    va_list ap;

    entry_pos(ctx, e, i, key, pos);
    if (ctx->file || !text)
        snprintf(path, sizeof(path), "%s[%u].%s", e->prefix, i, key);
    else
        snprintf(path, sizeof(path), "%s %s", e->flag,
                 escape(shown, sizeof(shown), text, strlen(text)));
    va_start(ap, fmt);
    verror_at(ctx, pos[0], pos[1], path, fmt, ap);
    va_end(ap);
}

/* Duplicates are found by sorting (n log n: aliases make very long lists cheap to write). */
struct ukey {
    const void *key;
    unsigned index, first;
};

struct keycmp {
    int (*cmp)(const void *a, const void *b);
};

static int str_keycmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int addr_keycmp(const void *a, const void *b)
{
    const struct net_addr *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->any != y->any)
        return x->any ? 1 : -1;
    return memcmp(&x->ss, &y->ss, x->len); /* the bytes net_addr_equal() compares */
}

static int ukey_order(const void *a, const void *b, void *arg)
{
    const struct ukey *x = a, *y = b;
    int c = ((const struct keycmp *)arg)->cmp(x->key, y->key);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/*
 * Reports each entry whose key equals an earlier entry's: the string member at off, or the
 * struct net_addr at off if is_addr. Leaves k (room for e->n) sorted by key, each with .first set
 * to the lowest index holding that key, and returns how many entries had the key set.
 */
static size_t check_unique(struct ctx *ctx, const struct entries *e, const char *key, size_t off,
                           bool is_addr, struct ukey *k)
{
    struct keycmp kc = {is_addr ? addr_keycmp : str_keycmp};
    char shown[ESC_SIZE], first_at[64] = "";
    size_t m = 0;
    int pos[2];

    for (unsigned i = 0; i < e->n; i++) {
        const void *v = is_addr ? entry_field(e, i, off) : entry_str(e, i, off);
        if (is_addr ? ((const struct net_addr *)v)->len != 0 : v != NULL)
            k[m++] = (struct ukey){v, i, i};
    }
    qsort_r(k, m, sizeof(*k), ukey_order, &kc);
    for (size_t j = 0; j < m; j++) {
        bool dup = j > 0 && kc.cmp(k[j - 1].key, k[j].key) == 0;
        k[j].first = dup ? k[j - 1].first : k[j].index;
        if (!dup)
            continue;
        entry_pos(ctx, e, k[j].first, key, pos);
        if (ctx->file)
            snprintf(first_at, sizeof(first_at), " (first used at line %d)", pos[0]);
        if (is_addr)
            entry_error(ctx, e, k[j].index, key, "address already used by another %s%s", e->noun,
                        first_at);
        else
            entry_error(ctx, e, k[j].index, key, "duplicate %s name \"%s\"%s", e->noun,
                        escape(shown, sizeof(shown), k[j].key, strlen(k[j].key)), first_at);
    }
    return m;
}

static int pool_name_cmp(const void *name, const void *elem)
{
    return strcmp(name, ((const struct ukey *)elem)->key);
}

/*
 * The admin listener cannot share an address with a traffic listener. Reported once, at admin.bind
 * if the file has it (else at the admin mapping: the default address clashed).
 */
static void check_admin(struct ctx *ctx, const struct conf *conf, const yaml_node_t *root)
{
    const struct conf_admin *a = &conf->admin;
    char shown[ESC_SIZE], other[ESC_SIZE];
    unsigned i;

    if (!a->enabled || !a->bind)
        return;
    for (i = 0; i < conf->nlisteners; i++)
        if (net_addr_equal(&a->addr, &conf->listeners[i].addr))
            break;
    if (i == conf->nlisteners)
        return;
    const struct conf_listener *l = &conf->listeners[i];
    escape(shown, sizeof(shown), a->bind, strlen(a->bind));
    if (!ctx->file) {
        const char *b = l->bind ? l->bind : "";
        error_at(ctx, 0, 0, "", "--admin %s: address already used by --listen %s", shown,
                 escape(other, sizeof(other), b, strlen(b)));
        return;
    }
    const yaml_node_t *map = map_get(ctx, root, "admin"), *bind = map_get(ctx, map, "bind");
    const yaml_node_t *at = bind ? bind : map;
    char name[ESC_SIZE + 16];
    if (l->name)
        escape(name, sizeof(name), l->name, strlen(l->name));
    else
        snprintf(name, sizeof(name), "listeners[%u]", i);
    error_at(ctx, at ? line_of(at) : 0, at ? column_of(at) : 0, "admin.bind",
             "%s%s is already the address of listener %s", shown, bind ? "" : " (the default)",
             name);
}

/* Does a match hold for every request? (It has no condition, or only path_prefix "/".) */
static bool matches_everything(const struct conf_route_match *m)
{
    return !m->nhosts && !m->path && !m->path_regex && !m->nmethods && !m->header.name &&
           !m->query.name && !m->nsnis && (!m->path_prefix || strcmp(m->path_prefix, "/") == 0);
}

/*
 * What a listener's mode allows: an HTTP listener needs a pool or routes, and a route after one
 * that matches everything could never be used; a TCP listener relays bytes to its pool, so it has
 * no routes or header rules. A pool only TCP listeners use checks its servers with a TCP connect
 * unless its health_check says otherwise.
 */
static void check_listener_mode(struct ctx *ctx, struct conf *conf, const struct entries *ls,
                                unsigned i)
{
    struct conf_listener *l = &conf->listeners[i];
    char prefix[64];
    if (l->mode == CONF_MODE_TCP) {
        static const char *const http_only[] = {"routes", "request_headers", "response_headers",
                                                "h2c", "http2"};
        bool present[] = {
            l->nroutes > 0,
            l->request_headers.nset || l->request_headers.nadd || l->request_headers.nremove,
            l->response_headers.nset || l->response_headers.nadd || l->response_headers.nremove,
            l->h2c, map_get(ctx, seq_get(ctx, ls->seq, i), "http2") != NULL};
        for (size_t j = 0; j < ARRAY_LEN(http_only); j++)
            if (present[j])
                entry_error(ctx, ls, i, http_only[j],
                            "is for HTTP listeners: a tcp listener relays bytes to its pool");
        const struct conf_pool *p =
            l->pool_name && l->pool != CONF_NO_POOL ? &conf->pools[l->pool] : NULL;
        /* a connection has no request: only the client's address can be hashed, no cookie read */
        if (p && p->balance == CONF_BALANCE_HASH && p->hash_key != CONF_HASH_CLIENT_IP)
            entry_error(ctx, ls, i, "pool",
                        "pool %s hashes hash_key: %s:%s, which a tcp listener's connections do "
                        "not have (only client_ip can be hashed in TCP mode)",
                        p->name, conf_hash_key_name(p->hash_key),
                        p->hash_key_name ? p->hash_key_name : "");
        if (p && p->protocol == CONF_POOL_H2)
            entry_error(ctx, ls, i, "pool",
                        "pool %s has protocol: h2, which is for HTTP listeners: a tcp listener "
                        "relays bytes, it has no requests to put on streams",
                        p->name);
        if (p && p->sticky.enabled)
            entry_error(ctx, ls, i, "pool",
                        "pool %s has sticky cookies, which a tcp listener's connections do not "
                        "carry (balance: hash with hash_key: client_ip keeps a client on one "
                        "server)",
                        p->name);
        if (!l->pool_name)
            entry_error(ctx, ls, i, "pool", "required: a tcp listener relays to one pool");
        else if (l->pool != CONF_NO_POOL && !conf->pools[l->pool].check_type_given) {
            bool http_user = false;
            for (unsigned j = 0; j < conf->nlisteners; j++) {
                const struct conf_listener *o = &conf->listeners[j];
                http_user |= o->mode == CONF_MODE_HTTP && o->pool == l->pool;
                for (unsigned r = 0; r < o->nroutes; r++)
                    http_user |= o->routes[r].pool_name && o->routes[r].pool == l->pool;
            }
            if (!http_user)
                conf->pools[l->pool].check.type = CONF_CHECK_TCP;
        }
        return;
    }
    if (l->h2c && l->tls.enabled)
        entry_error(ctx, ls, i, "h2c",
                    "is for plain listeners: a TLS listener offers h2 through tls.alpn");
    if (!l->pool_name && l->nroutes == 0)
        entry_error(ctx, ls, i, "pool",
                    "required key is missing (a listener without routes sends everything to "
                    "its pool)");
    snprintf(prefix, sizeof(prefix), "listeners[%u].routes", i);
    struct entries rs =
        ENTRIES("route", prefix, "route", map_get(ctx, seq_get(ctx, ls->seq, i), "routes"),
                struct conf_route, l->routes, l->nroutes, name);
    for (unsigned j = 0; j + 1 < l->nroutes; j++) {
        /* a condition that was refused leaves its field empty: not a catch-all, just an error */
        const yaml_node_t *m = map_get(ctx, seq_get(ctx, rs.seq, j), "match");
        size_t written = m && m->type == YAML_MAPPING_NODE
                             ? (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start)
                             : 0;
        bool prefix_only = l->routes[j].match.path_prefix != NULL;
        if (!l->routes[j].has_match || !matches_everything(&l->routes[j].match) ||
            written > (prefix_only ? 1u : 0u))
            continue;
        for (unsigned later = j + 1; later < l->nroutes; later++)
            entry_error(ctx, &rs, later, "match",
                        "unreachable: routes[%u] (%s) before it matches every request", j,
                        l->routes[j].name ? l->routes[j].name : "");
        break;
    }
}

/*
 * The checks that span entries: unique names and addresses, and every listener's pool resolved
 * to an index. Shared by files and flags; ctx->doc, if set, only improves the positions.
 */
static void validate(struct ctx *ctx, struct conf *conf)
{
    const yaml_node_t *root = ctx->doc ? yaml_document_get_root_node(ctx->doc) : NULL;
    struct entries ls =
        ENTRIES("listener", "listeners", "--listen", map_get(ctx, root, "listeners"),
                struct conf_listener, conf->listeners, conf->nlisteners, bind);
    struct entries ps = ENTRIES("pool", "pools", "pool", map_get(ctx, root, "pools"),
                                struct conf_pool, conf->pools, conf->npools, name);
    char prefix[64], names[256], shown[ESC_SIZE];
    size_t most = conf->nlisteners > conf->npools ? conf->nlisteners : conf->npools;
    size_t nservers = 0;
    struct ukey *k;

    /* Not given (0): a body may stay silent as long as a head may take. */
    if (!conf->timeouts.server_body_idle_ms)
        conf->timeouts.server_body_idle_ms = conf->timeouts.server_ms;
    for (unsigned i = 0; i < conf->npools; i++) {
        most = conf->pools[i].nservers > most ? conf->pools[i].nservers : most;
        nservers += conf->pools[i].nservers;
    }
    for (unsigned i = 0; i < conf->nlisteners; i++)
        most = conf->listeners[i].nroutes > most ? conf->listeners[i].nroutes : most;
    /* A file without these already got "required key is missing" from the walker. The flags'
     * pool may exist without servers: --health-check creates it too. */
    if (!ctx->file && conf->nlisteners == 0)
        error_at(ctx, 0, 0, "", "no address to listen on: give at least one --listen ADDR");
    if (!ctx->file && nservers == 0)
        error_at(ctx, 0, 0, "", "no backend server: give at least one --server ADDR");
    check_admin(ctx, conf, root);
    if (most == 0)
        return;
    if (!(k = malloc(most * sizeof(*k)))) {
        ctx->oom = true;
        return;
    }
    check_unique(ctx, &ls, "name", offsetof(struct conf_listener, name), false, k);
    check_unique(ctx, &ls, "bind", offsetof(struct conf_listener, addr), true, k);
    for (unsigned i = 0; i < conf->npools; i++) {
        const struct conf_pool *p = &conf->pools[i];
        snprintf(prefix, sizeof(prefix), "pools[%u].servers", i);
        struct entries ss =
            ENTRIES("server", prefix, "--server", map_get(ctx, seq_get(ctx, ps.seq, i), "servers"),
                    struct conf_server, p->servers, p->nservers, address);
        check_unique(ctx, &ss, "name", offsetof(struct conf_server, name), false, k);
    }
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        snprintf(prefix, sizeof(prefix), "listeners[%u].routes", i);
        struct entries rs =
            ENTRIES("route", prefix, "route", map_get(ctx, seq_get(ctx, ls.seq, i), "routes"),
                    struct conf_route, l->routes, l->nroutes, name);
        check_unique(ctx, &rs, "name", offsetof(struct conf_route, name), false, k);
    }
    size_t m = check_unique(ctx, &ps, "name", offsetof(struct conf_pool, name), false, k);

    /* A pool whose name is broken may be the one a listener meant: its own error says enough. */
    if (m == conf->npools && m > 0) {
        size_t o = 0; /* the defined names, sorted, each once, for the message below */
        for (size_t j = 0; j < m; j++) {
            if (k[j].first != k[j].index)
                continue;
            escape(shown, sizeof(shown), k[j].key, strlen(k[j].key));
            if (o + strlen(shown) + 8 > sizeof(names)) {
                snprintf(names + o, sizeof(names) - o, ", ...");
                break;
            }
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", o ? ", " : "", shown);
        }
        for (unsigned i = 0; i < conf->nlisteners; i++) {
            struct conf_listener *l = &conf->listeners[i];
            const struct ukey *hit =
                l->pool_name ? bsearch(l->pool_name, k, m, sizeof(*k), pool_name_cmp) : NULL;
            if (hit)
                l->pool = hit->first;
            else if (l->pool_name)
                entry_error(ctx, &ls, i, "pool", "pool \"%s\" is not defined (pools: %s)",
                            escape(shown, sizeof(shown), l->pool_name, strlen(l->pool_name)),
                            names);
            snprintf(prefix, sizeof(prefix), "listeners[%u].routes", i);
            struct entries rs =
                ENTRIES("route", prefix, "route", map_get(ctx, seq_get(ctx, ls.seq, i), "routes"),
                        struct conf_route, l->routes, l->nroutes, name);
            for (unsigned j = 0; j < l->nroutes; j++) {
                struct conf_route *r = &l->routes[j];
                hit = r->pool_name ? bsearch(r->pool_name, k, m, sizeof(*k), pool_name_cmp) : NULL;
                if (hit)
                    r->pool = hit->first;
                else if (r->pool_name)
                    entry_error(ctx, &rs, j, "pool", "pool \"%s\" is not defined (pools: %s)",
                                escape(shown, sizeof(shown), r->pool_name, strlen(r->pool_name)),
                                names);
            }
        }
    }
    for (unsigned i = 0; i < conf->nlisteners; i++)
        check_listener_mode(ctx, conf, &ls, i);
    free(k);
}

/* ---- loading ---- */

static void syntax_error(struct ctx *ctx, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (p->error == YAML_MEMORY_ERROR) {
        ctx->oom = true;
    } else if (p->error == YAML_READER_ERROR) {
        /* Encoding errors carry a byte offset, not a mark: count the lines up to it. */
        int line = 1, column = 1;
        for (size_t i = 0; i < p->problem_offset && i < ctx->len; i++) {
            column++;
            if (ctx->text[i] == '\n') {
                line++;
                column = 1;
            }
        }
        if (p->problem_value >= 0)
            error_at(ctx, line, column, "", "invalid input: %s (0x%x)", problem,
                     (unsigned)p->problem_value);
        else
            error_at(ctx, line, column, "", "invalid input: %s", problem);
    } else if (p->context) {
        error_at(ctx, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, "",
                 "YAML syntax error: %s (%s at line %d, column %d)", problem, p->context,
                 (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    } else {
        error_at(ctx, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, "",
                 "YAML syntax error: %s", problem);
    }
}

struct conf *conf_load_string(const char *text, size_t len, const char *name, char **errors)
{
    struct ctx ctx = {.file = name ? name : "<string>", .text = text ? text : "", .len = len};
    struct conf *conf = conf_new();
    yaml_parser_t parser;
    yaml_document_t doc, next;

    if (!text)
        len = ctx.len = 0;
    if (!conf || !(conf->path = strdup(ctx.file)) || !yaml_parser_initialize(&parser)) {
        conf_free(conf);
        fail(errors, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx.text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&ctx, &parser);
    } else {
        ctx.doc = &doc;
        const yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root) {
            parse_mapping(&ctx, root, conf, &root_schema);
        } else { /* empty input: every required key is missing */
            const yaml_node_t *none[MAX_FIELDS] = {NULL};
            report_missing(&ctx, &root_schema, none, 1, 1);
        }
        validate(&ctx, conf);
        /* A second document would be silently ignored otherwise. */
        if (!yaml_parser_load(&parser, &next)) {
            syntax_error(&ctx, &parser);
        } else {
            const yaml_node_t *extra = yaml_document_get_root_node(&next);
            if (extra)
                error_at(&ctx, line_of(extra), column_of(extra), "",
                         "only one YAML document is allowed");
            yaml_document_delete(&next);
        }
        yaml_document_delete(&doc);
        ctx.doc = NULL;
    }
    yaml_parser_delete(&parser);
    if (finish_errors(&ctx, errors) < 0) {
        conf_free(conf);
        return NULL;
    }
    return conf;
}

struct conf *conf_load_file(const char *path, char **errors)
{
    char *buf = NULL, *bigger;
    size_t len = 0, cap = 0, n;
    struct conf *conf = NULL;

    if (errors)
        *errors = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        fail(errors, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (len == cap) {
            if (cap > MAX_FILE_SIZE) {
                fail(errors, "%s: file too large (the limit is %u MiB)", path, MAX_FILE_SIZE >> 20);
                goto out;
            }
            cap = cap ? cap * 2 : 4096;
            if (!(bigger = realloc(buf, cap))) {
                fail(errors, "out of memory");
                goto out;
            }
            buf = bigger;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f))
        fail(errors, "%s: cannot read: %s", path, strerror(errno));
    else
        conf = conf_load_string(buf, len, path, errors);
out:
    fclose(f);
    free(buf);
    return conf;
}

/* ---- quick start ---- */

struct conf *conf_new(void)
{
    struct conf *conf = calloc(1, sizeof(*conf));
    if (!conf)
        return NULL;
    conf->log_level = LOG_INFO;
    conf->shutdown_timeout_ms = SECONDS(10);
    conf->timeouts = (struct conf_timeouts){.client_header_ms = SECONDS(10),
                                            .client_idle_ms = SECONDS(60),
                                            .client_ms = SECONDS(60),
                                            .connect_ms = SECONDS(3),
                                            .server_ms = SECONDS(30),
                                            .server_idle_ms = SECONDS(15),
                                            .tls_handshake_ms = SECONDS(10),
                                            .tunnel_ms = SECONDS(3600)};
    conf->access_log.max_backlog = 16u << 20;
    conf->limits = (struct conf_limits){
        .max_connections = 10000, .max_header_bytes = 16384, .max_headers = 100};
    return conf;
}

int conf_add_listen_flag(struct conf *conf, const char *addr, char **error)
{
    char shown[ESC_SIZE];
    struct net_addr na;
    const char *why;

    if (error)
        *error = NULL;
    if (!addr)
        addr = "";
    if (net_parse_addr(addr, &na, &why) < 0)
        return fail(error, "--listen %s: %s", escape(shown, sizeof(shown), addr, strlen(addr)),
                    why);
    struct conf_listener *v =
        realloc(conf->listeners, (conf->nlisteners + 1) * sizeof(*conf->listeners));
    if (!v)
        return fail(error, "out of memory");
    conf->listeners = v;
    struct conf_listener *l = &v[conf->nlisteners];
    *l = (struct conf_listener){
        .addr = na, .merge_slashes = true, .pool = CONF_NO_POOL, .http2 = http2_defaults};
    l->bind = strdup(addr);
    l->pool_name = strdup(DEFAULT_POOL);
    if (asprintf(&l->name, "listener%u", conf->nlisteners + 1) < 0)
        l->name = NULL;
    if (!l->bind || !l->pool_name || !l->name) {
        free(l->bind);
        free(l->pool_name);
        free(l->name);
        return fail(error, "out of memory");
    }
    conf->nlisteners++;
    return 0;
}

static struct conf_pool *default_pool(struct conf *conf)
{
    for (unsigned i = 0; i < conf->npools; i++)
        if (conf->pools[i].name && strcmp(conf->pools[i].name, DEFAULT_POOL) == 0)
            return &conf->pools[i];
    char *name = strdup(DEFAULT_POOL);
    struct conf_pool *v = name ? realloc(conf->pools, (conf->npools + 1) * sizeof(*v)) : NULL;
    if (!v) {
        free(name);
        return NULL;
    }
    conf->pools = v;
    v[conf->npools] = (struct conf_pool){.name = name, .balance = CONF_BALANCE_ROUND_ROBIN};
    pool_init(&v[conf->npools]);
    return &v[conf->npools++];
}

int conf_add_server_flag(struct conf *conf, const char *spec, char **error)
{
    char shown[ESC_SIZE], oshown[ESC_SIZE];
    struct conf_server srv = {.weight = 1};
    const char *problem = NULL;
    uint64_t w;

    if (error)
        *error = NULL;
    if (!spec)
        spec = "";
    escape(shown, sizeof(shown), spec, strlen(spec));
    char *copy = strdup(spec), *next = copy ? strchr(copy, ',') : NULL;
    if (!copy)
        return fail(error, "out of memory");
    if (next)
        *next++ = '\0';
    if (net_parse_addr(copy, &srv.addr, &problem) < 0)
        goto out;
    /* Options in any order; a repeated one overrides the earlier, as flags usually do. */
    for (char *opt = next; opt && !problem; opt = next) {
        if ((next = strchr(opt, ',')))
            *next++ = '\0';
        if (strncmp(opt, "weight=", 7) == 0) {
            if (parse_scaled(opt + 7, plain_units, CONF_MAX_WEIGHT, &w) == NUM_OK)
                srv.weight = (unsigned)w;
            else {
                fail(error, "--server %s: weight must be an integer from 0 to %d", shown,
                     CONF_MAX_WEIGHT);
                problem = ""; /* reported */
            }
        } else if (strncmp(opt, "name=", 5) == 0) {
            free(srv.name);
            srv.name = opt[5] ? strdup(opt + 5) : NULL;
            if (!srv.name)
                problem = opt[5] ? "out of memory" : "name must not be empty";
        } else {
            fail(error, "--server %s: unknown option \"%s\" (expected weight=N or name=NAME)",
                 shown, escape(oshown, sizeof(oshown), opt, strlen(opt)));
            problem = ""; /* reported */
        }
    }
    if (problem)
        goto out;
    srv.address = strdup(copy);
    if (!srv.name)
        srv.name = strdup(copy);
    struct conf_pool *pool = (srv.address && srv.name) ? default_pool(conf) : NULL;
    struct conf_server *v = pool ? realloc(pool->servers, (pool->nservers + 1) * sizeof(*v)) : NULL;
    if (!v) {
        problem = "out of memory";
        goto out;
    }
    pool->servers = v;
    v[pool->nservers++] = srv;
    free(copy);
    return 0;
out:
    if (*problem)
        fail(error, "--server %s: %s", shown, problem);
    free(srv.name);
    free(srv.address);
    free(copy);
    return -1;
}

/*
 * The health flags are kept in the quick-start pool itself (created here if no --server came
 * first); conf_finish() derives the rest from them, as for a file.
 */
int conf_set_health_check_flag(struct conf *conf, const char *path, char **error)
{
    char shown[ESC_SIZE];
    const char *why;
    struct conf_pool *pool;
    char *copy;

    if (error)
        *error = NULL;
    if (!path)
        path = "";
    if ((why = path_problem(path)))
        return fail(error, "--health-check %s: the path %s",
                    escape(shown, sizeof(shown), path, strlen(path)), why);
    if (!(copy = strdup(path)) || !(pool = default_pool(conf))) {
        free(copy);
        return fail(error, "out of memory");
    }
    free(pool->check.path); /* given twice: the last one counts */
    pool->check.path = copy;
    pool->check.enabled = true;
    return 0;
}

int conf_set_balance_flag(struct conf *conf, const char *name, char **error)
{
    char shown[ESC_SIZE];
    if (error)
        *error = NULL;
    if (!name)
        name = "";
    for (unsigned i = 0; i < CONF_BALANCE_COUNT; i++) {
        if (strcmp(name, balance_names.names[i]) != 0)
            continue;
        struct conf_pool *pool = default_pool(conf);
        if (!pool)
            return fail(error, "out of memory");
        pool->balance = (enum conf_balance)i;
        return 0;
    }
    return fail(error,
                "--balance %s: expected round-robin, least-conn, random, hash (of the client's "
                "address) or peak-ewma",
                escape(shown, sizeof(shown), name, strlen(name)));
}

int conf_set_health_interval_flag(struct conf *conf, const char *duration, char **error)
{
    char shown[ESC_SIZE], why[128];
    struct conf_pool *pool;
    uint32_t ms;

    if (error)
        *error = NULL;
    if (!duration)
        duration = "";
    if (check_duration(duration, CHECK_MIN_MS, HOUR_MS, &ms, why, sizeof(why)) != NUM_OK)
        return fail(error, "--health-interval %s: %s",
                    escape(shown, sizeof(shown), duration, strlen(duration)), why);
    if (!(pool = default_pool(conf)))
        return fail(error, "out of memory");
    pool->check.interval_ms = ms;
    pool->check.enabled = true; /* of the default path unless --health-check gives one */
    return 0;
}

/* Given twice, the last --tls-cert or --tls-key counts. */
int conf_set_tls_flag(struct conf *conf, bool key, const char *path, char **error)
{
    if (error)
        *error = NULL;
    if (!path || !*path)
        return fail(error, "%s: expected a file name", key ? "--tls-key" : "--tls-cert");
    char *copy = strdup(path);
    if (!copy)
        return fail(error, "out of memory");
    char **slot = key ? &conf->tls_flags.key : &conf->tls_flags.cert;
    free(*slot);
    *slot = copy;
    return 0;
}

/* --tls-cert and --tls-key make every --listen an HTTPS listener with that one certificate. */
static void apply_tls_flags(struct ctx *ctx, struct conf *conf)
{
    const struct conf_tls_certificate *f = &conf->tls_flags;
    if (!f->cert && !f->key)
        return;
    if (!f->cert || !f->key) {
        error_at(ctx, 0, 0, "", "%s needs %s as well", f->cert ? "--tls-cert" : "--tls-key",
                 f->cert ? "--tls-key FILE" : "--tls-cert FILE");
        return;
    }
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        struct conf_listener_tls *t = &conf->listeners[i].tls;
        if (t->enabled)
            continue;
        t->certificates = calloc(1, sizeof(*t->certificates));
        if (!t->certificates) {
            ctx->oom = true;
            return;
        }
        t->ncertificates = 1;
        t->certificates[0].cert = strdup(f->cert);
        t->certificates[0].key = strdup(f->key);
        if (!t->certificates[0].cert || !t->certificates[0].key)
            ctx->oom = true;
        t->enabled = true;
        t->session_tickets = true;
    }
}

/* Given twice, the last --admin or --access-log counts. */
int conf_set_admin_flag(struct conf *conf, const char *addr, char **error)
{
    char shown[ESC_SIZE], *copy;
    struct net_addr na;
    const char *why;

    if (error)
        *error = NULL;
    if (!addr)
        addr = "";
    if (net_parse_addr(addr, &na, &why) < 0)
        return fail(error, "--admin %s: %s", escape(shown, sizeof(shown), addr, strlen(addr)), why);
    if (!(copy = strdup(addr)))
        return fail(error, "out of memory");
    free(conf->admin.bind);
    conf->admin.bind = copy;
    conf->admin.addr = na;
    conf->admin.enabled = true;
    return 0;
}

int conf_set_access_log_flag(struct conf *conf, const char *path, char **error)
{
    char *copy;

    if (error)
        *error = NULL;
    if (!path || !*path)
        return fail(error, "--access-log : the path must not be empty");
    if (!(copy = strdup(path)))
        return fail(error, "out of memory");
    free(conf->access_log.path);
    conf->access_log.path = copy;
    conf->access_log.format = CONF_LOG_JSON;
    conf->access_log.enabled = true;
    return 0;
}

int conf_finish(struct conf *conf, char **errors)
{
    struct ctx ctx = {.file = conf->path};
    for (unsigned i = 0; i < conf->npools; i++)
        pool_complete(&ctx, &conf->pools[i]);
    admin_complete(&ctx, &conf->admin);
    apply_tls_flags(&ctx, conf);
    validate(&ctx, conf);
    return finish_errors(&ctx, errors);
}

/* What parse_strings() made: n strings and their array. */
static void free_strings(char **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_headers(struct conf_header *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

static void free_header_rules(struct conf_header_rules *h)
{
    free_headers(h->set, h->nset);
    free_headers(h->add, h->nadd);
    free_strings(h->remove, h->nremove);
}

static void free_route(struct conf_route *r)
{
    struct conf_route_match *m = &r->match;
    free(r->name);
    free_strings(m->hosts, m->nhosts);
    free(m->path);
    free(m->path_prefix);
    free(m->path_regex);
    free_strings(m->methods, m->nmethods);
    free(m->header.name);
    free(m->header.value);
    free(m->query.name);
    free(m->query.value);
    free_strings(m->snis, m->nsnis);
    free(r->pool_name);
    free(r->redirect.location);
    free(r->redirect.scheme);
    free(r->redirect.host);
    free(r->respond.body);
    free(r->respond.content_type);
    free_header_rules(&r->request_headers);
    free_header_rules(&r->response_headers);
}

void conf_free(struct conf *conf)
{
    if (!conf)
        return;
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        struct conf_listener *l = &conf->listeners[i];
        free(l->name);
        free(l->bind);
        free(l->pool_name);
        for (unsigned j = 0; j < l->tls.ncertificates; j++) {
            free(l->tls.certificates[j].cert);
            free(l->tls.certificates[j].key);
        }
        free(l->tls.certificates);
        free(l->tls.default_certificate);
        free(l->tls.ciphers);
        free_strings(l->tls.alpn, l->tls.nalpn);
        free(l->tls.client_ca);
        free(l->tls.client_subject_header);
        free(l->proxy_protocol.trusted);
        for (unsigned j = 0; j < l->nroutes; j++)
            free_route(&l->routes[j]);
        free(l->routes);
        free_header_rules(&l->request_headers);
        free_header_rules(&l->response_headers);
    }
    free(conf->tls_flags.cert);
    free(conf->tls_flags.key);
    for (unsigned i = 0; i < conf->npools; i++) {
        struct conf_pool *p = &conf->pools[i];
        for (unsigned j = 0; j < p->nservers; j++) {
            free(p->servers[j].name);
            free(p->servers[j].address);
        }
        free(p->servers);
        free(p->name);
        free(p->check.method);
        free(p->check.path);
        free(p->check.host);
        free(p->check.expect_body);
        free(p->check.service);
        free(p->tls.ca);
        free(p->tls.sni);
        free(p->tls.cert);
        free(p->tls.key);
        free(p->hash_key_name);
        free(p->sticky.cookie);
        free(p->sticky.path);
        free(p->sticky.attributes);
        free(p->discovery.dns.name);
        free(p->discovery.dns.resolvers);
        struct conf_etcd_discovery *e = &p->discovery.etcd;
        for (unsigned j = 0; j < e->nendpoints; j++) {
            free(e->endpoints[j]);
            free(e->endpoint_hosts ? e->endpoint_hosts[j] : NULL);
        }
        free(e->endpoints);
        free(e->endpoint_hosts);
        free(e->endpoint_addrs);
        free(e->prefix);
        free(e->tls.ca);
        free(e->tls.sni);
        free(e->tls.cert);
        free(e->tls.key);
    }
    free(conf->listeners);
    free(conf->pools);
    free(conf->admin.bind);
    free(conf->admin.token);
    free_strings(conf->admin.allowed_hosts, conf->admin.nallowed_hosts);
    free(conf->access_log.path);
    free(conf->error_log);
    free(conf->path);
    free(conf);
}
