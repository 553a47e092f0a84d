/* Run-time CPU feature probes for the accelerated SHA-256 paths.
 *
 * Each probe answers "can this process execute those instructions now",
 * which needs the CPU to have them; for SHA-NI nothing more (it only uses
 * XMM registers, which every x86-64 OS saves), for ARMv8 the kernel's word
 * (HWCAP), since user space cannot read the ID registers everywhere. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1 /* getauxval() under -std=c99 on older C libraries */
#endif
#define PE_HASH_INTERNAL
#include "pe_hash.h"

/* ---- x86 / x86-64: CPUID ------------------------------------------------ */
#ifdef PE_HAVE_SHA256_X86

#if defined(_MSC_VER)
#  include <intrin.h>
static void cpuid_count(unsigned leaf, unsigned sub, unsigned r[4])
{
    int regs[4];
    __cpuidex(regs, (int)leaf, (int)sub);
    r[0] = (unsigned)regs[0];
    r[1] = (unsigned)regs[1];
    r[2] = (unsigned)regs[2];
    r[3] = (unsigned)regs[3];
}
static unsigned cpuid_max_leaf(void)
{
    unsigned r[4];
    cpuid_count(0, 0, r);
    return r[0];
}
#else
#  include <cpuid.h>
static void cpuid_count(unsigned leaf, unsigned sub, unsigned r[4])
{
    /* __cpuid_count is the macro under __get_cpuid_count(), present in every
     * gcc/clang <cpuid.h> (__get_cpuid_count itself only since gcc 7). The
     * caller checks the highest leaf first, as __get_cpuid_count would. */
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static unsigned cpuid_max_leaf(void)
{
    /* 0 also when the CPU has no CPUID at all (a 32-bit-only concern). */
    return __get_cpuid_max(0, 0);
}
#endif

int pe__cpu_has_shani(void)
{
    unsigned r[4];

    if (cpuid_max_leaf() < 7)
        return 0;

    cpuid_count(1, 0, r);
    /* Leaf 1 ECX: bit 9 SSSE3 (pshufb, palignr), bit 19 SSE4.1 (pblendw). */
    if (!(r[2] & (1u << 9)) || !(r[2] & (1u << 19)))
        return 0;

    cpuid_count(7, 0, r);
    /* Leaf 7 sub-leaf 0 EBX bit 29: SHA extensions. */
    return (r[1] & (1u << 29)) != 0;
}

#else
int pe__cpu_has_shani(void)
{
    return 0;
}
#endif

/* ---- AArch64: ask the OS ------------------------------------------------ */
#ifdef PE_HAVE_SHA256_ARMV8

#if defined(_WIN32)
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
#  ifndef PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE
#    define PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE 30
#  endif
int pe__cpu_has_armv8_sha2(void)
{
    return IsProcessorFeaturePresent(PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE) != 0;
}

#elif defined(__APPLE__)
/* Every Apple arm64 CPU (A7 onwards, all M-series) has the SHA-256
 * instructions; arm64 macOS and iOS do not run anywhere else. */
int pe__cpu_has_armv8_sha2(void)
{
    return 1;
}

#elif defined(__linux__)
#  include <sys/auxv.h>
#  ifndef AT_HWCAP
#    define AT_HWCAP 16
#  endif
#  ifndef HWCAP_SHA2
#    define HWCAP_SHA2 (1UL << 6) /* arch/arm64/include/uapi/asm/hwcap.h */
#  endif
int pe__cpu_has_armv8_sha2(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}

#elif defined(__FreeBSD__)
#  include <sys/auxv.h>
#  ifndef HWCAP_SHA2
#    define HWCAP_SHA2 (1UL << 6)
#  endif
int pe__cpu_has_armv8_sha2(void)
{
    unsigned long hwcap = 0;
    if (elf_aux_info(AT_HWCAP, &hwcap, sizeof hwcap) != 0)
        return 0;
    return (hwcap & HWCAP_SHA2) != 0;
}

#else
/* No known way to ask this OS: stay on the portable path. */
int pe__cpu_has_armv8_sha2(void)
{
    return 0;
}
#endif

#else
int pe__cpu_has_armv8_sha2(void)
{
    return 0;
}
#endif
