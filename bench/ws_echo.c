/*
 * ws_echo.c - the WebSocket backend of bench/run --websocket: a minimal RFC 6455 echo server.
 *
 *   ws_echo PORT            listens on 127.0.0.1:PORT until killed
 *
 * One thread, one epoll loop, level-triggered. Each connection first sends an HTTP/1.1 upgrade
 * request (GET with Upgrade: websocket and Sec-WebSocket-Key); it is answered with 101 and the
 * Sec-WebSocket-Accept computed with OpenSSL's SHA-1 and base64. Anything else gets a 400 and is
 * closed. A plain "GET /" without Upgrade gets a 200 "ws_echo\n" (readiness checks).
 *
 * After the handshake every complete frame read is echoed back as it came (FIN, RSV and opcode
 * kept, so fragments and pings come back as they were sent), with its payload unmasked and no
 * mask, as a server must send it. A close frame is echoed and the connection closed once written.
 * Everything read in one read() is answered with one write(): per message the server costs one
 * read and one write, which keeps it cheap next to the balancer under test. Frames are limited
 * to BUF_SIZE bytes (a larger one closes the connection); output waits in a per-connection buffer
 * when the socket is full, and reading stops until it has drained (backpressure).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE   (256 * 1024)
#define MAX_EVENTS 256
#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct conn {
    int fd;
    int upgraded;
    int closing;  /* close once out is written */
    int want_out; /* the epoll interest: EPOLLOUT (1) or EPOLLIN (0) */
    size_t in_len;
    size_t out_off, out_len;
    unsigned char in[BUF_SIZE];
    unsigned char out[BUF_SIZE + 16];
};

static int ep;

static void drop(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c);
}

/* Wait for EPOLLOUT while output is pending, else for EPOLLIN; a syscall only on a change. */
static void set_events(struct conn *c)
{
    int want_out = c->out_len > c->out_off;
    if (want_out == c->want_out)
        return;
    struct epoll_event ev = {.data.ptr = c};
    ev.events = want_out ? EPOLLOUT : EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

/* Write what is pending; 0: all written, 1: the socket is full, -1: error. */
static int flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 1;
        } else {
            return -1;
        }
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static int out_append(struct conn *c, const void *p, size_t n)
{
    if (c->out_len + n > sizeof(c->out))
        return -1;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* The value of header name in the request head (NUL-terminated), or NULL. */
static const char *header(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *end = strstr(v, "\r\n");
            if (!end)
                return NULL;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            *len = (size_t)(end - v);
            return v;
        }
    }
    return NULL;
}

/* 1: upgraded (or answered), 0: need more bytes, -1: close. */
static int handshake(struct conn *c)
{
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len >= 16384 ? -1 : 0;
    size_t head_len = (size_t)(end - c->in) + 4;
    char head[16384 + 1];
    memcpy(head, c->in, head_len);
    head[head_len] = '\0';
    size_t klen = 0, ulen = 0;
    const char *key = header(head, "Sec-WebSocket-Key", &klen);
    const char *up = header(head, "Upgrade", &ulen);
    if (!up) {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                                 "ws_echo\n";
        out_append(c, ok, sizeof(ok) - 1);
        c->closing = 1;
    } else if (!key || klen == 0 || klen > 64 || ulen != 9 || strncasecmp(up, "websocket", 9)) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        out_append(c, bad, sizeof(bad) - 1);
        c->closing = 1;
    } else {
        char buf[128];
        unsigned char digest[SHA_DIGEST_LENGTH];
        char accept[64];
        memcpy(buf, key, klen);
        memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
        SHA1((unsigned char *)buf, klen + sizeof(WS_GUID) - 1, digest);
        EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
        char resp[256];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                         accept);
        out_append(c, resp, (size_t)n);
        c->upgraded = 1;
    }
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
    return 1;
}

/* Echo every complete frame in c->in; 0: fine, -1: close. */
static int echo_frames(struct conn *c)
{
    size_t off = 0;
    while (!c->closing && c->in_len - off >= 2) {
        unsigned char *f = c->in + off;
        size_t avail = c->in_len - off;
        int masked = f[1] & 0x80;
        uint64_t len = f[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f[2 + i];
            hl = 10;
        }
        if (len > BUF_SIZE - 14)
            return -1; /* larger than a frame this server handles */
        size_t mhl = hl + (masked ? 4 : 0);
        if (avail < mhl + len)
            break;
        unsigned char *payload = f + mhl;
        if (masked) {
            const unsigned char *m = f + hl;
            for (uint64_t i = 0; i < len; i++)
                payload[i] ^= m[i & 3];
        }
        unsigned char h[10];
        h[0] = f[0];
        if (len < 126) {
            h[1] = (unsigned char)len;
        } else if (len < 65536) {
            h[1] = 126;
            h[2] = (unsigned char)(len >> 8);
            h[3] = (unsigned char)len;
        } else {
            h[1] = 127;
            for (int i = 0; i < 8; i++)
                h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        }
        if (c->out_len + hl + len > sizeof(c->out))
            break; /* echo the rest once the output has drained */
        out_append(c, h, hl);
        out_append(c, payload, (size_t)len);
        if ((f[0] & 0x0f) == 0x8)
            c->closing = 1;
        off += mhl + (size_t)len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

static void on_event(struct conn *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        int r = flush_out(c);
        if (r < 0 || (r == 0 && c->closing)) {
            drop(c);
            return;
        }
        if (r == 0 && c->upgraded && echo_frames(c) < 0) {
            drop(c);
            return;
        }
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->out_len == 0 && !c->closing) {
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(c);
            return;
        }
        if (n > 0)
            c->in_len += (size_t)n;
        if (!c->upgraded) {
            int h = handshake(c);
            if (h < 0) {
                drop(c);
                return;
            }
        }
        if (c->upgraded && echo_frames(c) < 0) {
            drop(c);
            return;
        }
        if (c->in_len == sizeof(c->in)) {
            drop(c); /* a frame header promising more than fits: not for this server */
            return;
        }
    }
    int r = flush_out(c);
    if (r < 0 || (r == 0 && c->closing)) {
        drop(c);
        return;
    }
    set_events(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ws_echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
        perror("ws_echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("ws_echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) {
                on_event(evs[i].data.ptr, evs[i].events);
                continue;
            }
            for (int k = 0; k < 64; k++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                struct conn *c = calloc(1, sizeof(*c));
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            }
        }
    }
}
