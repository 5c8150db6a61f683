/*
 * thpfs.h - public API of libthpfs, a tmpfs-like in-memory file system whose
 * files live in transparent huge pages and which really gives memory back when
 * part of a huge page is punched out.
 *
 * Conventions (hold for every function below unless it says otherwise):
 *  - Functions return 0 (or a non-negative count) on success and a negative
 *    errno on failure.  A failed call changes nothing that a later call can
 *    observe, except where noted (a short write).
 *  - Every function is safe to call from many threads at once, on one file or
 *    on many.  A struct thpfs_file may be shared between threads, but
 *    thpfs_close(f) must not run while another thread is inside a call on f
 *    (thpfs_pread, thpfs_pwrite, thpfs_map, thpfs_fallocate, ...) or may
 *    still start one: that call may use the file after the close let it go
 *    (the last close of an unlinked file frees its data and inode), which
 *    is the caller's bug and is not detected.  Two exceptions:
 *    thpfs_pread_direct holds the file open itself, so f may be closed while
 *    it runs; and a second thpfs_close of f, concurrent or later, returns
 *    -EBADF and changes nothing (of two concurrent closes exactly one
 *    returns 0).  A closed handle stays allocated until unmount: a call on
 *    it returns -EBADF until a later open reuses it, after which the call
 *    acts on that open file.
 *  - Offsets and lengths are bytes.  The largest file is THPFS_MAX_FILE_SIZE.
 *  - Paths are absolute within the mount ("/a/b"); "." and ".." components are
 *    resolved, a trailing '/' is allowed on directories.  Symbolic links are
 *    not followed by path lookups (the FUSE daemon lets the kernel follow them).
 *  - Inode numbers: the root directory is THPFS_ROOT_INO.  The *_at functions
 *    address a directory by inode number and a single name component; they
 *    are what the FUSE daemon uses.
 */
#ifndef THPFS_H
#define THPFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define THPFS_VERSION "0.1.0"
#define THPFS_ROOT_INO 1
#define THPFS_MAX_FILE_SIZE (1ULL << 46) /* 64 TiB */
#define THPFS_NAME_MAX 255
#define THPFS_PATH_MAX 4096

struct thpfs;      /* a mounted file system */
struct thpfs_file; /* an open file description */

/* ---- Mount ---------------------------------------------------------------
 *
 * options: comma-separated, like tmpfs (NULL or "" for defaults); sizes take
 * a binary suffix k, m, g or t (KiB, MiB, GiB, TiB):
 *   size=N[k|m|g|t|%]   bytes of file data the mount may hold (0 = unlimited;
 *                       % of physical RAM, may pass 100 as on tmpfs; default
 *                       50%); as on tmpfs a symlink target of 128 bytes or
 *                       more takes a 4 KiB page of it, and so does the page
 *                       table of each 2 MiB range held in base pages,
 *                       thpfs_mmap views included (beyond those that size=
 *                       bytes of dense base pages need)
 *   nr_inodes=N[k|m|g|t]  most inodes (0 = unlimited; default: RAM pages /
 *                       2); as on tmpfs each hard link past the first takes one
 *   huge=never|always|within_size|advise   when files get 2 MiB pages (always)
 *   split=native|migrate|inplace  how a huge page is split (native): native
 *                       has the kernel split the THP in place, no copy, and
 *                       checks with the kernel that it did (PAGEMAP_SCAN,
 *                       Linux 6.7+; without it native migrates); a THP the
 *                       kernel will not split (a pipe, GUP pin or I/O holds
 *                       a page of it) is zeroed and deferred, see reclaim;
 *                       migrate copies the live 4 KiB pages out and frees
 *                       the 2 MiB; inplace only drops the punched pages
 *                       inside the THP, which frees nothing until the
 *                       kernel's deferred split runs (kept to show that)
 *   max_ptes_none=N     0..511: holes a 2 MiB range may have and still be
 *                       collapsed into a huge page (0)
 *   collapse=on|off     background collapse (on).  The background thread
 *                       runs either way: with off it only gives queued
 *                       released pages back (see scan_sleep_ms)
 *   scan_sleep_ms=N     background pause between passes (100); 4 KiB pages
 *                       a punch releases are back with the OS within it
 *   prealloc=N          0..64 huge frames (2 MiB each) the background
 *                       thread keeps populated (zero, verified huge) ahead
 *                       of need (0: none): a new 2 MiB range of a file then
 *                       costs no fault and no zeroing on the write path
 *                       (the zeroing runs on another CPU, if one is free).
 *                       They hold up to N x 2 MiB of memory: counted
 *                       against size= (statfs shows them as free) and in
 *                       prealloc_bytes, made only after a huge frame is
 *                       used, and given back before size= would refuse
 *                       data, on thpfs_reclaim, when a background pass
 *                       finds none was asked for since the previous one,
 *                       and at unmount
 *   mode=OCTAL          root directory permissions (1777)
 *   uid=N               root directory owner (0)
 *   gid=N               root directory group (0)
 * (thpfs_options_help prints this list.)
 * An unknown or malformed option fails with -EINVAL (thpfs_mount_ex also
 * returns a message naming it).  Nothing is printed.
 */
