/*
 * time.c - the monotonic clock, for intervals, timeouts and rates.
 */
#include "common/common.h"

#include <time.h>

uint64_t now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
