/*
 * tcp_bulk.c - the bulk transfer server and client of bench/run --bulk.
 *
 *   tcp_bulk serve PORT FILE                    the server, on 127.0.0.1:PORT, until killed
 *   tcp_bulk push HOST PORT FILE BYTES SECONDS  the client: connections that each send BYTES
 *   tcp_bulk pull HOST PORT FILE BYTES SECONDS  the client: connections that each receive BYTES
 *   tcp_bulk push|pull HOST PORT FILE BYTES verify   one connection, every byte checked
 *
 * FILE is the data: every transfer sends FILE's bytes over and over from its start (the client
 * and the server are given the same file, so either side can check what it receives). Both sides
 * keep their own cost low so that the balancer between them is what is measured: bytes are sent
 * with sendfile(2) from the page cache, and received with splice(2) into a pipe and from there to
 * /dev/null, never copied to user space, except in verify mode, which reads and compares.
 *
 * Protocol: the client starts every connection with 16 bytes: "FBLK", a command byte, 3 zero bytes
 * and BYTES as a 64-bit big-endian number. Commands:
 *   'P'  push: the client then sends BYTES bytes; the server discards them and, once all BYTES
 *        arrived, answers with 8 bytes, the count it received, and closes.
 *   'V'  push, verified: the same, but the server compares every byte with FILE; its answer is
 *        the count of bytes that matched before the first difference.
 *   'G'  pull: the server sends BYTES bytes and closes; the client counts (or, verify, compares)
 *        them until the end of the stream.
 * The client never half-closes (nginx's stream module, by default, ends both directions when one
 * side sends a FIN): every transfer's end is known from the count in its request.
 * The server runs each connection in a thread of its own (its CPU time stays in the process).
 *
 * The client repeats its connections, one after the other, until SECONDS have passed (at least
 * one), and prints one line on stdout:
 *   connections=N bytes=B seconds=S
 * S is the wall time of the N transfers. A transfer that ends short, a count that differs, or a
 * byte that differs (verify) is an error: described on stderr, exit status 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIPE_SIZE (1 << 20)
#define CHUNK     (1 << 20)

static const char *file_path;
static int file_fd;
static size_t file_size;
static const unsigned char *file_map;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int full_write(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int full_read(int fd, void *p, size_t n)
{
    char *s = p;
    while (n > 0) {
        ssize_t r = read(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Send bytes of FILE (cycling) with sendfile; the count sent, which is bytes unless an error. */
