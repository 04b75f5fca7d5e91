/*
 * Asks the system's libmemcached (the library pylibmc links) where keys go.
 *
 * Our own test tool, not part of the product. libmemcached_placements.py
 * compiles it with gcc and drives it through stdin/stdout:
 *
 *   stdin:  line 1  "weighted" (MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED)
 *                   or "classic" (MEMCACHED_BEHAVIOR_KETAMA),
 *                   then "behavior-first" (pylibmc's order) or "servers-first"
 *           line 2  number of servers N
 *           N lines "host port weight", in list order
 *           then one key per line until EOF (keys hold no whitespace)
 *   stdout: "continuum C", C lines "value server_index" in libmemcached's
 *           own sorted order, then one server index per key.
 *
 * The order matters to libmemcached in one case: a server of weight > 1 added
 * while KETAMA (unweighted) is on switches the continuum to weighted MD5
 * points. pylibmc sets behaviours first, then adds servers. Nothing
 * connects: memcached_generate_hash() only consults the continuum.
 */
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * libmemcached keeps the continuum in memcached_st (public header) but only
 * forward-declares its items. The layout below is libmemcached's
 * (libmemcached/continuum.hpp: index, then value); the dump is checked by
 * comparing its point count and the key placements computed by the library
 * itself, so a wrong guess here would show up as a failing fixture.
 */
struct memcached_continuum_item_st {
    uint32_t index;
    uint32_t value;
};

int main(void) {
    char mode[32], order[32];
    unsigned count;
    if (scanf("%31s %31s %u", mode, order, &count) != 3) return 2;

    memcached_behavior_t behavior;
    if (strcmp(mode, "weighted") == 0) behavior = MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED;
    else if (strcmp(mode, "classic") == 0) behavior = MEMCACHED_BEHAVIOR_KETAMA;
    else return 2;
    int behavior_first = strcmp(order, "behavior-first") == 0;
    if (!behavior_first && strcmp(order, "servers-first") != 0) return 2;

    memcached_st *memc = memcached_create(NULL);
    if (behavior_first && memcached_behavior_set(memc, behavior, 1) != MEMCACHED_SUCCESS) return 1;
    for (unsigned i = 0; i < count; i++) {
        char host[1100];
        unsigned port, weight;
        if (scanf("%1099s %u %u", host, &port, &weight) != 3) return 2;
        if (memcached_server_add_with_weight(memc, host, (in_port_t)port, weight) != MEMCACHED_SUCCESS) {
            fprintf(stderr, "cannot add %s:%u\n", host, port);
            return 1;
        }
    }
    if (!behavior_first && memcached_behavior_set(memc, behavior, 1) != MEMCACHED_SUCCESS) return 1;

    uint32_t points = memc->ketama.continuum_points_counter;
    printf("continuum %u\n", points);
    for (uint32_t i = 0; i < points; i++) {
        printf("%u %u\n", memc->ketama.continuum[i].value, memc->ketama.continuum[i].index);
    }

    char key[300];
    while (scanf("%299s", key) == 1) {
        printf("%u\n", memcached_generate_hash(memc, key, strlen(key)));
    }
    memcached_free(memc);
    return 0;
}
