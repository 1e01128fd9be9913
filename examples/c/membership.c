/*
 * membership.c -- two nodes in one process, and a membership hook.
 *
 * Usage: membership CONFIG_1 CONFIG_2
 *
 * Starts a node from each configuration (they must name each other as
 * peers), registers a membership hook on the first, and waits until that
 * hook reports a view of two members. Prints every view the hook sees
 * ("view N: a, b"), then "joined: 2 members". Exits non-zero if the nodes
 * do not join within 10 seconds. Built and run by scripts/c-examples.sh.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eccluster.h"

/* What the hook hands to main. The hook runs on the node's engine thread
 * while main polls, so the member count is atomic. */
struct view_watch {
    atomic_size_t members;
};

/* Runs on the engine thread after every view change; `members` is valid only
 * during the call. Keep it short: no ecc_node_stop or ecc_node_free here. */
static void on_view(void *userdata, uint64_t view_number, uint64_t view_id,
                    const char *const *members, size_t member_count)
{
    struct view_watch *watch = userdata;
    (void)view_id;
    /* One printf per line, so a line is never interleaved with main's. */
    char line[512];
    int len = snprintf(line, sizeof line, "view %llu:", (unsigned long long)view_number);
    for (size_t i = 0; i < member_count && len > 0 && (size_t)len < sizeof line; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, "%s %s", i ? "," : "", members[i]);
    printf("%s\n", line);
    fflush(stdout);
    atomic_store(&watch->members, member_count);
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

/* Loads a configuration and makes a stopped node from it. */
static ecc_node *make_node(const char *path)
{
    ecc_config *config = NULL;
    ecc_node *node = NULL;
    if (ecc_config_load(path, &config) != ECC_OK) {
        fprintf(stderr, "%s\n", ecc_last_error());
        return NULL;
    }
    if (ecc_node_new(config, &node) != ECC_OK)
        fprintf(stderr, "ecc_node_new: %s\n", ecc_last_error());
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG_1 CONFIG_2\n", argv[0]);
        return 2;
    }
    int rc = EXIT_FAILURE;
    /* Must outlive the first node: its hook may run until ecc_node_stop. */
    struct view_watch watch;
    atomic_init(&watch.members, 0);
    ecc_node *first = make_node(argv[1]);
    ecc_node *second = first ? make_node(argv[2]) : NULL;
    if (second == NULL)
        goto out;

    if (ecc_node_register_membership_hook(first, on_view, &watch) != ECC_OK) {
        fprintf(stderr, "ecc_node_register_membership_hook: %s\n", ecc_last_error());
        goto out;
    }
    if (ecc_node_start(first) != ECC_OK || ecc_node_start(second) != ECC_OK) {
        fprintf(stderr, "ecc_node_start: %s\n", ecc_last_error());
        goto out;
    }

    double deadline = now_seconds() + 10.0;
    while (atomic_load(&watch.members) != 2) {
        if (now_seconds() > deadline) {
            fprintf(stderr, "timed out: the first node sees %zu member(s)\n",
                    atomic_load(&watch.members));
            goto out;
        }
        sleep_ms(20);
    }
    printf("joined: %zu members\n", atomic_load(&watch.members));

    if (ecc_node_stop(first) != ECC_OK || ecc_node_stop(second) != ECC_OK) {
        fprintf(stderr, "ecc_node_stop: %s\n", ecc_last_error());
        goto out;
    }
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_node_free(second);
    ecc_node_free(first);
    return rc;
}
