/*
 * ws_load.c - the WebSocket load generator of bench/run --websocket.
 *
 *   ws_load HOST PORT CONNECTIONS SECONDS SIZE
 *
 * Opens CONNECTIONS connections to HOST:PORT one after the other, each with an HTTP/1.1 upgrade
 * request (GET /ws, Upgrade: websocket, a random Sec-WebSocket-Key, version 13); every one must
 * be answered with 101 and the right Sec-WebSocket-Accept (SHA-1 and base64 from OpenSSL's
 * libcrypto) within 10 seconds, or the run fails. Then, for SECONDS seconds, each connection in
 * turn sends one binary frame of SIZE payload bytes (FIN set, masked with a fresh key, as a client
 * must) and waits for its echo, an unmasked binary frame with the same payload, before it sends
 * the next: N connections keep N messages in flight. Every echo is checked byte for byte. One
 * thread, one epoll loop.
 *
 * Prints one line on stdout:
 *   connections=N messages=M seconds=S rate=R p50_us=A p99_us=B errors=E
 * messages counts round trips completed within the SECONDS; rate is messages / S; p50 and p99
 * are round-trip times. A connection closed by the other side, an echo that differs from what
 * was sent, or a frame that is not the echo is an error: the connection is dropped, the error
 * described on stderr, and the exit status is 1. Exit status 2 is a usage or set-up error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_SIZE    65535
#define HIST_US     1000000 /* round trips up to 1 s, at 1 us; longer ones count in the last */
#define MAX_ERRLOGS 10

struct conn {
    int fd;
    int live;
    uint64_t seq;
    double sent_at;
    size_t in_len;
    unsigned char *payload; /* what was sent last, unmasked */
    unsigned char *in;
};

static size_t size, frame_hl; /* payload size, header length of an echo */
static uint32_t *hist;
static uint64_t errors;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void fail(struct conn *c, const char *what)
{
    if (errors++ < MAX_ERRLOGS)
        fprintf(stderr, "ws_load: connection %d: %s\n", c->fd, what);
    close(c->fd);
    c->live = 0;
}

/* Send the next message on c: payload bytes vary with the sequence number. 0 or -1. */
static int send_message(struct conn *c)
{
    unsigned char frame[MAX_SIZE + 8];
    size_t hl;
    frame[0] = 0x82; /* FIN, binary */
    if (size < 126) {
        frame[1] = (unsigned char)(0x80 | size);
        hl = 2;
    } else {
        frame[1] = 0x80 | 126;
        frame[2] = (unsigned char)(size >> 8);
        frame[3] = (unsigned char)size;
        hl = 4;
    }
    c->seq++;
    for (size_t i = 0; i < size; i++)
        c->payload[i] = (unsigned char)(c->seq * 31 + i * 7 + (size_t)c->fd);
    uint32_t key = rnd();
    unsigned char *m = frame + hl;
    memcpy(m, &key, 4);
    unsigned char *p = m + 4;
    for (size_t i = 0; i < size; i++)
        p[i] = c->payload[i] ^ m[i & 3];
    size_t len = hl + 4 + size;
    c->sent_at = now();
    ssize_t n = write(c->fd, frame, len);
    if (n != (ssize_t)len) {
        fail(c, n < 0 ? strerror(errno) : "short write (socket full)");
        return -1;
    }
    return 0;
}

static void b64_key(char *key, char *accept)
{
    unsigned char raw[16], digest[SHA_DIGEST_LENGTH];
    char buf[128];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)rnd();
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    SHA1((unsigned char *)buf, (size_t)n, digest);
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
}