int thpfs_mount(struct thpfs **fs, const char *options);
/* Like thpfs_mount; on -EINVAL writes a message naming the bad option to
 * err (up to errlen bytes, NUL-terminated) when err is not NULL, such as
 * "unknown option 'foo'" - without a program name: the caller adds its own. */
int thpfs_mount_ex(struct thpfs **fs, const char *options, char *err, size_t errlen);
/* Writes the list of mount options above, one line each ("    key=SYNTAX
 * meaning (default D)"), into buf.  Returns the length, or -ENOSPC when len
 * is too small (2 KiB is enough). */
int thpfs_options_help(char *buf, size_t len);
/* Frees every frame and inode.  Files still open become invalid.  Returns
 * -EBUSY (and unmounts nothing) if pins are still held. */
int thpfs_unmount(struct thpfs *fs);

/* ---- Open files ----------------------------------------------------------
 * flags: O_RDONLY/O_WRONLY/O_RDWR plus O_CREAT, O_EXCL, O_TRUNC, O_APPEND,
 * O_DIRECTORY, O_NOFOLLOW (others are ignored).  mode is used with O_CREAT
 * and masked with nothing (apply a umask yourself).
 */
int thpfs_open(struct thpfs *fs, const char *path, int flags, mode_t mode,
	       struct thpfs_file **f);
/* Open the inode ino (as the FUSE daemon does after a lookup). */
int thpfs_open_ino(struct thpfs *fs, uint64_t ino, int flags, struct thpfs_file **f);
/* Create name in directory parent (O_CREAT implied) with owner uid/gid. */
int thpfs_create_at(struct thpfs *fs, uint64_t parent, const char *name, int flags,
		    mode_t mode, uid_t uid, gid_t gid, struct thpfs_file **f,
		    struct stat *st);
int thpfs_close(struct thpfs_file *f);

ssize_t thpfs_pread(struct thpfs_file *f, void *buf, size_t len, off_t off);
/* Returns bytes written; fewer than len only when the mount is full after
 * some bytes were stored (-ENOSPC if none were).  O_APPEND writes at EOF. */
ssize_t thpfs_pwrite(struct thpfs_file *f, const void *buf, size_t len, off_t off);
/* Sequential I/O at the file's own position (like read(2)/write(2)). */
ssize_t thpfs_read(struct thpfs_file *f, void *buf, size_t len);
ssize_t thpfs_write(struct thpfs_file *f, const void *buf, size_t len);
int thpfs_ftruncate(struct thpfs_file *f, off_t size);

/* fallocate modes take Linux's flag values. */
#define THPFS_FALLOC_KEEP_SIZE 0x01
#define THPFS_FALLOC_PUNCH_HOLE 0x02
#define THPFS_FALLOC_ZERO_RANGE 0x10
/* Supported: 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE,
 * ZERO_RANGE|KEEP_SIZE.  Others: -EOPNOTSUPP.  PUNCH_HOLE frees whole huge
 * pages inside the range, splits the huge pages it covers partly and frees
 * the 4 KiB pages inside the range; a pinned page is zeroed instead and freed
 * when its last pin drops, and pages of a huge page the kernel will not split
 * now are zeroed and freed by thpfs_reclaim.  ZERO_RANGE leaves the range allocated and zero.
 * off + len past LLONG_MAX: -EFBIG (as Linux).  A punch past the largest file
 * is clamped to it ("punch to the end", len = INT64_MAX - off, works); an
 * allocation or ZERO_RANGE past it is -EFBIG. */
int thpfs_fallocate(struct thpfs_file *f, int mode, off_t off, off_t len);
/* whence: SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE (Linux rules:
 * -ENXIO for SEEK_DATA/SEEK_HOLE at or past EOF, virtual hole at EOF). */
off_t thpfs_lseek(struct thpfs_file *f, off_t off, int whence);
/* st_blocks counts 512-byte units of frames the file really holds;
 * st_blksize is the huge page size when the mount uses huge pages. */
int thpfs_fstat(struct thpfs_file *f, struct stat *st);
int thpfs_fsync(struct thpfs_file *f); /* nothing to flush: checks f only */

