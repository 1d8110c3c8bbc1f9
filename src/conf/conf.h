/*
 * conf.h - the configuration: a YAML file (or quick-start flags) turned into a validated,
 * immutable struct conf.
 *
 * conf.c only parses and validates; it starts nothing. Every problem found is reported, not just
 * the first, each as one line "FILE:LINE:COLUMN: KEY.PATH: message", so that `fulcrum -t` can show
 * them all at once. Unknown keys, wrong types and duplicate keys are errors. Defaults are applied
 * here, so the rest of fulcrum never sees an unset value.
 *
 * Ownership: a struct conf owns every string and array it points to; conf_free() releases all.
 * After conf_load_*() or conf_finish() succeeds, nothing in it changes.
 */
#ifndef FULCRUM_CONF_H
#define FULCRUM_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/net.h"

#define CONF_MAX_WEIGHT 256

/*
 * The balancing algorithms a pool may name in `balance`. Their names are listed once, in conf.c
 * (balance_names), so that validation reports an unknown one with its file:line:column; the
 * registry in lb/lb.c maps each member to its implementation. conf is the lower layer and may not
 * include lb/, so the list of names lives here and lb/ reads it (conf_balance_name()).
 */
enum conf_balance {
    CONF_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round-robin, one rotation per pool */
    CONF_BALANCE_LEAST_CONN,      /* fewest requests in flight per weight */
    CONF_BALANCE_RANDOM,          /* power of `choices` random choices */
    CONF_BALANCE_HASH,            /* Maglev consistent hashing of hash_key */
    CONF_BALANCE_PEAK_EWMA,       /* latency estimate x load, of `choices` random choices */
    CONF_BALANCE_COUNT            /* not an algorithm: how many there are */
};

/* What `balance: hash` hashes (hash_key). */
enum conf_hash_key {
    CONF_HASH_CLIENT_IP = 0, /* the client's address (the default) */
    CONF_HASH_HEADER,        /* header:NAME, the first field of that name */
    CONF_HASH_COOKIE,        /* cookie:NAME */
    CONF_HASH_QUERY,         /* query:NAME, the first parameter of that name */
    CONF_HASH_PATH,          /* the path, without the query */
    CONF_HASH_URI,           /* the request target as received, query included */
};

enum conf_samesite {
    CONF_SAMESITE_LAX = 0, /* the default */
    CONF_SAMESITE_STRICT,
    CONF_SAMESITE_NONE, /* needs secure: browsers refuse it otherwise */
};

/* Sticky sessions (the pool's sticky mapping): a cookie names the server that served a client. */
struct conf_sticky {
    bool enabled;
    char *cookie;          /* its name (required) */
    uint32_t max_age;      /* seconds; 0: a session cookie (the default) */
    bool secure, httponly; /* attributes (default false, true) */
    enum conf_samesite samesite;
    char *path;       /* Path attribute (default "/") */
    char *attributes; /* "; Path=/; ...; SameSite=Lax", made once from the above (validation) */
};

/* The name the configuration uses for balance ("round-robin"); NULL if it is not a member. */
const char *conf_balance_name(enum conf_balance balance);
/* The attributes of a sticky cookie as Set-Cookie carries them after NAME=VALUE:
 * "; Path=/[; Max-Age=N][; Secure][; HttpOnly]; SameSite=Lax". Malloc'ed; NULL: out of memory.
 * Validation stores it in sticky->attributes. */
struct conf_sticky;
char *conf_sticky_attributes(const struct conf_sticky *sticky);

/* The form hash_key is written in ("client_ip", "header", ...). */
const char *conf_hash_key_name(enum conf_hash_key key);

/* Maglev tables hold a prime number of entries, at least this many per server. */
#define CONF_HASH_TABLE_PER_SERVER 100
#define CONF_HASH_TABLE_DEFAULT    65537u
#define CONF_HASH_TABLE_MAX        16777213u /* the largest prime below 2^24 */

