/*
 * loop.c - epoll event loop, timer heap and deferred tasks (see loop.h for the model).
 *
 * One iteration:
 *
 *     before_poll hook  ->  epoll_wait(timeout = next timer, or 0 if tasks are queued)
 *         -> update clock -> dispatch I/O events -> run expired timers -> run queued tasks
 *
 * Tasks queued while the task list runs wait for the next iteration, so a task that keeps
 * re-queueing itself cannot starve I/O.
 */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    bool running;
    uint64_t now_us;

    struct loop_timer **heap; /* min-heap on when_ms */
    uint32_t heap_len, heap_cap;

    struct loop_task *tasks_head, *tasks_tail;
    struct loop_grave *graves; /* loop_bury(): freed after the batch */

    loop_hook_fn before_poll;
    void *before_poll_arg;

    struct loop_io wake_io; /* eventfd written by loop_wake() */
    loop_hook_fn wake_fn;
    void *wake_arg;
};

uint64_t loop_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wake_handler(struct loop *loop, struct loop_io *io)
{
    uint64_t count;
    /* Drain the counter; EAGAIN just means another wake was already consumed. */
    ssize_t n = read(io->fd, &count, sizeof(count));
    (void)n;
    if (loop->wake_fn)
        loop->wake_fn(loop, loop->wake_arg);
}

struct loop *loop_new(void)
{
    struct loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        log_error("epoll_create1: %s", strerror(errno));
        free(loop);
        return NULL;
    }
    loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->wake_io.handler = wake_handler;
    if (loop->wake_io.fd < 0 || loop_add(loop, &loop->wake_io, LOOP_LEVEL_IN) < 0) {
        log_error("eventfd: %s", strerror(errno));
        if (loop->wake_io.fd >= 0)
            close(loop->wake_io.fd);
        close(loop->epfd);
        free(loop);
        return NULL;
    }
    loop->now_us = loop_clock_us();
    return loop;
}

static void bury_all(struct loop *loop)
{
    while (loop->graves) {
        struct loop_grave *g = loop->graves;
        loop->graves = g->next;
        g->bury(g);
    }
}

void loop_bury(struct loop *loop, struct loop_grave *grave)
{
    grave->next = loop->graves;
    loop->graves = grave;
}

void loop_free(struct loop *loop)
{
    if (!loop)
        return;
    bury_all(loop);
    close(loop->wake_io.fd);
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

int loop_add(struct loop *loop, struct loop_io *io, enum loop_interest interest)
{
    struct epoll_event ev = {.data.ptr = io};
    if (interest == LOOP_EDGE_RW)
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    else
        ev.events = EPOLLIN;
    io->ready = 0;
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev);
}

void loop_del(struct loop *loop, struct loop_io *io)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

uint64_t loop_now_ms(const struct loop *loop)
{
    return loop->now_us / 1000u;
}

uint64_t loop_now_us(const struct loop *loop)
{
    return loop->now_us;
}

/* ---- timer heap ---- */

static void heap_place(struct loop *loop, uint32_t i, struct loop_timer *t)
{
    loop->heap[i] = t;
    t->heap_slot = i + 1;
}

static void heap_sift_up(struct loop *loop, uint32_t i)
{
    struct loop_timer *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when_ms <= t->when_ms)
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_sift_down(struct loop *loop, uint32_t i)
{
    struct loop_timer *t = loop->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len &&
            loop->heap[child + 1]->when_ms < loop->heap[child]->when_ms)
            child++;
        if (t->when_ms <= loop->heap[child]->when_ms)
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void loop_timer_set_at(struct loop *loop, struct loop_timer *t, uint64_t when_ms)
{
    if (t->heap_slot) {
        uint64_t old = t->when_ms;
        t->when_ms = when_ms;
        if (when_ms < old)
            heap_sift_up(loop, t->heap_slot - 1);
        else if (when_ms > old)
            heap_sift_down(loop, t->heap_slot - 1);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
        struct loop_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap) {
            /* The heap only grows to the peak number of connections; failing to grow it means
             * the process cannot keep its timeout promises any more, which is worse than dying. */
            log_error("timer heap: out of memory");
            abort();
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->when_ms = when_ms;
    heap_place(loop, loop->heap_len++, t);
    heap_sift_up(loop, loop->heap_len - 1);
}

void loop_timer_set(struct loop *loop, struct loop_timer *t, uint64_t delay_ms)
{
    loop_timer_set_at(loop, t, loop_now_ms(loop) + delay_ms);
}

void loop_timer_stop(struct loop *loop, struct loop_timer *t)
{
    if (!t->heap_slot)
        return;
    uint32_t i = t->heap_slot - 1;
    t->heap_slot = 0;
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    struct loop_timer *last = loop->heap[loop->heap_len];
    heap_place(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2]->when_ms > last->when_ms)
        heap_sift_up(loop, i);
    else
        heap_sift_down(loop, i);
}

