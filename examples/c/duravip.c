/*
 * duravip.c -- a DuraVIP handed over between two nodes in one process.
 *
 * Usage: duravip PORT_1 PORT_2 SOCKET_DIR
 *
 * Builds two node configurations from strings (loopback cluster ports
 * PORT_1 and PORT_2, console sockets in SOCKET_DIR, DuraVIP in dry run so
 * that nothing is plumbed and no privileges are needed), starts both nodes
 * and registers a DuraVIP gained/lost hook on each. Once the two have
 * joined it registers 10.99.0.7 (bindings "c-out" and "c-bounce", and an
 * SMTP listener on port 25) on c1, waits until c1 gains it and c2 has
 * heard so, registers it on c2 as well, then removes it from c1: c1 loses
 * it and c2, the other candidate, gains it. Removing it from c2 too makes
 * c2 lose it. The hook prints every event ("c1: gained 10.99.0.7 (c-bounce, c-out)"); after each
 * gain the owner's `cluster duravip show` line for the address shows its
 * names, flags and services. Exits non-zero on any failure or if an event
 * does not come within 10 seconds. Built and run by scripts/c-examples.sh.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

#define VIP "10.99.0.7"

/* One node's DuraVIP events. The hook runs on that node's engine thread
 * while main polls, so the counters are atomic. */
struct vip_watch {
    const char *node;
    atomic_int gained;
    atomic_int lost;
};

/* Runs on the engine thread whenever the node gains or loses a DuraVIP;
 * the strings are valid only during the call. Keep it short: no
 * ecc_node_stop or ecc_node_free here. */
static void on_duravip(void *userdata, bool gained, const char *ip,
                       const char *const *names, size_t name_count,
                       const uint16_t *listener_ports, size_t port_count)
{
    struct vip_watch *watch = userdata;
    /* One printf per line, so a line is never interleaved with another
     * thread's. */
    char line[512];
    int len = snprintf(line, sizeof line, "%s: %s %s (", watch->node,
                       gained ? "gained" : "lost", ip);
    for (size_t i = 0; i < name_count && len > 0 && (size_t)len < sizeof line; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, "%s%s", i ? ", " : "", names[i]);
    for (size_t i = 0; i < port_count && len > 0 && (size_t)len < sizeof line; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, "%s%u", i ? "," : ") ports (",
                        (unsigned)listener_ports[i]);
    printf("%s)\n", line);
    fflush(stdout);
    atomic_fetch_add(gained ? &watch->gained : &watch->lost, 1);
}

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