/* A set of HTTP status codes (100-599) as a bitmap: bit n set means status n is in the set. */
struct conf_status_set {
    uint64_t bits[10];
};

static inline bool conf_status_in(const struct conf_status_set *set, unsigned status)
{
    return status < 640 && (set->bits[status / 64] >> (status % 64)) & 1u;
}

enum conf_check_type {
    CONF_CHECK_HTTP = 0, /* a request; the status (and optionally the body) decides */
    CONF_CHECK_TCP,      /* a connection that opens passes */
    CONF_CHECK_GRPC,     /* grpc.health.v1.Health/Check over HTTP/2 answers SERVING */
};

/* Active health checks of a pool's servers (the pool's health_check mapping). */
struct conf_health_check {
    bool enabled; /* the mapping is present (or --health-check was given) */
    enum conf_check_type type;
    char *method;                         /* default "GET" */
    char *path;                           /* default "/healthcheck" */
    char *host;                           /* Host field; NULL: the server's address */
    struct conf_status_set expect_status; /* default 200-399 */
    char *expect_body;                    /* substring the body must contain; NULL: none */
    unsigned port;                        /* port to check; 0: the server's own */
    char *service;             /* grpc: the service asked about; NULL: "" (the server as a whole) */
    uint32_t interval_ms;      /* while the state is stable (default 2s) */
    uint32_t fast_interval_ms; /* while moving between states (default: interval) */
    uint32_t down_interval_ms; /* while fully down (default: interval) */
    uint32_t timeout_ms;       /* connect + response (default: min(interval, 2s)) */
    unsigned rise;             /* consecutive passes to go up (default 2) */
    unsigned fall;             /* consecutive failures to go down (default 3) */
};

/* Passive detection: real traffic failures take a server out for a while (the pool's passive
 * mapping). On by default, with these defaults. */
struct conf_passive {
    unsigned consecutive_failures;         /* default 5; 0 turns passive detection off */
    struct conf_status_set failure_status; /* backend statuses that count (default 502-504) */
    uint32_t ejection_time_ms;             /* times the ejection count (default 30s) */
    uint32_t max_ejection_time_ms;         /* cap (default 300s) */
    unsigned max_ejected_percent;          /* of a pool's servers, at once (default 50) */
};

enum conf_when_all_down {
    CONF_ALL_DOWN_REJECT = 0, /* 503 with Retry-After */
    CONF_ALL_DOWN_USE_ALL,    /* try every server anyway (panic mode) */
};

struct conf_server {
    char *name;    /* defaults to the address text */
    char *address; /* as written */
    struct net_addr addr;
    unsigned weight; /* 0-256; 0 takes no new requests; default 1 */
    int line, column;
};

/* Re-encryption: TLS from fulcrum to a pool's servers (the pool's tls mapping). */
struct conf_pool_tls {
    bool enabled;
    bool verify;      /* check the server's chain and name (default true) */
    char *ca;         /* PEM of trusted CAs; NULL: the system's store */
    char *sni;        /* the name sent and verified; NULL: the address's host part, if a name */
    char *cert, *key; /* a client certificate for servers that ask for one; NULL: none */
};

/* The PROXY protocol header sent to a pool's servers before each connection's bytes. */
enum conf_proxy_send {
    CONF_PROXY_SEND_NONE = 0, /* the default */
    CONF_PROXY_SEND_V1,       /* text (HAProxy's send-proxy) */
    CONF_PROXY_SEND_V2,       /* binary (send-proxy-v2) */
};

/* How a pool's requests reach its servers (docs/http2.md, "gRPC servers"). */
enum conf_pool_protocol {
    CONF_POOL_HTTP1 = 0, /* HTTP/1.1, one request per pooled connection at a time (default) */
    CONF_POOL_H2,        /* HTTP/2: many streams over a few connections per server */
};

