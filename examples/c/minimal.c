/*
 * minimal.c -- the smallest complete host of libeccluster.
 *
 * Usage: minimal CONFIG_FILE
 *
 * Every line on stdout is stable, so scripts/c-examples.sh can check it.
 * Build and run it with scripts/c-examples.sh.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eccluster.h"

/* Everything the nodename hook needs travels in userdata, not in globals, so
 * one process can run several nodes with different hooks. */
struct nodename_suffix {
    const char *suffix;
    unsigned calls;
};

/* Runs on the thread that calls ecc_node_start (or a getter before start),
 * never concurrently for one node, so the counter needs no lock. */
static bool add_suffix(void *userdata, const char *current, char *buf, size_t buf_len)
{
    struct nodename_suffix *s = userdata;
    s->calls++;
    int n = snprintf(buf, buf_len, "%s%s", current, s->suffix);
    /* A truncated name would be a different node: keep the configured one. */
    return n >= 0 && (size_t)n < buf_len;
}

/* Runs a console command and returns its output in a malloc'd string (or NULL,
 * with ecc_last_error() set). Output has no size limit, so the caller cannot
 * know a big enough buffer in advance: grow it until the library says it fits.
 * The loop (not a single retry) copes with output that grows between calls. */
static char *console_exec(const ecc_node *node, const char *command, size_t len,
                          ecc_status *status)
{
    char *buf = NULL;
    for (;;) {
        char *bigger = realloc(buf, len);
        if (bigger == NULL) {
            free(buf);
            *status = ECC_IO_ERROR;
            return NULL;
        }
        buf = bigger;
        size_t needed = 0;
        *status = ecc_console_exec(node, command, buf, len, &needed);
        if (*status == ECC_OK)
            return buf;
        if (*status != ECC_BUFFER_TOO_SMALL) {
            free(buf);
            return NULL;
        }
        printf("console: %zu bytes too small, retrying with %zu\n", len, needed + 1);
        len = needed + 1; /* needed excludes the NUL */
    }
}

/* ecc_last_error() is only valid until the next ecc_ call: print it at once. */
static void report(const char *what, ecc_status status)
{
    printf("%s: %s: %s\n", what, ecc_status_str(status), ecc_last_error());
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG_FILE\n", argv[0]);
        return 2;
    }
    int rc = EXIT_FAILURE;
    ecc_config *config = NULL;
    ecc_node *node = NULL;
    char *answer = NULL;
    /* Must outlive the node: the library keeps the pointer until ecc_node_free. */
    struct nodename_suffix suffix = {.suffix = "-c", .calls = 0};
    ecc_status st;

    printf("library: %s (header %d.%d.%d)\n", ecc_version(), ECC_VERSION_MAJOR,
           ECC_VERSION_MINOR, ECC_VERSION_PATCH);

    st = ecc_config_load(argv[1], &config);
    if (st != ECC_OK) {
        /* The text names the file; for ECC_CONFIG_ERROR it lists every
         * problem with file:line:column. */
        fprintf(stderr, "%s\n", ecc_last_error());
        return EXIT_FAILURE;
    }

    /* A typo must not pass silently: the option is rejected and the
     * configuration stays as it was. */
    st = ecc_config_set(config, "cluster heartbeat_per_sec", "4");
    if (st != ECC_CONFIG_ERROR) {
        fprintf(stderr, "ecc_config_set accepted a misspelled option\n");
        goto out;
    }
    report("misspelled option", st);

    st = ecc_node_new(config, &node);
    if (st != ECC_OK) {
        report("ecc_node_new", st);
        goto out;
    }
    /* The node copied the configuration; it is not needed any more. */
    ecc_config_free(config);
    config = NULL;

    st = ecc_node_register_nodename_hook(node, ECC_HOOK_LAST, add_suffix, &suffix);
    if (st != ECC_OK) {
        report("ecc_node_register_nodename_hook", st);
        goto out;
    }

    st = ecc_node_start(node);
    if (st != ECC_OK) {
        report("ecc_node_start", st);
        goto out;
    }
    printf("hook calls: %u\n", suffix.calls);

    /* 4 bytes is deliberately too small, to show the retry; a real host would
     * start with something like 4096. */
    answer = console_exec(node, "cluster nodename", 4, &st);
    if (answer == NULL) {
        report("cluster nodename", st);
        goto out;
    }
    answer[strcspn(answer, "\n")] = '\0'; /* console output ends in a newline */
    printf("nodename: %s\n", answer);

    /* "ip:port" or "[ipv6]:port" always fits 64 bytes. */
    char addr[64];
    size_t addr_len;
    st = ecc_node_nodeaddr(node, addr, sizeof addr, &addr_len);
    if (st != ECC_OK) {
        report("ecc_node_nodeaddr", st);
        goto out;
    }
    printf("nodeaddr: %s\n", addr);

    /* The identity is fixed once the node runs, so late hooks are refused. */
    st = ecc_node_register_nodename_hook(node, ECC_HOOK_FIRST, add_suffix, &suffix);
    if (st != ECC_INVALID_STATE) {
        fprintf(stderr, "a hook registered after start was not refused\n");
        goto out;
    }
    report("late hook", st);

    char *bogus = console_exec(node, "cluster frobnicate", 4096, &st);
    if (bogus != NULL || st != ECC_COMMAND_FAILED) {
        fprintf(stderr, "an unknown command did not fail\n");
        free(bogus);
        goto out;
    }
    report("unknown command", st);

    st = ecc_node_stop(node);
    if (st != ECC_OK) {
        report("ecc_node_stop", st);
        goto out;
    }
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    free(answer);
    ecc_node_free(node);
    ecc_config_free(config);
    return rc;
}
