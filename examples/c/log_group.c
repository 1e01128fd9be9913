/*
 * log_group.c -- a paniclog line broadcast on a log_group, heard by a peer.
 *
 * Usage: log_group PORT_1 PORT_2 DIR
 *
 * Starts two nodes in one process (loopback cluster ports PORT_1 and
 * PORT_2, console sockets and journals under DIR), both with
 * log_group = "panics" and each publishing DIR/<node>/paniclog.cluster as
 * its paniclog, with a log group hook on each. g1's logger opens its
 * paniclog by destination and appends a line; g2's hook hears it (sender,
 * log, time, line), and g2's `cluster show log_group` lists it. g1 hears
 * nothing: a node does not hear its own lines. Exits non-zero on any
 * failure or if the line does not come within 10 seconds. Built and run by
 * scripts/c-examples.sh, which checks the exact output.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

#define LINE "1700000000@g1: assertion failed: queue != NULL"

/* The first line one node's hook heard. The hook runs on a link thread
 * while main polls, so it fills the fields first and then counts, and
 * main reads them once it sees the count (the atomic orders them). Main
 * prints them, so the output has one order whichever thread is faster. */
struct listener {
    atomic_int heard;
    char sender[64];
    char log[64];
    uint64_t time_us;
    char line[256];
    size_t line_len;
};

/* Runs on the thread reading the sender's cluster link; the strings and
 * the line are valid only during the call, and the line has no NUL. */
static void on_line(void *userdata, const char *sender, const char *log, uint64_t time_us,
                    const uint8_t *line, size_t line_len)
{
    struct listener *l = userdata;
    if (atomic_load(&l->heard) == 0) {
        snprintf(l->sender, sizeof l->sender, "%s", sender);
        snprintf(l->log, sizeof l->log, "%s", log);
        l->time_us = time_us;
        l->line_len = line_len < sizeof l->line ? line_len : sizeof l->line;
        memcpy(l->line, line, l->line_len);
    }
    atomic_fetch_add(&l->heard, 1);
}

static double now_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
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
                       "[cluster.logs]\n"
                       "paniclog = \"%s/%s/paniclog.cluster\"\n"
                       /* Counts replicate within 0.1 s: main watches one to
                        * know the link between the nodes is up. */
                       "[cluster.replicate.outbound_domains]\n"
                       "max_delay = 0.1\n"
                       "[msgc_server.peers]\n"
                       "g1 = \"127.0.0.1:%u\"\n"
                       "g2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n",
                       name, dir, name, port1, port2, strcmp(name, "g1") == 0 ? port1 : port2,
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

/* The broadcast is best effort: a line appended before g1's link to g2 is
 * up never reaches g2. A count g1 makes reaching g2 travels on that link,
 * so once g2 sees it the link is up. Waits up to 10 s. */
static bool wait_link(const ecc_node *g1, const ecc_node *g2)
{
    ecc_gauge *mine = NULL, *theirs = NULL;
    const uint8_t key[] = "link";
    bool up = false;
    if (check(ecc_gauge_open(g1, "outbound_domains", &mine), "gauge on g1") &&
        check(ecc_gauge_open(g2, "outbound_domains", &theirs), "gauge on g2") &&
        check(ecc_gauge_add(mine, key, sizeof key - 1, 1, NULL), "count on g1")) {
        double deadline = now_seconds(CLOCK_MONOTONIC) + 10.0;
        while (!up && now_seconds(CLOCK_MONOTONIC) < deadline) {
            int64_t count = 0;
            if (!check(ecc_gauge_get(theirs, key, sizeof key - 1, ECC_SCOPE_GLOBAL, &count),
                       "count on g2"))
                break;
            up = count == 1;
            if (!up)
                sleep_ms(20);
        }
        if (!up)
            fprintf(stderr, "timed out waiting for g1's count to reach g2\n");
    }
    ecc_gauge_free(theirs);
    ecc_gauge_free(mine);
    return up;
}

/* Runs a console command into `buf`. */
static bool console(const ecc_node *node, const char *command, char *buf, size_t len)
{
    size_t out_len = 0;
    return check(ecc_console_exec(node, command, buf, len, &out_len), command);
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
    /* Must outlive the nodes: their hooks may run until ecc_node_stop. */
    struct listener l1 = {.line_len = 0}, l2 = {.line_len = 0};
    atomic_init(&l1.heard, 0);
    atomic_init(&l2.heard, 0);
    ecc_log *paniclog = NULL;
    ecc_node *g1 = make_node("g1", port1, port2, dir);
    ecc_node *g2 = g1 ? make_node("g2", port1, port2, dir) : NULL;
    if (g2 == NULL)
        goto out;

    if (!check(ecc_node_register_log_group_hook(g1, on_line, &l1), "hook on g1") ||
        !check(ecc_node_register_log_group_hook(g2, on_line, &l2), "hook on g2") ||
        !check(ecc_node_start(g1), "start g1") || !check(ecc_node_start(g2), "start g2") ||
        !wait_link(g1, g2))
        goto out;
    printf("linked: g1, g2\n");

    char destination[1024];
    int d = snprintf(destination, sizeof destination, "cluster://%s/g1/paniclog.cluster=>master",
                     dir);
    if (d < 0 || (size_t)d >= sizeof destination) {
        fprintf(stderr, "DIR is too long\n");
        goto out;
    }
    uint32_t segment = 0, marker = 0;
    double appended_at = now_seconds(CLOCK_REALTIME);
    if (!check(ecc_log_open(g1, destination, 0, &paniclog), "ecc_log_open") ||
        !check(ecc_log_append(paniclog, (const uint8_t *)LINE, strlen(LINE), &segment, &marker),
               "ecc_log_append"))
        goto out;
    printf("appended %08" PRIx32 ":%08" PRIx32 "\n", segment, marker);

    double deadline = now_seconds(CLOCK_MONOTONIC) + 10.0;
    while (atomic_load(&l2.heard) < 1) {
        if (now_seconds(CLOCK_MONOTONIC) > deadline) {
            fprintf(stderr, "timed out waiting for g2 to hear the line\n");
            goto out;
        }
        sleep_ms(20);
    }
    printf("g2 hook: from %s, log %s, %zu bytes: %.*s\n", l2.sender, l2.log, l2.line_len,
           (int)l2.line_len, l2.line);
    double sent = (double)l2.time_us / 1e6;
    printf("time: %s\n", sent > appended_at - 5 && sent < appended_at + 5
                             ? "the sender's append time"
                             : "wrong");

    /* The time on each line varies; show the rest. */
    char shown[4096];
    if (!console(g2, "cluster show log_group", shown, sizeof shown))
        goto out;
    for (char *l = strtok(shown, "\n"); l != NULL; l = strtok(NULL, "\n")) {
        const char *z = strstr(l, "Z ");
        printf("g2 cluster show log_group: %s\n", z ? z + 2 : l);
    }
    if (!console(g1, "cluster show log_group", shown, sizeof shown))
        goto out;
    printf("g1 cluster show log_group: %s", shown);
    printf("g1 heard %d lines\n", atomic_load(&l1.heard));

    ecc_status st = ecc_node_register_log_group_hook(g1, NULL, NULL);
    printf("NULL hook: %s: %s\n", ecc_status_str(st), ecc_last_error());

    if (!check(ecc_node_stop(g1), "stop g1") || !check(ecc_node_stop(g2), "stop g2"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_log_free(paniclog);
    ecc_node_free(g2);
    ecc_node_free(g1);
    return rc;
}