/* Where discovery gets a pool's servers from (docs/discovery.md). */
enum conf_dns_type {
    CONF_DNS_SRV = 0, /* target, port and weight from SRV records (the default) */
    CONF_DNS_A,       /* IPv4 addresses, with the mapping's port */
    CONF_DNS_AAAA,    /* IPv6 addresses, with the mapping's port */
    CONF_DNS_A_AAAA,  /* both */
};

/* A pool's servers from DNS (discovery.dns). */
struct conf_dns_discovery {
    bool enabled;
    char *name;                 /* the name queried (required) */
    enum conf_dns_type type;    /* default SRV */
    unsigned port;              /* A/AAAA: the servers' port (required for them); SRV: unused */
    struct net_addr *resolvers; /* NULL: the system's (/etc/resolv.conf) */
    unsigned nresolvers;
    uint32_t interval_ms;      /* re-resolve at min(interval, TTL), at least 1s (default 5s) */
    uint32_t hold_on_error_ms; /* keep the last good answer this long on failure (default 5m) */
    uint32_t timeout_ms;       /* one query, retries included (default 2s) */
};

/* A pool's servers from an etcd registry (discovery.etcd): each key under prefix is a server,
 * its value JSON {"address": "10.0.0.5:8080", "name": "api-5", "weight": 2}. */
struct conf_etcd_discovery {
    bool enabled;
    char **endpoints;                /* "http(s)://HOST:PORT" as written (at least one) */
    struct net_addr *endpoint_addrs; /* resolved at load, same order */
    char **endpoint_hosts;           /* "HOST:PORT" for the Host field, same order */
    unsigned nendpoints;
    char *prefix;              /* required, not empty */
    uint32_t timeout_ms;       /* connect and each request but the watch (default 2s) */
    uint32_t hold_on_error_ms; /* keep the last set while etcd is unreachable; 0: for ever
                                * (the default) */
    bool https;                /* the endpoints are https:// (all of them, or none) */
    struct conf_pool_tls tls;  /* with https: the CA, the name checked, a client certificate
                                * (enabled: a tls mapping was written) */
};

struct conf_discovery {
    struct conf_dns_discovery dns;
    struct conf_etcd_discovery etcd;
};

#define CONF_MAX_SERVERS_DEFAULT 1024u

struct conf_pool {
    char *name;
    enum conf_balance balance;
    enum conf_pool_protocol protocol;
    struct conf_server *servers;
    unsigned nservers;
    struct conf_health_check check;
    struct conf_passive passive;
    unsigned retries;       /* other servers tried after a failure (default 2) */
    bool retry_on_timeout;  /* an idempotent request whose response head did not come in time
                             * is tried elsewhere too (default false: 504) */
    uint32_t slow_start_ms; /* weight ramp after a server comes back (default 0: off) */
    enum conf_when_all_down when_all_down;
    bool ignore_client_abort; /* finish a request whose client went away (default false: abort) */
    struct conf_pool_tls tls;
    enum conf_proxy_send proxy_protocol; /* to the servers, health checks included */
    /* balancing (docs/balancing.md); each key applies to the algorithms named */
    unsigned choices;             /* random, peak-ewma: servers compared per pick (default 2) */
    enum conf_hash_key hash_key;  /* hash */
    char *hash_key_name;          /* header, cookie or query name; NULL for the others */
    bool hash_key_required;       /* hash: a request without the key gets 503 (default false) */
    unsigned hash_table_size;     /* hash: Maglev table entries, a prime (default 65537) */
    unsigned hash_balance_factor; /* hash: bounded load, percent of the average; 0: off */
    uint32_t ewma_decay_ms;       /* peak-ewma: time constant (default 10s) */
    uint32_t ewma_default_ms;     /* peak-ewma: estimate of a server without one (default 10ms) */
    struct conf_sticky sticky;
    struct conf_discovery discovery;
    unsigned max_servers;  /* configured + discovered servers at most (default 1024) */
    bool check_type_given; /* health_check.type was written (else tcp listeners' pools check
                            * with a TCP connect) */
    int line, column;
};

