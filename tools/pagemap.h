/*
 * pagemap.h - huge-page coverage as the kernel sees it, for the programs
 * (balloon model, benchmarks; not part of libthpfs, and not used by the
 * tests, which keep their own copy in tests/testlib.c).
 *
 * The PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+) lists the parts
 * of an address range mapped with huge pages (PAGE_IS_HUGE: a PMD-mapped
 * transparent huge page, shmem or anonymous).  The huge zero page (a read
 * fault on an empty 2 MiB range maps it: no memory, no data) is left out,
 * so coverage never comes from thpfs's own counters nor from holes.
 */
#ifndef THPFS_TOOLS_PAGEMAP_H
#define THPFS_TOOLS_PAGEMAP_H
#include <stddef.h>
#include <stdint.h>

/* Bytes of [addr, addr+len) the kernel maps with (non-zero) huge pages;
 * -ENOSYS on a kernel without PAGEMAP_SCAN, another negative errno if
 * /proc/self/pagemap cannot be read.  Opens /proc/self/pagemap on each call,
 * so it is right in a forked child too. */
int64_t thpfs_pagemap_huge_bytes(const void *addr, size_t len);
#endif
