/*
 * events.c -- a host with its own event loop: the node's news taken from
 * an event queue whose descriptor is polled, instead of hooks.
 *
 * Usage: events PORT_1 PORT_2 DIR
 *
 * Starts two nodes in one process (loopback cluster ports PORT_1 and
 * PORT_2, console sockets and journals under DIR, DuraVIP in dry run),
 * with an event queue on v1 made before they start. The main loop polls
 * the queue's descriptor and takes events with ecc_events_next, reading
 * their fields by name: the view with both nodes, a DuraVIP registered on
 * v1 gained and then lost, a paniclog line v2 appends (heard on the
 * log_group), and the view without v2 once it stops. Each time the
 * descriptor is readable an event must be pending, and once the queue is
 * drained it must not be readable. A second queue of capacity 1 shows
 * what a full queue does: it keeps its first event, then one overflow
 * event counting what it dropped. Exits non-zero on any failure or if an
 * event does not come within 10 seconds. Built and run by
 * scripts/c-examples.sh, which checks the exact output.
 */
#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

#define VIP "10.99.1.7"
#define LINE "1700000000@v2: panic"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool check(ecc_status status, const char *what)
{
    if (status == ECC_OK)
        return true;
    fprintf(stderr, "%s: %s (%s)\n", what, ecc_status_str(status), ecc_last_error());
    return false;
}

/* Whether the queue's descriptor is readable within `ms` milliseconds. */
static bool readable(const ecc_events *events, int ms)
{
    int fd = -1;
    if (!check(ecc_events_fd(events, &fd), "ecc_events_fd"))
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Item `index` of a text field, NUL-terminated, into `buf`. */
static bool text(const ecc_event *e, const char *field, size_t index, char *buf, size_t len)
{
    size_t out_len = 0;
    return check(ecc_event_string(e, field, index, buf, len, &out_len), field);
}

/* A list field's items joined with ", " into `buf`. */
static bool joined(const ecc_event *e, const char *field, char *buf, size_t len)
{
    size_t count = 0;
    if (!check(ecc_event_count(e, field, &count), field))
        return false;
    buf[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        char item[256];
        if (!text(e, field, i, item, sizeof item))
            return false;
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? ", " : "", item);
    }
    return true;
}

/* Waits up to 10 s for an event of `kind` (with `members` members when
 * `members` is not 0), polling the descriptor as an event loop would;
 * other events are taken and dropped. NULL on failure. */
static ecc_event *wait_event(const ecc_events *events, ecc_event_kind kind, size_t members)
{
    double deadline = now_seconds() + 10.0;
    for (;;) {
        int left = (int)((deadline - now_seconds()) * 1000);
        if (left <= 0) {
            fprintf(stderr, "timed out waiting for an event of kind %u\n", (unsigned)kind);
            return NULL;
        }
        if (!readable(events, left))
            continue;
        ecc_event *e = NULL;
        if (!check(ecc_events_next(events, &e), "ecc_events_next"))
            return NULL;
        if (e == NULL) {
            fprintf(stderr, "the descriptor was readable with no event pending\n");
            return NULL;
        }
        ecc_event_kind k = 0;
        size_t n = 0;
        if (!check(ecc_event_get_kind(e, &k), "ecc_event_get_kind")) {
            ecc_event_free(e);
            return NULL;
        }
        if (k == kind && (members == 0 || (check(ecc_event_count(e, "members", &n), "members") &&
                                           n == members)))
            return e;
        ecc_event_free(e);
    }
}

/* Prints a DuraVIP event: "gained 10.99.1.7 (v-out) ports (25)". */
static bool print_vip(const ecc_event *e, const char *what)
{
    char address[64], names[256];
    size_t ports = 0;
    uint64_t port = 0;
    if (!text(e, "address", 0, address, sizeof address) || !joined(e, "names", names, sizeof names) ||
        !check(ecc_event_count(e, "listener_ports", &ports), "listener_ports") || ports != 1 ||
        !check(ecc_event_integer(e, "listener_ports", 0, &port), "listener_ports"))
        return false;
    printf("%s %s (%s) ports (%llu)\n", what, address, names, (unsigned long long)port);
    return true;
}

/* The broadcast of a log line is best effort: one appended before v2's
 * link to v1 is up never reaches v1. A count v2 makes reaching v1 travels
 * on that link, so once v1 sees it the link is up. Waits up to 10 s. */