/* One certificate of a TLS listener: a PEM file that may hold the chain after it, and its key. */
struct conf_tls_certificate {
    char *cert, *key; /* as written; relative paths are from the configuration file's folder */
    int line, column;
};

enum conf_tls_version {
    CONF_TLS_1_2 = 0, /* the default; nothing older is ever offered */
    CONF_TLS_1_3,
};

/* A listener's TLS termination (its tls mapping, or --tls-cert/--tls-key). */
struct conf_listener_tls {
    bool enabled;
    struct conf_tls_certificate *certificates; /* at least one */
    unsigned ncertificates;
    char *default_certificate; /* a cert path of the list; NULL: the first */
    bool sni_strict;           /* a server name no certificate covers gets an alert */
    enum conf_tls_version min_version;
    char *ciphers; /* TLS 1.2 cipher list; NULL: Mozilla "intermediate" */
    char **alpn;   /* protocols offered, in order of preference; NULL: h2 and http/1.1 (HTTP
                    * listeners) or http/1.1 (TCP mode) */
    unsigned nalpn;
    char *client_ca; /* PEM of CAs whose client certificates are required; NULL: no mTLS */
    char *client_subject_header; /* the verified client certificate's subject goes here */
    bool session_tickets;        /* default true */
};

/* The PROXY protocol on a listener (its proxy_protocol mapping): a header that a trusted load
 * balancer in front sends before each connection's bytes, naming the real client. */
struct conf_proxy_accept {
    bool accept;              /* read the header (default false) */
    struct net_cidr *trusted; /* only connections from these ranges may send it */
    unsigned ntrusted;
};

/* One header field of a rule (set or add) or of a match (header, query): name and value. */
struct conf_header {
    char *name;
    char *value; /* in a match: NULL means the field only has to be present */
    int line, column;
};

/* Header rules of a listener or a route (request_headers, response_headers). Applied in the
 * order remove, set (replaces every field of that name), add (appends one more). */
struct conf_header_rules {
    struct conf_header *set;
    unsigned nset;
    struct conf_header *add;
    unsigned nadd;
    char **remove;
    unsigned nremove;
};

/* What a route matches (its match mapping): every condition given must hold; none given matches
 * every request. Hosts and server names are lowercase; "*.example.com" is one label of any name. */
struct conf_route_match {
    char **hosts; /* the Host field, without its port, equals one of them */
    unsigned nhosts;
    char *path;        /* the normalised path equals it */
    char *path_prefix; /* the normalised path starts with it */
    char *path_regex;  /* POSIX extended regular expression on the normalised path */
    char **methods;
    unsigned nmethods;
    struct conf_header header; /* name NULL: no header condition */
    struct conf_header query;  /* a query parameter; name NULL: none */
    char **snis;               /* the TLS server name equals one of them */
    unsigned nsnis;
};

enum conf_route_action {
    CONF_ROUTE_POOL = 0, /* forward to a pool */
    CONF_ROUTE_REDIRECT,
    CONF_ROUTE_RESPOND, /* a fixed answer */
};

/* A redirect: location replaces the whole URL; otherwise scheme, host and port replace those of
 * the request, whose path and query are kept. */
struct conf_redirect {
    char *location;
    char *scheme; /* http or https */
    char *host;
    unsigned port;   /* 0: the default port of the scheme */
    unsigned status; /* 301, 302, 303, 307 or 308 (default 302) */
};

struct conf_respond {
    unsigned status;    /* 200-599 */
    char *body;         /* NULL: empty */
    char *content_type; /* default text/plain */
};

struct conf_route {
    char *name; /* default "route<N>", N from 1 */
    struct conf_route_match match;
    bool has_match; /* match was written (a route without one is an error) */
    enum conf_route_action action;
    char *pool_name;
    unsigned pool; /* index into conf->pools, resolved by validation */
    struct conf_redirect redirect;
    bool has_redirect;
    struct conf_respond respond;
    bool has_respond;
    struct conf_header_rules request_headers, response_headers;
    int line, column;
};