static void run_timers(struct loop *loop)
{
    uint64_t now = loop_now_ms(loop);
    while (loop->heap_len > 0 && loop->heap[0]->when_ms <= now) {
        struct loop_timer *t = loop->heap[0];
        loop_timer_stop(loop, t);
        t->fn(loop, t);
    }
}

/* ---- deferred tasks ---- */

void loop_defer(struct loop *loop, struct loop_task *task)
{
    if (task->queued)
        return;
    task->queued = true;
    task->next = NULL;
    if (loop->tasks_tail)
        loop->tasks_tail->next = task;
    else
        loop->tasks_head = task;
    loop->tasks_tail = task;
}

void loop_cancel(struct loop *loop, struct loop_task *task)
{
    if (!task->queued)
        return;
    struct loop_task **pp = &loop->tasks_head, *prev = NULL;
    while (*pp && *pp != task) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = task->next;
        if (loop->tasks_tail == task)
            loop->tasks_tail = prev;
    }
    task->queued = false;
    task->next = NULL;
}

static void run_tasks(struct loop *loop)
{
    /* Detach the list first: tasks queued from here on run next iteration. */
    struct loop_task *task = loop->tasks_head;
    loop->tasks_head = loop->tasks_tail = NULL;
    while (task) {
        struct loop_task *next = task->next;
        task->queued = false;
        task->next = NULL;
        task->fn(loop, task);
        task = next;
    }
}

/* ---- the loop ---- */

void loop_set_before_poll(struct loop *loop, loop_hook_fn fn, void *arg)
{
    loop->before_poll = fn;
    loop->before_poll_arg = arg;
}

void loop_set_wake_handler(struct loop *loop, loop_hook_fn fn, void *arg)
{
    loop->wake_fn = fn;
    loop->wake_arg = arg;
}

void loop_wake(struct loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wake_io.fd, &one, sizeof(one));
    (void)n; /* EAGAIN: the counter is saturated, a wake is pending anyway */
}

void loop_stop(struct loop *loop)
{
    loop->running = false;
}

static int poll_timeout_ms(const struct loop *loop)
{
    if (loop->tasks_head)
        return 0;
    if (loop->heap_len == 0)
        return -1;
    uint64_t now = loop_now_ms(loop), when = loop->heap[0]->when_ms;
    if (when <= now)
        return 0;
    uint64_t wait = when - now;
    return wait > 60000 ? 60000 : (int)wait;
}

void loop_run(struct loop *loop)
{
    struct epoll_event events[LOOP_MAX_EVENTS];

    loop->running = true;
    while (loop->running) {
        bury_all(loop); /* the batch that let go of them is over */
        if (loop->before_poll) {
            loop->before_poll(loop, loop->before_poll_arg);
            if (!loop->running) /* the hook decided the loop is done: do not sleep first */
                break;
        }
        int n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, poll_timeout_ms(loop));
        loop->now_us = loop_clock_us();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct loop_io *io = events[i].data.ptr;
            uint32_t ev = events[i].events, ready = 0;
            if (ev & EPOLLIN)
                ready |= LOOP_READABLE;
            if (ev & EPOLLOUT)
                ready |= LOOP_WRITABLE;
            if (ev & EPOLLRDHUP)
                ready |= LOOP_RDHUP | LOOP_READABLE;
            if (ev & EPOLLHUP)
                ready |= LOOP_HUP | LOOP_READABLE | LOOP_WRITABLE;
            if (ev & EPOLLERR)
                ready |= LOOP_ERR | LOOP_READABLE | LOOP_WRITABLE;
            io->ready |= ready;
            if (io->handler)
                io->handler(loop, io);
        }
        run_timers(loop);
        run_tasks(loop);
    }
}
