/*
 * loop.h - one event loop per thread: epoll readiness, timers and deferred tasks.
 *
 * This is the only module that knows about epoll. Each worker thread owns one loop; nothing in a
 * loop is touched by another thread except loop_wake(), which is how threads poke each other.
 *
 * Readiness model. Connections are registered once, edge-triggered, for both directions. The loop
 * records what the kernel reported in io->ready (LOOP_READABLE, LOOP_WRITABLE, ...) and calls the
 * owner's handler. The owner clears LOOP_READABLE / LOOP_WRITABLE itself when read/write returns
 * EAGAIN (or a short count), so "still readable" survives across iterations without any epoll_ctl
 * call: backpressure is simply "don't read yet", and resuming is "read now, the flag is still set".
 *
 * Stale events. An owner may close an fd while later events of the same epoll batch still point at
 * it. The owner sets io->handler = NULL when it closes, and must not reuse the memory until the
 * batch is over: objects are recycled from the before_poll hook, which runs between batches.
 *
 * Fairness. A handler that could keep going (both sockets always ready on loopback) stops after a
 * bounded amount of work and queues a loop_task; queued tasks run on the next iteration, and a
 * non-empty task queue makes epoll_wait return at once.
 *
 * Timers live in a binary min-heap keyed by a monotonic millisecond deadline; setting, moving and
 * stopping a timer are O(log n) and never allocate once the heap has grown to the peak count.
 */
#ifndef FULCRUM_LOOP_H
#define FULCRUM_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;
struct loop_task;

enum {
    LOOP_READABLE = 1u << 0,
    LOOP_WRITABLE = 1u << 1,
    LOOP_RDHUP = 1u << 2, /* peer shut down its sending side; a read will return 0 */
    LOOP_HUP = 1u << 3,
    LOOP_ERR = 1u << 4,
};

/* Interest passed to loop_add(). */
enum loop_interest {
    LOOP_EDGE_RW,  /* connections: in + out + rdhup, edge-triggered */
    LOOP_LEVEL_IN, /* listening sockets and eventfds: level-triggered input */
};

typedef void (*loop_io_fn)(struct loop *loop, struct loop_io *io);
typedef void (*loop_timer_fn)(struct loop *loop, struct loop_timer *timer);
typedef void (*loop_task_fn)(struct loop *loop, struct loop_task *task);
typedef void (*loop_hook_fn)(struct loop *loop, void *arg);

struct loop_io {
    int fd;
    uint32_t ready;     /* LOOP_* flags accumulated from the kernel; cleared by the owner */
    loop_io_fn handler; /* NULL once the owner closed the fd: remaining events are ignored */
};

struct loop_timer {
    uint64_t when_ms;   /* deadline on the loop's monotonic clock */
    uint32_t heap_slot; /* 0: not armed; otherwise index + 1 in the heap */
    loop_timer_fn fn;
};

struct loop_task {
    struct loop_task *next;
    loop_task_fn fn;
    bool queued;
};

/* An object to free once the current batch of events is over (loop_bury()). */
struct loop_grave {
    struct loop_grave *next;
    void (*bury)(struct loop_grave *grave); /* frees the object the grave is part of */
};

struct loop *loop_new(void);
void loop_free(struct loop *loop);

/* Registers io->fd. Returns 0, or -1 with errno set. */
int loop_add(struct loop *loop, struct loop_io *io, enum loop_interest interest);
/* Stops watching io->fd (needed only when the fd stays open, e.g. a paused listener). */
void loop_del(struct loop *loop, struct loop_io *io);

/* The loop's clock, read once per iteration (monotonic). */
uint64_t loop_now_ms(const struct loop *loop);
uint64_t loop_now_us(const struct loop *loop);
/* The clock itself (CLOCK_MONOTONIC, in microseconds), read now: for code outside a loop's
 * callbacks that must agree with loop_now_ms() (slow-start stamps, latency samples). */
uint64_t loop_clock_us(void);

/* Arms (or re-arms) a timer to fire delay_ms from now. */
void loop_timer_set(struct loop *loop, struct loop_timer *t, uint64_t delay_ms);
/* Arms a timer at an absolute deadline on the loop's clock. */
void loop_timer_set_at(struct loop *loop, struct loop_timer *t, uint64_t when_ms);
void loop_timer_stop(struct loop *loop, struct loop_timer *t);
/*
 * For an idle deadline that moves later on every byte (a tunnel's): arms t for when_ms unless it
 * is already armed no later, so that busy traffic costs no heap operation per event. The timer
 * may then fire early; its function checks the real deadline and arms it again.
 */
static inline void loop_timer_set_lazy(struct loop *loop, struct loop_timer *t, uint64_t when_ms)
{
    if (t->heap_slot == 0 || t->when_ms > when_ms)
        loop_timer_set_at(loop, t, when_ms);
}
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_slot != 0;
}

/* Queues a task for the next iteration; queueing an already queued task does nothing. */
void loop_defer(struct loop *loop, struct loop_task *task);
/* Removes a queued task (its owner is going away). */
void loop_cancel(struct loop *loop, struct loop_task *task);

/*
 * Frees an object after the current batch: grave->bury(grave) runs at the start of the next
 * iteration (or in loop_free()). For owners without a recycler of their own (the control
 * thread's checks and discovery sources) that close an fd in the middle of a batch whose later
 * events may still point at the object: close at once (io->handler = NULL), free here.
 */
void loop_bury(struct loop *loop, struct loop_grave *grave);

/* Called before every epoll_wait: the place to recycle objects freed during the last batch. */
void loop_set_before_poll(struct loop *loop, loop_hook_fn fn, void *arg);
/* Called in the loop's thread after another thread called loop_wake(). */
void loop_set_wake_handler(struct loop *loop, loop_hook_fn fn, void *arg);
/* Safe from any thread or a signal handler. */
void loop_wake(struct loop *loop);

/* Runs until loop_stop() is called from the loop's own thread. */
void loop_run(struct loop *loop);
void loop_stop(struct loop *loop);

#endif