/* Advice on one file (like fadvise/madvise). */
#define THPFS_ADV_NORMAL 0
#define THPFS_ADV_HUGEPAGE 14   /* eligible for huge pages under huge=advise */
#define THPFS_ADV_NOHUGEPAGE 15 /* never huge pages, whatever the mount says */
int thpfs_fadvise(struct thpfs_file *f, int advice);

/* ---- Pins ----------------------------------------------------------------
 * thpfs_map returns in *addr a pointer to the byte at off, allocating the page
 * if it is a hole (as a write fault would; off must be < file size, else
 * -ENXIO), and pins the page holding it: until thpfs_unmap, the page is
 * neither moved (split, collapsed) nor freed.  *len receives the number of
 * bytes valid from *addr: to the end of that page (a huge page: its end, or
 * the first of its 4 KiB pages punched while pinned, which is freed with
 * whatever it holds when the pins drop), at most to EOF.  A punch or truncate over
 * a pinned page zeroes the range and frees the memory when the last pin
 * drops.  Writes through *addr do not change the file size.
 * *addr is writable, so f must be open O_RDWR (-EACCES otherwise, as Linux
 * refuses a shared writable mapping of a read-only descriptor and any
 * mapping of a write-only one).
 * A pin belongs to the file, not to f, but is dropped through f: call
 * thpfs_unmap before thpfs_close(f).  A pin still held when f is closed
 * stays until the inode is freed (unlinked, last close, last forget), and
 * thpfs_unmount returns -EBUSY meanwhile.  thpfs_unmap with an address no
 * pin of f's file covers returns -EINVAL, with a closed f -EBADF.
 */
int thpfs_map(struct thpfs_file *f, off_t off, void **addr, size_t *len);
int thpfs_unmap(struct thpfs_file *f, void *addr);
/* Like thpfs_map for reading: pins the page holding off only if it holds
 * memory, and never allocates or marks anything written.  -ENODATA for a
 * hole (read zeros instead), -ENXIO at or past EOF.  The bytes at *addr are
 * the file's until they are changed by a write, punch or truncate (a punch
 * zeroes them in place while the pin is held): they may change while the
 * caller reads them, so a reader that must see one version of them uses
 * thpfs_pread or thpfs_pread_direct.  *addr is read-only: do not write
 * through it (thpfs_map gives a writable pointer).  f must be
 * open for reading (O_RDONLY or O_RDWR; -EACCES on O_WRONLY).  Unmap
 * before close, as for thpfs_map. */
int thpfs_map_existing(struct thpfs_file *f, off_t off, void **addr, size_t *len);

/* Zero-copy read (what the FUSE daemon answers large reads with): calls
 * fn(ctx, data, n) once, where data points at the file's own memory holding
 * [off, off+n), n = min(len, file size - off), and returns n (or fn's
 * return if negative).  fn runs with the file's lock held shared: no write,
 * truncate, punch, split or collapse touches the file until fn returns, so
 * fn sees exactly the bytes thpfs_pread would return, never a mix of old
 * and new; fn must be short, must not write data, and must call no thpfs
 * function on this file, through any handle, and no mount-wide one
 * (thpfs_get_stats, thpfs_reclaim, thpfs_unmount, ...): on a file under
 * thpfs_mmap even thpfs_fstat, SEEK_DATA and thpfs_get_stats take the
 * file's lock for writing (to learn from the kernel what was touched) and
 * would deadlock; data is read-only
 * and invalid after fn returns.  Nothing is pinned.  f must be open when
 * the call starts; another thread may close it while fn runs (the inode
 * stays until the call returns).  -ENODATA, fn not called, when the range
 * is not one run of memory (a hole, a missing page, two huge pages, or off
 * at or past EOF): use thpfs_pread.  -EBADF on an O_WRONLY handle. */
typedef int (*thpfs_read_actor_t)(void *ctx, const void *data, size_t len);
ssize_t thpfs_pread_direct(struct thpfs_file *f, size_t len, off_t off,
			   thpfs_read_actor_t fn, void *ctx);

/* Lazy discard (a balloon's "give it back when asked"): [off, off+len) reads
 * as zeros from now on, but its memory - and every huge page it touches -
 * stays until the mount needs memory: thpfs_reclaim, or a write or fallocate
 * that would pass size=, frees the whole 4 KiB pages inside the range
 * (splitting huge pages then).  Writing such a page again keeps it.  Same
 * argument rules and errors as a punch.  Returns 0. */
int thpfs_free_lazy(struct thpfs_file *f, off_t off, off_t len);