static uint64_t send_data(int sock, uint64_t bytes)
{
    uint64_t sent = 0;
    off_t off = 0;
    while (sent < bytes) {
        if ((size_t)off == file_size)
            off = 0;
        size_t n = file_size - (size_t)off;
        if (n > bytes - sent)
            n = (size_t)(bytes - sent);
        ssize_t w = sendfile(sock, file_fd, &off, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        sent += (uint64_t)w;
    }
    return sent;
}

/* Receive up to limit bytes (or until the end of the stream), discarding them with splice into
 * a pipe and from the pipe into /dev/null; or, with verify, reading and comparing them with FILE
 * from position 0, and then the count is of the bytes that matched. */
static uint64_t recv_data(int sock, uint64_t limit, int verify)
{
    uint64_t got = 0;
    if (verify) {
        static __thread unsigned char buf[CHUNK];
        while (got < limit) {
            size_t want = limit - got < CHUNK ? (size_t)(limit - got) : CHUNK;
            ssize_t r = read(sock, buf, want);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            for (ssize_t i = 0; i < r; i++) {
                if (buf[i] != file_map[(got + (uint64_t)i) % file_size])
                    return got + (uint64_t)i;
            }
            got += (uint64_t)r;
        }
        return got;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return 0;
    fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    while (got < limit) {
        size_t want = limit - got < PIPE_SIZE ? (size_t)(limit - got) : PIPE_SIZE;
        ssize_t r = splice(sock, NULL, p[1], NULL, want, SPLICE_F_MOVE);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (uint64_t)r;
        for (ssize_t left = r; left > 0;) {
            ssize_t d = splice(p[0], NULL, null, NULL, (size_t)left, SPLICE_F_MOVE);
            if (d < 0 && errno == EINTR)
                continue;
            if (d <= 0) {
                got = 0;
                goto out;
            }
            left -= d;
        }
    }
out:
    close(p[0]);
    close(p[1]);
    close(null);
    return got;
}

static uint64_t be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static void put_be64(unsigned char *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

static void *serve_conn(void *arg)
{
    int sock = (int)(intptr_t)arg;
    unsigned char head[16];
    if (full_read(sock, head, sizeof(head)) == 0 && memcmp(head, "FBLK", 4) == 0) {
        uint64_t bytes = be64(head + 8);
        if (head[4] == 'P' || head[4] == 'V') {
            unsigned char answer[8];
            put_be64(answer, recv_data(sock, bytes, head[4] == 'V'));
            full_write(sock, answer, sizeof(answer));
        } else if (head[4] == 'G') {
            send_data(sock, bytes);
        }
    }
    close(sock);
    return NULL;
}

static int serve(int port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0) {
        perror("tcp_bulk: bind/listen");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("tcp_bulk: accept");
            return 1;
        }
        pthread_t t;
        if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}

/* One client transfer; 0 or -1 (described on stderr). */
static int transfer(const struct sockaddr_in *sa, int push, uint64_t bytes, int verify)
{
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(sock, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        fprintf(stderr, "tcp_bulk: connect: %s\n", strerror(errno));
        close(sock);
        return -1;
    }
    unsigned char head[16] = "FBLK";
    head[4] = push ? (verify ? 'V' : 'P') : 'G';
    put_be64(head + 8, bytes);
    int rc = -1;
    if (full_write(sock, head, sizeof(head)) < 0) {
        fprintf(stderr, "tcp_bulk: cannot send the request: %s\n", strerror(errno));
        goto out;
    }
    if (push) {
        uint64_t sent = send_data(sock, bytes);
        if (sent != bytes) {
            fprintf(stderr, "tcp_bulk: push: sent %llu of %llu bytes: %s\n",
                    (unsigned long long)sent, (unsigned long long)bytes, strerror(errno));
            goto out;
        }
        unsigned char answer[8];
        if (full_read(sock, answer, sizeof(answer)) < 0) {
            fprintf(stderr, "tcp_bulk: push: no count from the server (%s)\n",
                    errno ? strerror(errno) : "end of stream");
            goto out;
        }
        uint64_t got = be64(answer);
        if (got != bytes) {
            fprintf(stderr, "tcp_bulk: push: the server %s %llu of %llu bytes\n",
                    verify ? "received correctly" : "received", (unsigned long long)got,
                    (unsigned long long)bytes);
            goto out;
        }
    } else {
        uint64_t got = recv_data(sock, bytes + 1, verify);
        if (got != bytes) {
            fprintf(stderr, "tcp_bulk: pull: %s %llu of %llu bytes\n",
                    verify ? "received correctly" : "received", (unsigned long long)got,
                    (unsigned long long)bytes);
            goto out;
        }
    }
    rc = 0;
out:
    close(sock);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int is_serve = argc == 4 && strcmp(argv[1], "serve") == 0;
    int is_client = argc == 7 && (strcmp(argv[1], "push") == 0 || strcmp(argv[1], "pull") == 0);
    if (!is_serve && !is_client) {
        fprintf(stderr, "usage: tcp_bulk serve PORT FILE\n"
                        "       tcp_bulk push|pull HOST PORT FILE BYTES SECONDS|verify\n");
        return 2;
    }
    file_path = argv[is_serve ? 3 : 4];
    struct stat st;
    file_fd = open(file_path, O_RDONLY | O_CLOEXEC);
    if (file_fd < 0 || fstat(file_fd, &st) < 0 || st.st_size <= 0) {
        fprintf(stderr, "tcp_bulk: %s: cannot open, or empty\n", file_path);
        return 2;
    }
    file_size = (size_t)st.st_size;
    file_map = mmap(NULL, file_size, PROT_READ, MAP_SHARED, file_fd, 0);
    if (file_map == MAP_FAILED) {
        perror("tcp_bulk: mmap");
        return 2;
    }
    if (is_serve)
        return serve(atoi(argv[2]));

    int push = strcmp(argv[1], "push") == 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
        fprintf(stderr, "tcp_bulk: HOST must be an IPv4 address\n");
        return 2;
    }
    uint64_t bytes = strtoull(argv[5], NULL, 10);
    int verify = strcmp(argv[6], "verify") == 0;
    double seconds = verify ? 0 : atof(argv[6]);
    if (bytes == 0 || (!verify && seconds <= 0)) {
        fprintf(stderr, "tcp_bulk: bad BYTES or SECONDS\n");
        return 2;
    }
    double start = now(), t = start;
    unsigned n = 0;
    do {
        if (transfer(&sa, push, bytes, verify) < 0)
            return 1;
        n++;
        t = now();
    } while (t - start < seconds);
    printf("connections=%u bytes=%llu seconds=%.3f\n", n, (unsigned long long)bytes * n, t - start);
    return 0;
}