/* Connect and upgrade; the socket is left non-blocking. -1 on failure (described). */
static int open_ws(const struct sockaddr_in *sa, const char *host, int port, int idx)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        fprintf(stderr, "ws_load: connection %d: connect: %s\n", idx, strerror(errno));
        close(fd);
        return -1;
    }
    char key[32], accept[64], req[512];
    b64_key(key, accept);
    int n = snprintf(req, sizeof(req),
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: fulcrum-bench\r\n\r\n",
                     host, port, key);
    if (write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "ws_load: connection %d: cannot send the upgrade request\n", idx);
        close(fd);
        return -1;
    }
    char resp[8192];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        /* The server sends no frame before the client's first one: nothing past the head. */
        ssize_t r = read(fd, resp + len, sizeof(resp) - 1 - len);
        if (r <= 0) {
            fprintf(stderr, "ws_load: connection %d: upgrade response: %s\n", idx,
                    r == 0 ? "connection closed" : strerror(errno));
            close(fd);
            return -1;
        }
        len += (size_t)r;
        resp[len] = '\0';
        end = strstr(resp, "\r\n\r\n");
        if (!end && len >= sizeof(resp) - 1) {
            fprintf(stderr, "ws_load: connection %d: upgrade response too large\n", idx);
            close(fd);
            return -1;
        }
    }
    if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(resp, "\r\n");
        *eol = '\0';
        fprintf(stderr, "ws_load: connection %d: upgrade refused: %s\n", idx, resp);
        close(fd);
        return -1;
    }
    if ((size_t)(end + 4 - resp) != len) {
        fprintf(stderr, "ws_load: connection %d: bytes after the 101 before any frame\n", idx);
        close(fd);
        return -1;
    }
    int ok = 0;
    for (char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "Sec-WebSocket-Accept:", 21) == 0) {
            char *v = p + 23;
            while (*v == ' ')
                v++;
            ok = strncmp(v, accept, strlen(accept)) == 0;
        }
    }
    if (!ok) {
        fprintf(stderr, "ws_load: connection %d: missing or wrong Sec-WebSocket-Accept\n", idx);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: ws_load HOST PORT CONNECTIONS SECONDS SIZE\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), nconn = atoi(argv[3]);
    double seconds = atof(argv[4]);
    size = (size_t)atol(argv[5]);
    if (port <= 0 || nconn <= 0 || nconn > 100000 || seconds <= 0 || size < 1 || size > MAX_SIZE) {
        fprintf(stderr, "ws_load: bad arguments (SIZE: 1-%d)\n", MAX_SIZE);
        return 2;
    }
    frame_hl = size < 126 ? 2 : 4;
    signal(SIGPIPE, SIG_IGN);
    rng ^= (uint64_t)getpid() << 20 ^ (uint64_t)time(NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ws_load: HOST must be an IPv4 address\n");
        return 2;
    }
    hist = calloc(HIST_US + 1, sizeof(*hist));
    struct conn *conns = calloc((size_t)nconn, sizeof(*conns));
    int ep = epoll_create1(0);
    if (!hist || !conns || ep < 0) {
        fprintf(stderr, "ws_load: out of memory\n");
        return 2;
    }
    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        c->fd = open_ws(&sa, host, port, i + 1);
        if (c->fd < 0)
            return 2;
        c->payload = malloc(size);
        c->in = malloc(frame_hl + size + 65536);
        if (!c->payload || !c->in) {
            fprintf(stderr, "ws_load: out of memory\n");
            return 2;
        }
        c->live = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    uint64_t messages = 0;
    double start = now(), end = start + seconds;
    for (int i = 0; i < nconn; i++)
        send_message(&conns[i]);
    struct epoll_event evs[256];
    double t = start;
    int live = nconn;
    while (t < end && live > 0) {
        int ms = (int)((end - t) * 1000.0) + 1;
        int n = epoll_wait(ep, evs, 256, ms);
        if (n < 0 && errno != EINTR) {
            perror("ws_load: epoll_wait");
            return 2;
        }
        t = now();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->live)
                continue;
            size_t want = frame_hl + size;
            ssize_t r = read(c->fd, c->in + c->in_len, want + 65536 - c->in_len);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                fail(c, r == 0 ? "closed by the other side" : strerror(errno));
                live--;
                continue;
            }
            if (r < 0)
                continue;
            c->in_len += (size_t)r;
            if (c->in_len < want)
                continue;
            const unsigned char *f = c->in;
            int header_ok =
                f[0] == 0x82 &&
                (size < 126 ? f[1] == size : f[1] == 126 && ((size_t)f[2] << 8 | f[3]) == size);
            if (c->in_len != want || !header_ok || memcmp(f + frame_hl, c->payload, size) != 0) {
                fail(c, c->in_len != want ? "more bytes than one echo"
                        : !header_ok      ? "the echo's frame header is wrong"
                                          : "the echo differs from the message sent");
                live--;
                continue;
            }
            c->in_len = 0;
            if (t > end)
                continue; /* completed after the end: not counted */
            messages++;
            double us = (t - c->sent_at) * 1e6;
            hist[us >= HIST_US ? HIST_US : (size_t)us]++;
            if (send_message(c) < 0)
                live--;
        }
    }
    double wall = (t < end ? t : end) - start;
    uint64_t p50 = 0, p99 = 0, acc = 0;
    int have50 = 0;
    for (size_t us = 0; us <= HIST_US && messages; us++) {
        acc += hist[us];
        if (!have50 && acc * 2 >= messages) {
            p50 = us;
            have50 = 1;
        }
        if (acc * 100 >= messages * 99) {
            p99 = us;
            break;
        }
    }
    printf("connections=%d messages=%llu seconds=%.3f rate=%.1f p50_us=%llu p99_us=%llu "
           "errors=%llu\n",
           nconn, (unsigned long long)messages, wall, wall > 0 ? (double)messages / wall : 0.0,
           (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)errors);
    for (int i = 0; i < nconn; i++)
        if (conns[i].live)
            close(conns[i].fd);
    return errors ? 1 : 0;
}