/* Collapse base pages of [off, off+len) back into huge pages where a whole
 * aligned 2 MiB range is present (ignoring max_ptes_none, like MADV_COLLAPSE
 * ignores khugepaged's limits).  Returns the number of huge pages made.
 * f must be open for reading (-EACCES on O_WRONLY: MADV_COLLAPSE works on
 * a mapping, and mmap needs a readable descriptor). */
int thpfs_collapse(struct thpfs_file *f, off_t off, off_t len);
/* Free up to bytes of memory without losing data (0 = all it can): release
 * queued pages, run the deferred split queue (pages punched while pinned or
 * while the kernel would not split their huge page, pages given to
 * thpfs_free_lazy), split huge pages beyond EOF; the memory is back with
 * the OS when it returns.  Returns the bytes the kernel really freed
 * during the call through this thread's own release calls, less what they
 * had to populate (a split=migrate copy) - never what it only asked for: a
 * release the OS refuses counts nothing, and those pages stay charged (see
 * unreleased_bytes).  >= 0 whatever other threads do meanwhile; pages
 * another thread's flush releases are not counted. */
int64_t thpfs_reclaim(struct thpfs *fs, uint64_t bytes);

/* ---- Mappings: guest RAM ---------------------------------------------------
 * thpfs_mmap maps [off, off+len) of a regular file as one contiguous range of
 * the calling process's address space that IS the file's storage (no copy,
 * no page cache behind it): a store through the mapping is seen at once by
 * thpfs_pread, and a thpfs_pwrite at once through the mapping.  This is what
 * a virtual-machine monitor hands to KVM as a memory slot and to vhost or
 * device emulation as plain pointers.
 *
 *  - off and len are multiples of 2 MiB (THPFS_MMAP_ALIGN), len > 0, and
 *    [off, off+len) lies inside the file (-EINVAL, -ENXIO otherwise): grow
 *    the file with thpfs_ftruncate first.  The mapping is 2 MiB aligned.
 *  - *addr == NULL: thpfs chooses the address.  *addr != NULL: the mapping
 *    is placed exactly there (2 MiB aligned, else -EINVAL), replacing
 *    whatever the caller had mapped there, like MAP_FIXED (QEMU reserves the
 *    range PROT_NONE first).  *addr receives the address.  A fixed range
 *    that overlaps memory of this mount (its arenas, which hold every
 *    unmapped file's pages, or another file's mapping) is refused with
 *    -EEXIST and nothing changes; placing it over anything else the program
 *    still uses (another mount's memory included) is the caller's error, as
 *    with MAP_FIXED.
 *  - One mapping per file: a second thpfs_mmap of the same file is -EBUSY.
 *  - The mapping is PROT_READ|PROT_WRITE and needs an O_RDWR handle
 *    (-EACCES otherwise): it is the storage, and thpfs stores to it too
 *    (pwrite, punch, zeroing), so it cannot be made read-only.  Other
 *    handles, O_RDONLY ones too, work on the file as usual meanwhile.
 *  - A page in the range pinned by thpfs_map makes thpfs_mmap -EBUSY (its
 *    pointer would move).  After thpfs_mmap, thpfs_map of a page in the
 *    range returns its address inside the mapping, and thpfs_munmap is -EBUSY
 *    until it is unpinned.
 *  - The mapping holds the file open: it survives thpfs_close and unlink of
 *    the handle it was made with, until thpfs_munmap.  thpfs_unmount is -EBUSY
 *    while any mapping exists.
 *  - thpfs_ftruncate (or O_TRUNC, or a size setattr) below off+len is -EBUSY;
 *    the file may grow, and may shrink down to off+len.
 *  - The mapping is not inherited by fork() children (MADV_DONTFORK): a
 *    child sharing the pages copy-on-write would stop them from being split.
 *  - The caller must not munmap, mremap, mprotect or madvise the range
 *    itself; mlock/munlock (QEMU mem-lock=on) is fine: punches on a locked
 *    mapping still give the memory back.
 *
 * A mapping is not a pin.  Punch, truncate past the mapping, thpfs_free_lazy,
 * thpfs_reclaim and thpfs_collapse work on a mapped range while other threads
 * read and write through it: a punched page reads zero afterwards and its
 * memory is back with the OS when the call returns, and no store to any
 * other page is lost, including a store racing a split or a collapse of its
 * 2 MiB range (the kernel splits and collapses in place, under its own page
 * table locks).  A store into the punched range itself races the punch, as
 * for any file.  thpfs_free_lazy on a mapped range zeroes the pages; reclaim
 * later frees those the program has not written again since (the kernel's
 * MADV_FREE rule), and keeps those it has, as data.
 *
 * Pages the program touches through the mapping become file data: thpfs
 * learns them from the kernel (the PAGEMAP_SCAN ioctl, Linux 6.7+; without
 * it thpfs_mmap is -EOPNOTSUPP) before every call that depends on them
 * (fstat's st_blocks, SEEK_DATA/SEEK_HOLE, fallocate, punch, collapse,
 * thpfs_get_stats, thpfs_munmap).  A page read but never written is the
 * kernel's zero page and is not data.  Faults through a mapping are never
 * refused: they cannot get ENOSPC or SIGBUS, and they are charged to size=
 * after the fact, so they may take the mount past size= (thpfs_pwrite and
 * fallocate still stop at size=).  What bounds them is what bounds any
 * program's anonymous memory: the memory cgroup it runs in (a VMM's RAM is
 * bounded the same way).
 *
 * Huge pages: where the mount's huge= policy gives the file huge pages, an
 * empty 2 MiB range of the mapping gets a huge page on its first write
 * fault.  A punch that splits a huge page leaves its 2 MiB range marked
 * MADV_NOHUGEPAGE, so the kernel's khugepaged never fills a punched (or
 * ballooned) hole back in; once every 4 KiB page of such a range is present
 * again, the collapse thread (within scan_sleep_ms, without khugepaged) or
 * thpfs_collapse makes it one huge page again at the same address
 * (MADV_COLLAPSE, verified with PAGEMAP_SCAN).
 *
 * thpfs_munmap(f, addr, len) takes any open handle of the same file (once
 * every handle is closed and the file unlinked, the mapping still holds
 * it: thpfs_open_ino of its inode number gives a handle) and
 * exactly the address and length of the mapping (-EINVAL otherwise); the
 * file keeps its data and the range is unmapped, as munmap(2) does.  If the
 * arena slots the data moves back to cannot be had (-ENOMEM) or the range
 * cannot be unlocked (munlock fails), nothing changes and the error is
 * returned; after that it cannot fail part way (memory the kernel will not
 * move is copied).  A failed thpfs_mmap leaves the file as it was.  If the kernel refuses the final munmap (out of VMAs),
 * the file is no longer mapped but the range stays mapped, empty (anonymous
 * zero memory), and its error is returned.
 */
