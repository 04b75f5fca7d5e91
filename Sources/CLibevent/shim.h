// The one place libevent's headers enter the project. Only the EventLoop module
// imports this; everything else sees Swift types.
#ifndef MEMCLUSTER_CLIBEVENT_SHIM_H
#define MEMCLUSTER_CLIBEVENT_SHIM_H

// System headers first: libevent's event-config.h defines _GNU_SOURCE, and any
// glibc header parsed after that would define its types differently from
// Swift's Glibc module (a clean build then fails on fd_set).
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

// prctl is variadic, which Swift cannot call; this names the calling thread
// for ps/top/perf.
static inline void memcluster_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

// accept4 is declared by glibc only under _GNU_SOURCE, which Swift's Glibc
// module is built without; one accept4 replaces accept + two fcntl calls.
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/// Accepts a connection as a non-blocking, close-on-exec socket.
static inline int memcluster_accept(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

#endif
