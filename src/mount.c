/*
 * mount.c - mounting and unmounting: options, frames, namespace, the
 * collapse thread, in that order, and back.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

int thpfs_mount_ex(struct thpfs **out, const char *options, char *err, size_t errlen)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	struct thpfs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	char dummy[8];
	int e = _thpfs_parse_options(&fs->opt, options ? options : "", err ? err : dummy,
				     err ? errlen : sizeof(dummy));
	if (e)
		goto out_free;
	pthread_mutex_init(&fs->deferred_lock, NULL);
	thpfs_list_init(&fs->deferred);
	pthread_mutex_init(&fs->file_lock, NULL);
	thpfs_list_init(&fs->files);
	thpfs_list_init(&fs->free_files);
	_thpfs_kernel_init(fs);
	e = _thpfs_frames_init(fs);
	if (e)
		goto out_deferred;
	e = _thpfs_ns_init(fs);
	if (e)
		goto out_frames;
	e = _thpfs_collapse_start(fs);
	if (e)
		goto out_ns;
	*out = fs;
	return 0;

out_ns:
	_thpfs_ns_destroy(fs);
out_frames:
	_thpfs_frames_destroy(fs);
out_deferred:
	_thpfs_kernel_destroy(fs);
	pthread_mutex_destroy(&fs->deferred_lock);
	pthread_mutex_destroy(&fs->file_lock);
out_free:
	free(fs);
	return e;
}

int thpfs_mount(struct thpfs **fs, const char *options)
{
	return thpfs_mount_ex(fs, options, NULL, 0);
}

int thpfs_unmount(struct thpfs *fs)
{
	if (!fs)
		return -EINVAL;
	if (__atomic_load_n(&fs->stats.pinned_pages, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&fs->nr_mappings, __ATOMIC_ACQUIRE))
		return -EBUSY;
	_thpfs_collapse_stop(fs);
	_thpfs_ns_destroy(fs);
	_thpfs_files_destroy(fs);
	_thpfs_frames_destroy(fs);
	_thpfs_kernel_destroy(fs);
	pthread_mutex_destroy(&fs->deferred_lock);
	free(fs);
	return 0;
}