#define THPFS_MMAP_ALIGN (2UL << 20)
int thpfs_mmap(struct thpfs_file *f, off_t off, size_t len, void **addr);
int thpfs_munmap(struct thpfs_file *f, void *addr, size_t len);

/* ---- Namespace ---------------------------------------------------------- */
int thpfs_stat(struct thpfs *fs, const char *path, struct stat *st);
int thpfs_unlink(struct thpfs *fs, const char *path);
int thpfs_mkdir(struct thpfs *fs, const char *path, mode_t mode);
int thpfs_rmdir(struct thpfs *fs, const char *path);
#define THPFS_RENAME_NOREPLACE 1 /* Linux's values */
#define THPFS_RENAME_EXCHANGE 2
int thpfs_rename(struct thpfs *fs, const char *from, const char *to, unsigned flags);
int thpfs_symlink(struct thpfs *fs, const char *target, const char *path);
int thpfs_link(struct thpfs *fs, const char *oldpath, const char *newpath);
ssize_t thpfs_readlink(struct thpfs *fs, const char *path, char *buf, size_t len);
/* Special files, as tmpfs keeps them: mode's type is S_IFIFO, S_IFSOCK,
 * S_IFCHR or S_IFBLK (rdev is kept for the last two and returned in
 * st_rdev), or S_IFREG (an empty regular file, like mknod(2)).  S_IFDIR is
 * -EPERM, any other type -EINVAL.  thpfs stores them only: a FIFO, socket
 * or device gets its behaviour from whoever opens it (the kernel, on a FUSE
 * mount); thpfs_open of one is -ENXIO.  The path form uses the caller's
 * uid/gid. */
int thpfs_mknod(struct thpfs *fs, const char *path, mode_t mode, dev_t rdev);

/* Directory listing: calls fn for each entry of the directory (including "."
 * and "..") whose cookie is greater than *cookie, in cookie order, until fn
 * returns non-zero; *cookie is set to the last entry passed to fn.  Cookies
 * are stable across insertions and removals of other entries. */
struct thpfs_dirent {
	uint64_t ino;
	uint64_t cookie; /* pass back to continue after this entry */
	mode_t type;     /* S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK,
			  * S_IFCHR, S_IFBLK */
	const char *name;
};
typedef int (*thpfs_filldir_t)(void *ctx, const struct thpfs_dirent *de);
int thpfs_readdir(struct thpfs *fs, const char *path, uint64_t *cookie,
		  thpfs_filldir_t fn, void *ctx);

