/* A Kafka broker for the capture bench: librdkafka's mock cluster in a process of its own, so
 * that its CPU is measured apart from the collector's (in production the broker runs elsewhere).
 *
 *   usage: mock_kafka LIBRDKAFKA_SO [BROKERS]
 *
 * Prints the bootstrap address ("127.0.0.1:PORT") on one line of stdout, then serves until stdin
 * closes or SIGTERM/SIGINT. The library is dlopen'ed by path: the bench passes the collector's
 * own bundled librdkafka (runtimes/linux-x64/native/centos8-librdkafka.so), so broker and producer
 * are the same version. Linking against it instead would resolve its soname (librdkafka.so.1) to
 * whatever the host has, e.g. Debian's 2.0.2. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>

typedef void *(*conf_new_t)(void);
typedef int (*conf_set_t)(void *, const char *, const char *, char *, size_t);
typedef void *(*new_t)(int, void *, char *, size_t);
typedef void *(*cluster_new_t)(void *, int);
typedef const char *(*bootstraps_t)(void *);
typedef void (*cluster_destroy_t)(void *);
typedef void (*destroy_t)(void *);

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void *sym(void *lib, const char *name) {
    void *f = dlsym(lib, name);
    if (!f) { fprintf(stderr, "mock_kafka: %s: %s\n", name, dlerror()); exit(1); }
    return f;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s LIBRDKAFKA_SO [BROKERS]\n", argv[0]); return 2; }
    int brokers = argc > 2 ? atoi(argv[2]) : 1;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "mock_kafka: %s\n", dlerror()); return 1; }
    char err[512];
    void *conf = ((conf_new_t)sym(lib, "rd_kafka_conf_new"))();
    /* the cluster's own client handle never talks to anyone: keep it quiet */
    if (((conf_set_t)sym(lib, "rd_kafka_conf_set"))(conf, "log_level", "0", err, sizeof err) != 0) {
        fprintf(stderr, "mock_kafka: %s\n", err); return 1;
    }
    void *rk = ((new_t)sym(lib, "rd_kafka_new"))(0 /* RD_KAFKA_PRODUCER */, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "mock_kafka: rd_kafka_new: %s\n", err); return 1; }
    void *mc = ((cluster_new_t)sym(lib, "rd_kafka_mock_cluster_new"))(rk, brokers);
    if (!mc) { fprintf(stderr, "mock_kafka: rd_kafka_mock_cluster_new failed\n"); return 1; }
    printf("%s\n", ((bootstraps_t)sym(lib, "rd_kafka_mock_cluster_bootstraps"))(mc));
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct pollfd p = { .fd = 0, .events = POLLIN };
    char buf[256];
    while (!stop) {
        int n = poll(&p, 1, 500);
        if (n > 0 && (p.revents & (POLLIN | POLLHUP))) {
            if (read(0, buf, sizeof buf) <= 0) break; /* stdin closed: the bench is gone */
        }
    }
    ((cluster_destroy_t)sym(lib, "rd_kafka_mock_cluster_destroy"))(mc);
    ((destroy_t)sym(lib, "rd_kafka_destroy"))(rk);
    return 0;
}