static bool wait_link(const ecc_node *v1, const ecc_node *v2)
{
    ecc_gauge *mine = NULL, *theirs = NULL;
    const uint8_t key[] = "link";
    bool up = false;
    if (check(ecc_gauge_open(v2, "outbound_domains", &mine), "gauge on v2") &&
        check(ecc_gauge_open(v1, "outbound_domains", &theirs), "gauge on v1") &&
        check(ecc_gauge_add(mine, key, sizeof key - 1, 1, NULL), "count on v2")) {
        double deadline = now_seconds() + 10.0;
        while (!up && now_seconds() < deadline) {
            int64_t count = 0;
            if (!check(ecc_gauge_get(theirs, key, sizeof key - 1, ECC_SCOPE_GLOBAL, &count),
                       "count on v1"))
                break;
            up = count == 1;
            if (!up)
                sleep_ms(20);
        }
        if (!up)
            fprintf(stderr, "timed out waiting for v2's count to reach v1\n");
    }
    ecc_gauge_free(theirs);
    ecc_gauge_free(mine);
    return up;
}

/* Makes a stopped node from configuration text. */
static ecc_node *make_node(const char *name, unsigned port1, unsigned port2, const char *dir)
{
    char text[2048];
    int len = snprintf(text, sizeof text,
                       "[cluster]\n"
                       "nodename = \"%s\"\n"
                       "nodeaddr = \"127.0.0.1\"\n"
                       "log_group = \"panics\"\n"
                       "heartbeat_start_delay = 0\n"
                       "heartbeats_per_sec = 10\n"
                       /* Down after 3 s of silence rather than 0.5 s, so
                        * that valgrind's slowdown is not taken for a crash. */
                       "down_heartbeats = 30\n"
                       "view_mature_time = 1\n"
                       "duravip_dry_run = true\n"
                       "[cluster.topology.\"10.99.1.0/24\"]\n"
                       "interface = \"demo0\"\n"
                       "[cluster.logs]\n"
                       "paniclog = \"%s/%s/paniclog.cluster\"\n"
                       "[cluster.replicate.outbound_domains]\n"
                       "max_delay = 0.1\n"
                       "[msgc_server.peers]\n"
                       "v1 = \"127.0.0.1:%u\"\n"
                       "v2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n",
                       name, dir, name, port1, port2, strcmp(name, "v1") == 0 ? port1 : port2,
                       dir, name);
    if (len < 0 || (size_t)len >= sizeof text) {
        fprintf(stderr, "%s: configuration text too long\n", name);
        return NULL;
    }
    ecc_config *config = NULL;
    if (!check(ecc_config_parse(text, ECC_FORMAT_TOML, &config), name))
        return NULL;
    ecc_node *node = NULL;
    check(ecc_node_new(config, &node), "ecc_node_new");
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT_1 PORT_2 DIR\n", argv[0]);
        return 2;
    }
    unsigned port1 = (unsigned)strtoul(argv[1], NULL, 10);
    unsigned port2 = (unsigned)strtoul(argv[2], NULL, 10);
    const char *dir = argv[3];
    int rc = EXIT_FAILURE;
    ecc_events *events = NULL, *small = NULL;
    ecc_event *e = NULL;
    ecc_log *paniclog = NULL;
    ecc_node *v1 = make_node("v1", port1, port2, dir);
    ecc_node *v2 = v1 ? make_node("v2", port1, port2, dir) : NULL;
    char buf[512];
    if (v2 == NULL)
        goto out;

    ecc_status st = ecc_events_new(v1, 2000000, &events);
    printf("capacity 2000000: %s: %s\n", ecc_status_str(st), ecc_last_error());
    if (!check(ecc_events_new(v1, 0, &events), "ecc_events_new") ||
        !check(ecc_events_new(v1, 1, &small), "ecc_events_new (small)"))
        goto out;
    printf("fd readable before any event: %s\n", readable(events, 0) ? "yes" : "no");

    if (!check(ecc_node_start(v1), "start v1") || !check(ecc_node_start(v2), "start v2"))
        goto out;
    if ((e = wait_event(events, ECC_EVENT_MEMBERSHIP, 2)) == NULL ||
        !joined(e, "members", buf, sizeof buf))
        goto out;
    printf("view: %s\n", buf);
    ecc_event_free(e);

    const char *const names[] = {"v-out"};
    if (!check(ecc_node_register_duravip(v1, VIP, names, 1, 25, NULL), "register " VIP) ||
        (e = wait_event(events, ECC_EVENT_DURAVIP_GAINED, 0)) == NULL || !print_vip(e, "gained"))
        goto out;
    ecc_event_free(e);
    if (!check(ecc_node_remove_duravip(v1, VIP), "remove " VIP) ||
        (e = wait_event(events, ECC_EVENT_DURAVIP_LOST, 0)) == NULL || !print_vip(e, "lost"))
        goto out;
    ecc_event_free(e);

    /* v2's logger appends a line with a NUL in it; v1 hears it. */
    char destination[1024];
    int d = snprintf(destination, sizeof destination, "cluster://%s/v2/paniclog.cluster=>master",
                     dir);
    if (d < 0 || (size_t)d >= sizeof destination) {
        fprintf(stderr, "DIR is too long\n");
        goto out;
    }
    static const uint8_t line[] = LINE "\0!";
    if (!wait_link(v1, v2) || !check(ecc_log_open(v2, destination, 0, &paniclog), "ecc_log_open") ||
        !check(ecc_log_append(paniclog, line, sizeof line - 1, NULL, NULL), "ecc_log_append") ||
        (e = wait_event(events, ECC_EVENT_LOG_LINE, 0)) == NULL)
        goto out;
    char sender[64], log[64];
    uint8_t bytes[256];
    size_t len = 0;
    uint64_t time_us = 0;
    if (!text(e, "sender", 0, sender, sizeof sender) || !text(e, "log", 0, log, sizeof log) ||
        !check(ecc_event_integer(e, "time_us", 0, &time_us), "time_us") ||
        !check(ecc_event_bytes(e, "line", 0, bytes, sizeof bytes, &len), "line"))
        goto out;
    printf("log line from %s (%s), %zu bytes: %s (then %s)\n", sender, log, len, (char *)bytes,
           memcmp(bytes, line, len) == 0 && len == sizeof line - 1 ? "\\0!" : "wrong bytes");
    printf("time: %s\n", time_us > 1700000000ull * 1000000ull ? "microseconds since the epoch"
                                                              : "wrong");
    /* Errors name what is wrong. */
    st = ecc_event_string(e, "line", 0, (char *)bytes, sizeof bytes, &len);
    printf("line as a string: %s: %s\n", ecc_status_str(st), ecc_last_error());
    st = ecc_event_integer(e, "nope", 0, &time_us);
    printf("field nope: %s: %s\n", ecc_status_str(st), ecc_last_error());
    st = ecc_event_integer(e, "sender", 0, &time_us);
    printf("sender as an integer: %s: %s\n", ecc_status_str(st), ecc_last_error());
    st = ecc_event_string(e, "sender", 1, sender, sizeof sender, &len);
    printf("sender item 1: %s: %s\n", ecc_status_str(st), ecc_last_error());
    st = ecc_event_string(e, "sender", 0, sender, 2, &len);
    printf("sender into 2 bytes: %s (needs %zu)\n", ecc_status_str(st), len + 1);
    ecc_event_free(e);

    if (!check(ecc_node_stop(v2), "stop v2") ||
        (e = wait_event(events, ECC_EVENT_MEMBERSHIP, 1)) == NULL ||
        !joined(e, "members", buf, sizeof buf))
        goto out;
    printf("view: %s\n", buf);
    ecc_event_free(e);
    e = NULL;
    /* Drained: the descriptor goes quiet. */
    while (check(ecc_events_next(events, &e), "drain") && e != NULL) {
        ecc_event_free(e);
        e = NULL;
    }
    printf("fd readable once drained: %s\n", readable(events, 0) ? "yes" : "no");

    /* The small queue kept its first event, then counted the rest. */
    ecc_event_kind kind = 0;
    uint64_t dropped = 0, total = 0;
    if (!check(ecc_events_next(small, &e), "small") || e == NULL ||
        !check(ecc_event_get_kind(e, &kind), "kind"))
        goto out;
    printf("small queue: first a %s event\n", kind == ECC_EVENT_MEMBERSHIP ? "membership" : "wrong");
    ecc_event_free(e);
    if (!check(ecc_events_next(small, &e), "small") || e == NULL ||
        !check(ecc_event_get_kind(e, &kind), "kind") || kind != ECC_EVENT_OVERFLOW ||
        !check(ecc_event_integer(e, "dropped", 0, &dropped), "dropped") ||
        !check(ecc_events_dropped(small, &total), "ecc_events_dropped"))
        goto out;
    printf("small queue: then an overflow: at least 4 dropped: %s; the total agrees: %s\n",
           dropped >= 4 ? "yes" : "no", dropped == total ? "yes" : "no");
    ecc_event_free(e);
    e = NULL;

    if (!check(ecc_node_stop(v1), "stop v1"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_event_free(e);
    ecc_events_free(small);
    ecc_events_free(events);
    ecc_log_free(paniclog);
    ecc_node_free(v2);
    ecc_node_free(v1);
    return rc;
}