/* Inode-addressed forms (FUSE).  A lookup takes a reference on the inode that
 * keeps it (and its data) alive after unlink until thpfs_forget drops it.
 * So do thpfs_create_at, thpfs_mkdir_at, thpfs_symlink_at, thpfs_mknod_at and thpfs_link_at
 * (FUSE counts their replies as lookups); the path-based calls take none. */
/* name "." returns the inode parent itself, of any type, and ".." a
 * directory's parent (the root's is the root): the lookups the kernel makes
 * to reconnect a file handle (open_by_handle_at, NFS export). */
int thpfs_lookup(struct thpfs *fs, uint64_t parent, const char *name, struct stat *st);
/* The inode's generation: fixed for its life, different for the inode that
 * reuses its number (and across mounts: it starts at a random value); a
 * file handle is (inode number, generation). */
int thpfs_generation(struct thpfs *fs, uint64_t ino, uint32_t *gen);
void thpfs_forget(struct thpfs *fs, uint64_t ino, uint64_t nlookup);
int thpfs_getattr(struct thpfs *fs, uint64_t ino, struct stat *st);
/* setattr: to_set is a mask of THPFS_SET_*; a size change is a truncate. */
#define THPFS_SET_MODE 0x01
#define THPFS_SET_UID 0x02
#define THPFS_SET_GID 0x04
#define THPFS_SET_SIZE 0x08
#define THPFS_SET_ATIME 0x10
#define THPFS_SET_MTIME 0x20
#define THPFS_SET_ATIME_NOW 0x80
#define THPFS_SET_MTIME_NOW 0x100
#define THPFS_SET_CTIME 0x400
int thpfs_setattr(struct thpfs *fs, uint64_t ino, const struct stat *attr, int to_set,
		  struct stat *out);
int thpfs_mkdir_at(struct thpfs *fs, uint64_t parent, const char *name, mode_t mode,
		   uid_t uid, gid_t gid, struct stat *st);
int thpfs_symlink_at(struct thpfs *fs, uint64_t parent, const char *name,
		     const char *target, uid_t uid, gid_t gid, struct stat *st);
/* Like thpfs_mknod, in directory parent, with owner uid/gid; takes a lookup
 * reference as thpfs_mkdir_at does. */
int thpfs_mknod_at(struct thpfs *fs, uint64_t parent, const char *name, mode_t mode,
		   dev_t rdev, uid_t uid, gid_t gid, struct stat *st);
int thpfs_link_at(struct thpfs *fs, uint64_t ino, uint64_t newparent, const char *newname,
		  struct stat *st);
int thpfs_unlink_at(struct thpfs *fs, uint64_t parent, const char *name);
int thpfs_rmdir_at(struct thpfs *fs, uint64_t parent, const char *name);
int thpfs_rename_at(struct thpfs *fs, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, unsigned flags);
ssize_t thpfs_readlink_ino(struct thpfs *fs, uint64_t ino, char *buf, size_t len);
int thpfs_readdir_ino(struct thpfs *fs, uint64_t ino, uint64_t *cookie,
		      thpfs_filldir_t fn, void *ctx);

/* ---- Extended attributes and POSIX ACLs ----------------------------------
 * As tmpfs keeps them: names in the user., trusted. and security.
 * namespaces, and the POSIX ACLs THPFS_XATTR_ACL_ACCESS/_DEFAULT (kernel
 * xattr form, version 2); other names -EOPNOTSUPP.  A name is 1..255 bytes
 * (-ERANGE), a value at most 65536 (-E2BIG).  user. attributes only on
 * regular files and directories (-EPERM to set or remove, -ENODATA to get
 * on others).  Space: an attribute takes 40 + name + value bytes of the
 * mount's inode space, nr_inodes= x 1024 bytes, of which each inode and
 * each extra hard link takes 1024 (-ENOSPC when used up; statfs's f_ffree
 * shrinks accordingly); nr_inodes=0 sets no limit.  Nothing is charged to
 * size= (tmpfs keeps attributes in kernel memory, not in pages).
 * get/list: size 0 returns the length needed; a smaller buffer -ERANGE;
 * get of a missing name -ENODATA.  set flags: THPFS_XATTR_CREATE (-EEXIST
 * when present), THPFS_XATTR_REPLACE (-ENODATA when absent).  set and
 * remove update ctime.
 * ACLs: setting an access ACL sets the mode's permission bits from it (one
 * the mode says all of is not stored); THPFS_XATTR_KILL_SGID also clears
 * set-group-ID (the setter is not in the group and lacks CAP_FSETID).  A
 * default ACL only on a directory (-EACCES).  chmod updates a stored
 * access ACL.  An entry created in a directory with a default ACL inherits
 * it (masked by the creation mode: apply no umask then; a new directory
 * keeps it as its own default) - see thpfs_has_default_acl. */
