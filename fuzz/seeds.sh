#!/bin/sh
# seeds.sh DIR - writes the seed corpus of fuzz_api into DIR: a few short
# inputs that mount with different options and make a file, write, punch,
# free lazily, map and truncate, so the fuzzer starts past the mount.
# Input layout (fuzz/fuzz_api.c): two option bytes, then per call an opcode
# byte and its arguments.
set -e
mkdir -p "$1"
seed() { printf "$2" > "$1/$3"; }
# opcode bytes: 0 open, 3 mkdir, 14+k data call k (k = 0 pread, 1 pwrite,
# 4 ftruncate, 5 fallocate, 6 free_lazy, 7 lseek, 8 map, 13 fstat)
# open '/a' O_RDWR|O_CREAT: 00 [flags 06] [path: kind 06, 1 comp, sel 00]
OPEN='\000\006\006\000\000'
# pwrite: 0f [handle 00] [off sel 00, u16 0000] [len sel 02, 04 pages] [seed 05]
WRITE='\017\000\000\000\000\002\004\005'
# pwrite near 2 MiB: [off sel 03, 1 * 2 MiB, -16] [len sel 01, 0x3000]
WRITE2M='\017\000\003\001\377\360\001\060\000\007'
# punch: 13 [h] [mode sel 02] [off sel 08, page 1] [len sel 02, 2 pages]
PUNCH='\023\000\002\010\001\002\001'
# free_lazy: 14 [h] [off sel 08, page 0] [len sel 02, 3 pages]
LAZY='\024\000\010\000\002\002'
# map: 16 [h] [off sel 00, 0x0010] [write 03]
MAP='\026\000\000\000\020\003'
# lseek SEEK_DATA: 15 [h] [whence 03] [off sel 00, 0]
SEEK='\025\000\003\000\000\000'
# ftruncate near the largest file size: 12 [h] [sel 05, u16]
TRUNC='\022\000\005\000\100'
# fallocate 0 / zero range
FALLOC='\023\000\000\000\000\000\003\001\000\000'
ZERO='\023\000\004\000\010\000\002\003'
seed "$1" "\001\000$OPEN$WRITE$WRITE2M$PUNCH$SEEK" write-punch
seed "$1" "\101\001$OPEN$WRITE$LAZY$WRITE$SEEK" lazy-never
seed "$1" "\040\003$OPEN$WRITE$MAP$PUNCH$WRITE" map-migrate
seed "$1" "\100\005$OPEN$WRITE2M$TRUNC$WRITE$FALLOC$ZERO" trunc-inplace
seed "$1" "\010\007$OPEN$FALLOC$WRITE$LAZY$PUNCH$WRITE2M" within-size
seed "$1" "\000\000\003\006\000\003\000\000\011\010\002\000\000" names
# The second opcode table (second byte's bit 7, fuzz_api.c): op % 32 is
# 14 mknod, 15 mknod_at, 16 xattrs, 17 setattr, 18.. data calls (18 pread,
# 19 pwrite, 22 ftruncate, 23 fallocate, 50 mmap, 51 munmap, 52 store and
# 53 load through the view, 54 pread_direct).
TRUNC4M='\026\000\003\002\000\000'
MMAP='\062\000\124\000\000'
STORE='\064\000\001\000\000\000\005\000\020\002\003'
LOAD='\065\000\001\000\000\000\003\000\000\002\004'
DIRECT='\066\000\000\000\000\002\002\001'
MUNMAP='\063\000\003\000'
W2='\023\000\000\000\000\002\004\005'
P2='\027\000\002\010\001\002\001'
seed "$1" "\016\201$OPEN$TRUNC4M$MMAP$STORE$W2$LOAD$P2$DIRECT$LOAD$MUNMAP$DIRECT" mmap-view
MKNOD='\016\000\001\244\000\000\000\000\006\000\001'
MKNODAT='\017\000\006\002\001\244\000\000\000\000\000\000\001\003'
XSET='\020\001\000\000\020\005'
XDEF='\020\001\000\005\000\011\001\000\017\377\000'
MKDIR='\003\006\000\003'
XGET='\020\004\006\000\003\005\001'
XLIST='\020\002\000\001'
XBAD='\020\001\000\004\000\003\000\000\001\355\001'
CHMOD='\021\000\001\001\355\000\000\000'
seed "$1" "\000\300$MKNOD$MKNODAT$XSET$XDEF$MKDIR$XGET$XLIST$XBAD$CHMOD$OPEN$XLIST" names-xattrs
