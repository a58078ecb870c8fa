/* One or more timed getaddrinfo(name, NULL, AF_UNSPEC, SOCK_STREAM) calls, one JSON line each (start: wall-clock seconds), in one
 * thread of one process: the lab's musl client (built with Debian's musl-gcc, statically) and the same
 * call tests/lab/lookup.py makes through glibc. Usage: lookup NAME [COUNT] */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s NAME [COUNT]\n", argv[0]);
        return 2;
    }
    int count = argc == 3 ? atoi(argv[2]) : 1;
    if (count < 1) {
        fprintf(stderr, "COUNT must be >= 1\n");
        return 2;
    }
    for (int i = 0; i < count; i++) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        double t0 = now();
        int rc = getaddrinfo(argv[1], NULL, &hints, &res);
        double dt = now() - t0;
        int v4 = 0, v6 = 0;
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            if (a->ai_family == AF_INET) v4++;
            if (a->ai_family == AF_INET6) v6++;
        }
        if (res) freeaddrinfo(res);
        printf("{\"start\": %.6f, \"seconds\": %.6f, \"error\": %s%s%s, \"v4\": %d, \"v6\": %d}\n",
               wall.tv_sec + wall.tv_nsec / 1e9, dt, rc ? "\"" : "", rc ? gai_strerror(rc) : "null", rc ? "\"" : "",
               v4, v6);
        fflush(stdout);
    }
    return 0;
}