#define THPFS_XATTR_CREATE 0x1 /* Linux's values */
#define THPFS_XATTR_REPLACE 0x2
#define THPFS_XATTR_KILL_SGID 0x4
#define THPFS_XATTR_ACL_ACCESS "system.posix_acl_access"
#define THPFS_XATTR_ACL_DEFAULT "system.posix_acl_default"
ssize_t thpfs_getxattr_ino(struct thpfs *fs, uint64_t ino, const char *name, void *buf,
			   size_t size);
int thpfs_setxattr_ino(struct thpfs *fs, uint64_t ino, const char *name, const void *value,
		       size_t size, int flags);
/* Names, each with its NUL, sorted. */
ssize_t thpfs_listxattr_ino(struct thpfs *fs, uint64_t ino, char *buf, size_t size);
int thpfs_removexattr_ino(struct thpfs *fs, uint64_t ino, const char *name);
ssize_t thpfs_getxattr(struct thpfs *fs, const char *path, const char *name, void *buf,
		       size_t size);
int thpfs_setxattr(struct thpfs *fs, const char *path, const char *name, const void *value,
		   size_t size, int flags);
ssize_t thpfs_listxattr(struct thpfs *fs, const char *path, char *buf, size_t size);
int thpfs_removexattr(struct thpfs *fs, const char *path, const char *name);
/* 1 when directory ino has a default ACL (its new entries inherit it: the
 * creation mode must not be masked with the umask), 0 when not, or -ENOENT. */
int thpfs_has_default_acl(struct thpfs *fs, uint64_t ino);

/* Like statvfs: f_bsize 4096, f_blocks from size=, f_files from nr_inodes=. */
struct thpfs_statfs {
	uint64_t bsize, blocks, bfree, files, ffree, namemax;
};
int thpfs_statfs(struct thpfs *fs, struct thpfs_statfs *st);

/* ---- Counters ------------------------------------------------------------
 * A counter named like one of the kernel's (/proc/meminfo, /proc/vmstat,
 * khugepaged's sysfs) means what the kernel's means, for this mount's files;
 * the others have names of their own.  Gauges (current values) and events
 * (monotonic counts since mount) are marked.  thpfs's view: pages it believes
 * huge or released; what the kernel did is checked in the tests. */