enum conf_listener_mode {
    CONF_MODE_HTTP = 0, /* the default */
    CONF_MODE_TCP,      /* a byte relay to the pool (L4) */
};

#define CONF_NO_POOL 0xffffffffu

/* HTTP/2 to clients (a listener's http2 mapping, docs/http2.md): the limits of each connection. */
struct conf_http2 {
    uint32_t max_concurrent_streams; /* streams open at once per connection (default 100) */
    uint32_t max_header_list_size;   /* a request's decoded header list, RFC 9113 counting
                                      * (default 16 KiB) */
    uint32_t stream_idle_ms;         /* a stream with no frame either way (default 5 min) */
    uint32_t idle_ms;                /* a connection without open streams (default 60s) */
};

struct conf_listener {
    char *name;
    char *bind; /* as written */
    struct net_addr addr;
    enum conf_listener_mode mode;
    char *pool_name; /* NULL: no default pool (routes only; a request nothing matches gets 404) */
    unsigned pool;   /* index into conf->pools, resolved by validation; CONF_NO_POOL: none */
    struct conf_route *routes; /* first match wins */
    unsigned nroutes;
    struct conf_header_rules request_headers, response_headers;
    bool merge_slashes;           /* "//a" matches as "/a" (default true) */
    bool forward_normalized_path; /* servers get the normalised path (default false: as sent) */
    struct conf_listener_tls tls;
    struct conf_proxy_accept proxy_protocol;
    bool h2c;                /* a plain listener also takes HTTP/2 with prior knowledge */
    struct conf_http2 http2; /* limits of HTTP/2 connections (h2 over TLS, or h2c) */
    int line, column;
};

/* True when a TLS listener's ALPN list offers h2 (the default for HTTP listeners). */
bool conf_listener_offers_h2(const struct conf_listener *l);

struct conf_timeouts {
    uint32_t client_header_ms; /* whole request head must arrive within this (default 10s) */
    uint32_t client_idle_ms;   /* keep-alive wait for the next request (default 60s) */
    uint32_t client_ms;        /* client stalls mid-request: body upload or reading (default 60s) */
    uint32_t connect_ms;       /* backend connect (default 3s) */
    uint32_t server_ms;        /* deadline for the whole response head, from the request's last byte
                                * sent (default 30s) */
    uint32_t server_body_idle_ms; /* silence allowed from a server mid-body, either direction
                                   * (default: server) */
    uint32_t server_idle_ms;      /* pooled idle backend connection lifetime (default 15s) */
    uint32_t tls_handshake_ms;    /* a client's TLS handshake, from accept (default 10s) */
    uint32_t tunnel_ms;           /* silence in both directions of a WebSocket tunnel or a TCP
                                   * connection (default 1h) */
};

struct conf_limits {
    uint32_t max_connections;  /* client connections, whole process (default 10000) */
    uint32_t max_header_bytes; /* request or response head (default 16384) */
    uint32_t max_headers;      /* header field lines per head (default 100) */
};

/* The admin listener: admin API, /metrics and dashboard (the admin mapping, or --admin). */
struct conf_admin {
    bool enabled;         /* the mapping is present (or --admin was given) */
    char *bind;           /* as written; default "127.0.0.1:9900" */
    struct net_addr addr; /* bind, parsed */
    char *token;          /* NULL: no authentication; else every call needs Bearer TOKEN */
    char **allowed_hosts; /* Host names accepted besides localhost and the machine's addresses */
    unsigned nallowed_hosts;
};

/* Request fields whose name contains '_' (the http mapping's underscores_in_headers). */
enum conf_underscores {
    CONF_UNDERSCORES_DROP = 0, /* not forwarded, counted (default, as nginx does) */
    CONF_UNDERSCORES_ALLOW,    /* forwarded unchanged */
    CONF_UNDERSCORES_REJECT,   /* the request gets a 400 */
};