/* Waits up to 10 s for `counter` to reach `target`. */
static bool wait_count(atomic_int *counter, int target, const char *what)
{
    double deadline = now_seconds() + 10.0;
    while (atomic_load(counter) < target) {
        if (now_seconds() > deadline) {
            fprintf(stderr, "timed out waiting until %s\n", what);
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

/* Runs a console command; returns its output (free it) or NULL. The
 * output's length is not known in advance, so ask for it first. */
static char *console(const ecc_node *node, const char *command)
{
    size_t len = 0;
    ecc_status status = ecc_console_exec(node, command, NULL, 0, &len);
    if (status != ECC_OK && status != ECC_BUFFER_TOO_SMALL) {
        fprintf(stderr, "%s: %s\n", command, ecc_last_error());
        return NULL;
    }
    /* The output may grow between the two calls (timers in it tick), so
     * retry while it does not fit. */
    for (;;) {
        char *buf = malloc(len + 1);
        if (buf == NULL) {
            fprintf(stderr, "%s: out of memory\n", command);
            return NULL;
        }
        status = ecc_console_exec(node, command, buf, len + 1, &len);
        if (status == ECC_OK)
            return buf;
        free(buf);
        if (status != ECC_BUFFER_TOO_SMALL) {
            fprintf(stderr, "%s: %s\n", command, ecc_last_error());
            return NULL;
        }
    }
}

/* The header line of VIP in `cluster duravip show` ("ip/names: (flags)
 * services"), copied into `line`; false if it is not there. */
static bool vip_line(const ecc_node *node, char *line, size_t len)
{
    char *out = console(node, "cluster duravip show");
    if (out == NULL)
        return false;
    bool found = false;
    for (char *l = strtok(out, "\n"); l != NULL && !found; l = strtok(NULL, "\n")) {
        if (strncmp(l, VIP "/", strlen(VIP "/")) == 0) {
            snprintf(line, len, "%s", l);
            found = true;
        }
    }
    free(out);
    return found;
}

/* Waits up to 10 s until the node's console shows VIP owned (by any
 * node), and leaves its line in `line`. */
static bool wait_owned(const ecc_node *node, const char *name, char *line, size_t len)
{
    double deadline = now_seconds() + 10.0;
    line[0] = '\0';
    while (!vip_line(node, line, len) || strstr(line, ": (owned,") == NULL) {
        if (now_seconds() > deadline) {
            fprintf(stderr, "%s: %s is not shown owned: %s\n", name, VIP, line);
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

/* Prints the owner's line for VIP. The gained hook runs only once the
 * node's console shows the change, so after the hook it must be there. */
static bool print_owned(const ecc_node *node, const char *name)
{
    char line[512] = "";
    if (!vip_line(node, line, sizeof line) || strstr(line, ": (owned,") == NULL) {
        fprintf(stderr, "%s: the hook ran but %s is not shown owned: %s\n", name, VIP, line);
        return false;
    }
    printf("%s: cluster duravip show: %s\n", name, line);
    return true;
}

/* Waits up to 10 s until the node's view has both nodes. */
static bool wait_joined(const ecc_node *node)
{
    double deadline = now_seconds() + 10.0;
    for (;;) {
        char *info = console(node, "cluster info");
        if (info == NULL)
            return false;
        bool joined = strstr(info, ", 2 members: c1, c2\n") != NULL;
        free(info);
        if (joined)
            return true;
        if (now_seconds() > deadline) {
            fprintf(stderr, "timed out waiting for the nodes to join\n");
            return false;
        }
        sleep_ms(20);
    }
}

/* Makes a stopped node from configuration text. */
static ecc_node *make_node(const char *name, unsigned port1, unsigned port2, const char *dir)
{
    char text[1024];
    int len = snprintf(text, sizeof text,
                       "[cluster]\n"
                       "nodename = \"%s\"\n"
                       "nodeaddr = \"127.0.0.1\"\n"
                       "heartbeat_start_delay = 0\n"
                       "heartbeats_per_sec = 10\n"
                       /* Down after 3 s of silence rather than 0.5 s, so
                        * that valgrind's slowdown is not taken for a crash. */
                       "down_heartbeats = 30\n"
                       /* Settle in a second instead of the default five. */
                       "view_mature_time = 1\n"
                       "duravip_dry_run = true\n"
                       "[cluster.topology.\"10.99.0.0/24\"]\n"
                       "interface = \"demo0\"\n"
                       "[msgc_server.peers]\n"
                       "c1 = \"127.0.0.1:%u\"\n"
                       "c2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n",
                       name, port1, port2, strcmp(name, "c1") == 0 ? port1 : port2, dir, name);
    if (len < 0 || (size_t)len >= sizeof text) {
        fprintf(stderr, "%s: configuration text too long\n", name);
        return NULL;
    }
    ecc_config *config = NULL;
    if (ecc_config_parse(text, ECC_FORMAT_TOML, &config) != ECC_OK) {
        fprintf(stderr, "%s: %s\n", name, ecc_last_error());
        return NULL;
    }
    ecc_node *node = NULL;
    if (ecc_node_new(config, &node) != ECC_OK)
        fprintf(stderr, "%s: ecc_node_new: %s\n", name, ecc_last_error());
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

static bool check(ecc_status status, const char *what)
{
    if (status == ECC_OK)
        return true;
    fprintf(stderr, "%s: %s (%s)\n", what, ecc_status_str(status), ecc_last_error());
    return false;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT_1 PORT_2 SOCKET_DIR\n", argv[0]);
        return 2;
    }
    unsigned port1 = (unsigned)strtoul(argv[1], NULL, 10);
    unsigned port2 = (unsigned)strtoul(argv[2], NULL, 10);
    int rc = EXIT_FAILURE;
    /* Must outlive the nodes: their hooks may run until ecc_node_stop. */
    struct vip_watch w1 = {.node = "c1"}, w2 = {.node = "c2"};
    atomic_init(&w1.gained, 0);
    atomic_init(&w1.lost, 0);
    atomic_init(&w2.gained, 0);
    atomic_init(&w2.lost, 0);
    ecc_node *c1 = make_node("c1", port1, port2, argv[3]);
    ecc_node *c2 = c1 ? make_node("c2", port1, port2, argv[3]) : NULL;
    const char *const names[] = {"c-bounce", "c-out"};
    if (c2 == NULL)
        goto out;

    if (!check(ecc_node_register_duravip_hook(c1, on_duravip, &w1), "register hook on c1") ||
        !check(ecc_node_register_duravip_hook(c2, on_duravip, &w2), "register hook on c2") ||
        !check(ecc_node_start(c1), "start c1") || !check(ecc_node_start(c2), "start c2") ||
        !wait_joined(c1))
        goto out;
    printf("joined: c1, c2\n");

    /* c1 alone claims the address, so it is the owner. */
    if (!check(ecc_node_register_duravip(c1, VIP, names, 2, 25, NULL), "register on c1") ||
        !wait_count(&w1.gained, 1, "c1 gains " VIP) || !print_owned(c1, "c1"))
        goto out;
    /* Now c2 claims it too, and takes it over when c1 gives it up. It
     * registers only once it has heard that c1 owns the address: a node
     * that has not, takes the address for an orphan and acquires it too. */
    char line[512];
    if (!wait_owned(c2, "c2", line, sizeof line) ||
        !check(ecc_node_register_duravip(c2, VIP, names, 2, 25, NULL), "register on c2") ||
        !check(ecc_node_remove_duravip(c1, VIP), "remove from c1") ||
        !wait_count(&w1.lost, 1, "c1 loses " VIP) ||
        !wait_count(&w2.gained, 1, "c2 gains " VIP) || !print_owned(c2, "c2"))
        goto out;
    if (!check(ecc_node_remove_duravip(c2, VIP), "remove from c2") ||
        !wait_count(&w2.lost, 1, "c2 loses " VIP))
        goto out;

    if (!check(ecc_node_stop(c1), "stop c1") || !check(ecc_node_stop(c2), "stop c2"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_node_free(c2);
    ecc_node_free(c1);
    return rc;
}
