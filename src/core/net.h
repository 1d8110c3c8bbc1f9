/*
 * net.h - socket addresses and the few socket calls the rest of fulcrum needs.
 *
 * Addresses are written "host:port", "[v6]:port" or ":port" (all addresses). A host name is
 * resolved once, when the address is parsed; fulcrum never resolves names on the request path.
 * Every socket is close-on-exec, and every socket that carries traffic is non-blocking.
 */
#ifndef FULCRUM_NET_H
#define FULCRUM_NET_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool any; /* written ":port": listen on every IPv4 and IPv6 address */
};

/* Longest text net_addr_format() writes, NUL included: "[v6 address]:65535". */
#define NET_ADDR_TEXT 64

/* An address range: "10.0.0.0/8", "2001:db8::/32", or one address ("127.0.0.1" is /32). */
struct net_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned bits;
};

/* Parses a range; the address must have no bits set past the prefix. -1 with *error on failure. */
int net_parse_cidr(const char *text, struct net_cidr *out, const char **error);

/* Is sa's address in the range? An IPv4-mapped IPv6 address counts as its IPv4 address. */
bool net_cidr_match(const struct net_cidr *range, const struct sockaddr *sa);

/* Parses an address. On failure returns -1 and points *error at a static explanation. */
int net_parse_addr(const char *text, struct net_addr *out, const char **error);

/* Is err (an errno) a shortage of our own process rather than a peer's failure: out of
 * descriptors, memory or buffers? */
static inline bool net_local_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* "127.0.0.1:80" or "[::1]:80". */
void net_addr_format(const struct sockaddr *sa, char *out, size_t size);
/* The IP part only ("127.0.0.1", "::1"), for X-Forwarded-For. Returns its length. */
size_t net_ip_format(const struct sockaddr *sa, char *out, size_t size);

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);

/* Can addr be bound, i.e. is nobody listening there? Binds without listening, so no client can
 * ever connect to the probe. Returns 0, or -1 with errno set. */
int net_bind_probe(const struct net_addr *addr);

/* A listening socket; reuseport lets each worker thread bind its own. Returns fd or -1. */
int net_listen(const struct net_addr *addr, int backlog, bool reuseport);

/*
 * Starts a non-blocking connect. Returns the fd with *in_progress telling whether the connection is
 * still being set up (wait for writability), or -1 with errno set.
 */
int net_connect(const struct net_addr *addr, bool *in_progress);

/* The pending error of a socket (SO_ERROR), 0 if none. */
int net_socket_error(int fd);

/* Closes with an RST instead of a FIN, so the peer sees an abort rather than an end of stream. */
void net_close_reset(int fd);

#endif