/* How client requests are read (the http mapping). */
struct conf_http {
    enum conf_underscores underscores_in_headers;
};

enum conf_log_format {
    CONF_LOG_JSON = 0, /* one JSON object per line (default) */
    CONF_LOG_COMBINED, /* Apache/NGINX "combined" */
};

/* The access log (the access_log mapping, or --access-log). */
struct conf_access_log {
    bool enabled; /* the mapping is present (or --access-log was given) */
    char *path;   /* a file, or "stdout" or "stderr" */
    enum conf_log_format format;
    uint32_t max_backlog; /* bytes of lines that may wait for a slow disk (default 16 MiB) */
};

struct conf {
    char *path;                   /* NULL when built from command-line flags */
    unsigned threads;             /* worker threads; 0 means one per CPU */
    int log_level;                /* enum log_level; default info */
    uint32_t shutdown_timeout_ms; /* graceful stop: time in-flight requests get (default 10s) */
    struct conf_listener *listeners;
    unsigned nlisteners;
    struct conf_pool *pools;
    unsigned npools;
    struct conf_timeouts timeouts;
    struct conf_limits limits;
    struct conf_http http;
    struct conf_admin admin;
    struct conf_access_log access_log;
    char *error_log;                       /* NULL or "stderr": standard error; otherwise a file */
    struct conf_tls_certificate tls_flags; /* --tls-cert, --tls-key: for every --listen */
};

/*
 * Loads and validates a YAML file. Returns NULL on failure with *errors set to a malloc'ed,
 * newline-separated list of messages (the caller frees it); *errors is NULL on success.
 */
struct conf *conf_load_file(const char *path, char **errors);
/* Same, from memory; name is used in messages in place of the file name. */
struct conf *conf_load_string(const char *text, size_t len, const char *name, char **errors);

/* Quick start: an empty conf with defaults, filled by the flag helpers, then conf_finish(). */
struct conf *conf_new(void);
/* --listen ADDR: adds a listener named "listener<N>" bound to ADDR, using pool "default". */
int conf_add_listen_flag(struct conf *conf, const char *addr, char **error);
/* --server ADDR[,weight=N][,name=NAME]: adds a server to pool "default" (created on first use). */
int conf_add_server_flag(struct conf *conf, const char *spec, char **error);
/* --health-check PATH: active HTTP checks of PATH for the quick-start pool. */
int conf_set_health_check_flag(struct conf *conf, const char *path, char **error);
/* --health-interval DUR: their interval (implies checks of /healthcheck if no path was given). */
int conf_set_health_interval_flag(struct conf *conf, const char *duration, char **error);
/* --tls-cert FILE and --tls-key FILE: every --listen serves HTTPS with this certificate. Both
 * must be given; conf_finish() says so otherwise. */
int conf_set_tls_flag(struct conf *conf, bool key, const char *path, char **error);
/* --balance NAME: the quick-start pool's balancing algorithm. */
int conf_set_balance_flag(struct conf *conf, const char *name, char **error);
/* --admin ADDR: the admin listener for a quick start (no token). */
int conf_set_admin_flag(struct conf *conf, const char *addr, char **error);
/* --access-log PATH: a JSON access log ("stdout" for standard output). */
int conf_set_access_log_flag(struct conf *conf, const char *path, char **error);
/* Validates a conf built with the flag helpers; same error contract as conf_load_file. */
int conf_finish(struct conf *conf, char **errors);

void conf_free(struct conf *conf);

/* "500ms", "2s", "1m", "1h", or "0". Returns 0, or -1 if invalid or over 24 hours. */
int conf_parse_duration(const char *text, uint32_t *ms);
/* "16384", "16k", "1m" (KiB and MiB). Returns 0, or -1 if invalid or over 4 GiB - 1. */
int conf_parse_size(const char *text, uint32_t *bytes);

#endif
