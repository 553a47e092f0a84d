/* Counting remembered decisions in the compiled core (pinengine._core.Tally).
 *
 * A Tally is incremented by recall_outcome(s) while the GIL is held, so on a
 * regular CPython a plain add is atomic with respect to other Python threads.
 * A free-threaded CPython (Py_GIL_DISABLED) has no GIL to rely on: there the
 * adds are atomic (relaxed: readers only need each count eventually, not in
 * order with the others).
 *
 * pe_now_ns is a monotonic clock in nanoseconds, for the latency of a
 * decision: the one time.perf_counter uses on each platform.
 */
#ifndef PE_TALLY_H
#define PE_TALLY_H

#include <stdint.h>

#if defined(Py_GIL_DISABLED) && (defined(__GNUC__) || defined(__clang__))
#define PE_TALLY_ADD(p, v) ((void)__atomic_fetch_add((p), (uint64_t)(v), __ATOMIC_RELAXED))
#elif defined(Py_GIL_DISABLED) && defined(_MSC_VER)
#include <intrin.h>
#define PE_TALLY_ADD(p, v) ((void)_InterlockedExchangeAdd64((volatile long long *)(p), (long long)(v)))
#else
#define PE_TALLY_ADD(p, v) ((void)(*(p) += (uint64_t)(v)))
#endif

static inline void pe_tally_add(uint64_t *p, uint64_t v) { PE_TALLY_ADD(p, v); }

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
static inline uint64_t pe_now_ns(void)
{
    static LARGE_INTEGER freq; /* constant once the system has booted */
    LARGE_INTEGER now;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    /* seconds and the remainder apart: no overflow of now * 1e9 */
    return (uint64_t)(now.QuadPart / freq.QuadPart) * 1000000000u
        + (uint64_t)(now.QuadPart % freq.QuadPart) * 1000000000u / (uint64_t)freq.QuadPart;
}
#else
#include <time.h>
static inline uint64_t pe_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

#endif
