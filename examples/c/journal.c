/*
 * journal.c -- a logger appending to a cluster journal from C.
 *
 * Usage: journal DIR
 *
 * Makes a (stopped) node publishing DIR/mainlog.cluster as its mainlog,
 * opens the destination "cluster://DIR/mainlog.cluster=>master" with group
 * commit, appends three lines (each returns once it is durable) and prints
 * their positions as jlog prints them, shows `cluster show logs`, and
 * checks the errors for a bad destination and a NULL line. Built and run
 * by scripts/c-examples.sh, which checks the exact output.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eccluster.h"

static bool check(ecc_status status, const char *what)
{
    if (status == ECC_OK)
        return true;
    fprintf(stderr, "%s: %s (%s)\n", what, ecc_status_str(status), ecc_last_error());
    return false;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    int rc = EXIT_FAILURE;
    ecc_config *config = NULL;
    ecc_node *node = NULL;
    ecc_log *log = NULL;
    char text[1024], destination[1024];
    int n = snprintf(text, sizeof text,
                     "[cluster]\nnodename = \"j1\"\n[cluster.logs]\nmainlog = \"%s/mainlog.cluster\"\n",
                     argv[1]);
    int d = snprintf(destination, sizeof destination, "cluster://%s/mainlog.cluster=>master",
                     argv[1]);
    if (n < 0 || (size_t)n >= sizeof text || d < 0 || (size_t)d >= sizeof destination) {
        fprintf(stderr, "DIR is too long\n");
        return EXIT_FAILURE;
    }
    if (!check(ecc_config_parse(text, ECC_FORMAT_TOML, &config), "ecc_config_parse") ||
        !check(ecc_node_new(config, &node), "ecc_node_new") ||
        !check(ecc_log_open(node, destination, 2, &log), "ecc_log_open"))
        goto out;

    const char *lines[] = {"1700000000@j1: first", "1700000001@j1: second",
                           "1700000002@j1: third"};
    for (size_t i = 0; i < 3; i++) {
        uint32_t segment = 0, marker = 0;
        if (!check(ecc_log_append(log, (const uint8_t *)lines[i], strlen(lines[i]), &segment,
                                  &marker),
                   "ecc_log_append"))
            goto out;
        printf("appended %08" PRIx32 ":%08" PRIx32 "\n", segment, marker);
    }

    char shown[1024];
    size_t len = 0;
    if (!check(ecc_console_exec(node, "cluster show logs", shown, sizeof shown, &len),
               "cluster show logs"))
        goto out;
    /* The size depends on nothing but the lines, yet keep the output to
     * what a reader checks: the log and its subscriber. */
    printf("%s", strstr(shown, "mainlog") == shown ? "mainlog listed\n" : "mainlog missing\n");
    printf("%s\n", strstr(shown, "[subscriber: 'master' @ 00000000:00000000]") ? "master at the start"
                                                                               : "no master");

    ecc_log *bad = NULL;
    ecc_status st = ecc_log_open(node, "ftp:///var/log/x", 0, &bad);
    printf("bad destination: %s: %s\n", ecc_status_str(st), ecc_last_error());
    st = ecc_log_append(log, NULL, 5, NULL, NULL);
    printf("NULL line: %s: %s\n", ecc_status_str(st), ecc_last_error());
    rc = bad == NULL ? EXIT_SUCCESS : EXIT_FAILURE;

out:
    fflush(stdout);
    ecc_log_free(log);
    ecc_node_free(node);
    ecc_config_free(config);
    return rc;
}
