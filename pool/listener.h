/*
 * listener.h - the accepting side of a network front end (NBD, iSCSI): the listening socket,
 * the accept loop, handing each connection to a reactor, and the count of connections that a
 * stop waits for. The connections themselves, their list and their protocol stay with the
 * front end, which embeds a struct listener in its server and is called back through struct
 * listener_ops (as with pool/stream.h for each connection's bytes).
 *
 * Listening
 *   listener_listen opens ADDR:PORT (a host name or address, [v6] in brackets, an empty ADDR
 *   for every address) with SO_REUSEADDR, or unix:PATH when the front end allows it (a socket
 *   left at PATH by a previous run is replaced, any other file is not touched; PATH is
 *   removed at listener_close). A server without an address takes connections only from
 *   listener_add (socket activation, tests).
 *
 * Accepting
 *   listener_start posts the accept loop to reactor 0: one reactor_accept pending at a time.
 *   Each new connection (and each adopted one, listener_add) gets TCP_NODELAY and goes to the
 *   next reactor in turn: ops->conn_new builds the front end's connection for that reactor,
 *   then, under the lock and only while the server is not stopping, it is counted and
 *   ops->conn_start lists it and posts its start, so that a stop posted later runs after the
 *   start. Out of descriptors (EMFILE, ENFILE), the loop waits 10 ms before accepting again
 *   so that connections can end.
 *
 * Stopping
 *   The front end, holding the lock, calls listener_stop (no connection is taken from then
 *   on; the pending accept is cancelled on its reactor, and the listening socket is closed
 *   when the accept has ended), posts its own stop to each listed connection, then
 *   listener_wait: until the accept loop has ended and listener_conn_gone has been called
 *   for every connection counted.
 *
 * Threads and locks
 *   The lock and condition variable are the front end's (listener_init): the front end lists
 *   its connections, and walks that list to stop them, under the same lock as the listener's
 *   stopping flag and count, so a stop never misses a connection being added. The accept
 *   loop runs on reactor 0; listener_add and listener_conn_gone run on any thread without the
 *   lock; the condition is broadcast when the loop ends and when a connection is gone.
 *
 * Errors
 *   Functions return 0 or a negative errno; a failure is logged once, here, naming the
 *   protocol and the address.
 */
#ifndef CISTERN_POOL_LISTENER_H
#define CISTERN_POOL_LISTENER_H

#include <pthread.h>
#include <stdbool.h>

#include "pool/pool.h"

struct listener;

/* The front end's part. conn_new and conn_free run without the lock, conn_start under it;
 * none may be NULL. */
struct listener_ops {
    /* A new connection on @fd, to live on @r: the front end's connection (owning @fd from
     * now on), or NULL when out of memory (the listener then closes @fd). */
    void *(*conn_new)(struct listener *l, int fd, struct reactor *r);
    /* Under the lock, the server not stopping: list @conn and post its start to its
     * reactor. */
    void (*conn_start)(struct listener *l, void *conn);
    /* The server began stopping before @conn was listed: free it (and its socket). */
    void (*conn_free)(struct listener *l, void *conn);
};

/* Embedded in the front end's server. The front end reads the fields marked so (under the
 * lock); the rest is private. */
struct listener {
    const char *proto; /* for messages: "nbd" */
    const struct listener_ops *ops;
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    int fd;          /* listening socket, -1 when none */
    char *unix_path; /* removed at listener_close */
    struct reactor *reactor;
    struct io_op accept_op, cancel_op;
    struct reactor_work start_work, stop_work;
    bool listening;        /* the accept loop has not ended (lock) */
    bool stopping;         /* read (lock): listener_stop was called */
    unsigned nconns;       /* read (lock): connections counted and not yet gone */
    unsigned next_reactor; /* (lock) */
};

/* Sets up @l, not listening. @proto must outlive it; @lock and @cond are the front end's
 * (see Threads and locks). */
void listener_init(struct listener *l, const char *proto, const struct listener_ops *ops,
                   pthread_mutex_t *lock, pthread_cond_t *cond);
/* Opens the listening socket on @addr: ADDR:PORT, or unix:PATH when @allow_unix. Returns 0,
 * -EINVAL (a malformed or unknown address), or the socket's negative errno; logged. */
int listener_listen(struct listener *l, const char *addr, bool allow_unix);
/* Starts the accept loop when a socket is open. Any thread; pool reactors must exist. */
void listener_start(struct listener *l);

/* Takes a connected socket @fd (closed on failure): 0, -ESHUTDOWN when stopping, -ENOMEM.
 * Any thread, without the lock. */
int listener_add(struct listener *l, int fd);
/* A counted connection has been freed: wakes listener_wait. Any thread, without the lock. */
void listener_conn_gone(struct listener *l);

/* With the lock held: stop taking connections, cancel the accept loop. */
void listener_stop(struct listener *l);
/* With the lock held (released while waiting): waits until the accept loop has ended and
 * every counted connection is gone. */
void listener_wait(struct listener *l);
/* Closes a socket never started (a failed start) and removes the Unix socket's path. After
 * listener_wait, or instead of listener_start. */
void listener_close(struct listener *l);

#endif
