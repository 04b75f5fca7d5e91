// The one place C headers enter the project. Only the EventLoop module imports
// this; everything else sees Swift types.
#ifndef MEMCLUSTER_CLIBEVENT_SHIM_H
#define MEMCLUSTER_CLIBEVENT_SHIM_H

#include <event2/event.h>
#include <event2/thread.h>

#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <string.h>


// prctl is variadic, which Swift cannot call; this names the calling thread
// for ps/top/perf.
static inline void memcluster_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