struct thpfs_stats {
	/* gauges */
	uint64_t shmem_bytes;          /* Shmem: bytes of file data held */
	uint64_t shmem_huge_bytes;     /* ShmemHugePages: bytes held in huge pages */
	uint64_t huge_frames;          /* huge frames held */
	uint64_t base_pages;           /* 4 KiB base pages held */
	uint64_t pinned_pages;         /* chunks (2 MiB ranges: a huge page or
					  a block of base pages) with pins */
	uint64_t pinned_bytes;         /* ShmemPinned: memory pins keep from
					  being freed: 2 MiB per pinned huge
					  page, the present 4 KiB pages of a
					  pinned base chunk (computed on read) */
	uint64_t deferred_split_queue; /* chunks (huge or base) waiting on the
					  deferred split queue */
	uint64_t inodes;               /* inodes in use */
	uint64_t size_limit;           /* size= in bytes (0 = none) */
	uint64_t thp_available;        /* 1 if the OS gives transparent huge pages */
	/* The kernel's view, asked at each call (PAGEMAP_SCAN on
	 * /proc/self/pagemap, one ioctl per 1 GiB arena of huge frames): */
	uint64_t shmem_pmd_mapped;     /* ShmemPmdMapped: bytes of thpfs frames the
					* kernel maps with huge PMDs right now (0
					* when split_verify is 0) */
	uint64_t split_verify;         /* what thpfs can ask the kernel: 0 nothing
					* (split=native migrates, huge frames are
					* not verified): Linux < 6.7, or
					* /proc/self/pagemap could not be opened
					* at mount (no /proc; a process made not
					* dumpable by setresuid: mount before
					* dropping root, or set PR_SET_DUMPABLE);
					* thpfs_meminfo's SplitVerify line says
					* why, e.g. "none (pagemap: EACCES)"; 1
					* PAGEMAP_SCAN (PMD mappings), 2 also
					* /proc/kpageflags (root: large folios) */
	/* events */
	uint64_t thp_file_alloc;        /* huge pages allocated for file data */
	uint64_t thp_file_fallback;     /* huge page wanted, base pages used (no
					 * frame, or the kernel gave 4 KiB pages) */
	uint64_t thp_split_page;        /* huge pages the kernel split, as its
					 * thp_split_page counts them: split=native
					 * splits, each verified with the kernel */
	uint64_t thp_split_page_failed; /* split attempts that failed: pinned, no
					 * memory, or the kernel kept the THP
					 * (extra references: pipe, GUP, I/O) */
	uint64_t thp_split_migrate;     /* huge pages replaced by a copy of their
					 * kept pages in 4 KiB pages and freed
					 * whole (split=migrate, and split=native
					 * where a split cannot be verified): no
					 * kernel split */
	uint64_t thp_split_inplace;     /* huge pages whose punched pages were
					 * dropped inside the THP (split=inplace):
					 * the kernel splits it later, from its
					 * deferred split queue */
	uint64_t thp_deferred_split_page; /* huge pages queued for a deferred split */
	uint64_t thp_deferred_split_done; /* queued chunks later split or freed */
	uint64_t thp_collapse_alloc;    /* huge pages made by collapse */
	uint64_t thp_collapse_alloc_failed; /* collapses that could not get a frame */
	uint64_t base_pages_collapsed;  /* base pages folded into huge pages
					  (khugepaged's pages_collapsed counts
					  huge pages: thp_collapse_alloc here) */
	uint64_t collapse_skipped_pinned; /* ranges skipped because pinned */
	uint64_t collapse_skipped_holes;  /* ranges with too many holes */
	uint64_t collapse_full_scans;   /* passes of the collapse thread */
	uint64_t bytes_released;        /* bytes of memory given back to the OS
					  (counted when madvise succeeded or a
					  slot was mapped afresh) */
	uint64_t release_failed_bytes;  /* bytes the OS refused to take back
					  (e.g. mlocked on a kernel without
					  MADV_DONTNEED_LOCKED): zeroed in place,
					  never handed out with old bytes; a
					  whole 2 MiB frame is then mapped afresh
					  (which frees it: bytes_released), 4 KiB
					  pages stay held (unreleased_bytes) */
	uint64_t punch_zeroed_bytes;    /* bytes zeroed in place instead of freed */
	uint64_t reclaim_bytes;         /* bytes the kernel really freed during
					 * thpfs_reclaim / ENOSPC reclaim */
	uint64_t unreleased_bytes;      /* gauge: bytes whose release the OS
					 * refused, zeroed and still held: they
					 * stay in shmem_bytes and charged to
					 * size= until they are reused or their
					 * 2 MiB range is freed (mapped afresh) */
	/* mappings (thpfs_mmap) */
	uint64_t mapped_bytes;          /* gauge: bytes of files under thpfs_mmap */
	uint64_t mmap_faulted_pages;    /* 4 KiB pages learned from the kernel: touched
					 * through a mapping (a huge page counts 512) */
	uint64_t mmap_vanished_pages;   /* pages of a mapping the kernel dropped itself
					 * (MADV_FREE'd pages it reclaimed) */
	/* prealloc=N (gauge): bytes of populated, zero huge frames held
	 * ahead of need; charged to size=, not file data (not in Shmem) */
	uint64_t prealloc_bytes;
	uint64_t prealloc_used;         /* event: huge frames taken from the pool */
};
int thpfs_get_stats(struct thpfs *fs, struct thpfs_stats *st);
/* Writes the counters as /proc/meminfo-style "Name:  value kB" lines (and
 * "name value" lines for events) into buf; returns the length the full text
 * needs (like snprintf). */
int thpfs_meminfo(struct thpfs *fs, char *buf, size_t len);

/* ---- Testing -------------------------------------------------------------
 * Fault injection in the frame layer: fail the nth frame allocation from now
 * (1 = the next one), or every one from then on if repeat is set.  n = 0
 * switches it off. */
void thpfs_fault_inject(struct thpfs *fs, uint64_t nth, int repeat);
/* Fault injection in memory release: the nth system call from now that gives
 * memory back (each process_madvise batch, each madvise of a frame or run of
 * pages) fails, or every one from then on if repeat is set; n = 0 switches
 * it off.  A failed madvise acts as on a kernel that refuses mlocked memory
 * (the range is zeroed and counted in release_failed_bytes); a failed
 * process_madvise advises only the first half of its runs and returns their
 * bytes, as a partial return does (the rest is released run by run). */
void thpfs_fault_inject_release(struct thpfs *fs, uint64_t nth, int repeat);

#ifdef __cplusplus
}
#endif
#endif /* THPFS_H */
