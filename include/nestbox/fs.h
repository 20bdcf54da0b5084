/* SPDX-License-Identifier: MIT */
/* The one path walker. Every reader of /out, every tree materialiser and every archive
 * extractor goes through these: paths are resolved beneath a directory descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), so "..", an
 * absolute path or a symlink planted anywhere on the way is refused (-EXDEV or -ELOOP),
 * never followed. The sandbox's own new root is walked the same way, with RESOLVE_IN_ROOT
 * (nb_open_in_root). All functions return >= 0 on success, -errno on failure. */
#pragma once

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* openat2 beneath dirfd; flags as for openat (O_NOFOLLOW is implied for the last
 * component). */
int nb_open_beneath(int dirfd, const char *path, int flags, mode_t mode);

/* mkdir -p of path beneath dirfd; returns an O_DIRECTORY fd of the last component. */
int nb_mkdir_p_beneath(int dirfd, const char *path, mode_t mode);

/* After a walk beneath dirfd answered -ELOOP: the first prefix of path that is a
 * symbolic link (malloc'd), so that the error names the link, not where the walk was
 * going; NULL when none is (any more) or out of memory. */
char *nb_link_beneath(int dirfd, const char *path);

/* mkdir -p of a path the invoker gave (--output, the cache's default under $HOME or
 * $XDG_CACHE_HOME): symlinks in the prefix that already exists are followed (Fedora
 * Atomic's /home -> var/home), what is created is made without following any. Returns
 * an O_DIRECTORY fd of the last component. */
int nb_mkdir_p_user(const char *path, mode_t mode);

/* For a tree we assemble ourselves (the sandbox's new root): path is opened with
 * rootfd as "/" (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so a symlink in it
 * such as /lib -> usr/lib is honoured, yet neither it nor ".." can lead outside. */
int nb_open_in_root(int rootfd, const char *path, int flags);

/* mkdir -p in root with nb_open_in_root's resolution; a ".." component is refused
 * (-EXDEV). Returns an O_PATH | O_DIRECTORY fd of the last component. */
int nb_mkdir_p_in_root(int rootfd, const char *path, mode_t mode);

/* Reads a regular file beneath dirfd. A file larger than max_size gives -EFBIG, a
 * non-regular file -EINVAL. *data is NUL-terminated (not counted in *len). */
int nb_read_file_beneath(int dirfd, const char *path, size_t max_size, char **data, size_t *len);

/* Reads all of fd up to max_size (-EFBIG beyond). */
int nb_read_fd(int fd, size_t max_size, char **data, size_t *len);
/* The same, starting with a buffer of size_hint bytes (a file's st_size): a file of
 * that size costs size_hint + 1 bytes of memory; one that grew still reads whole. */
int nb_read_fd_sized(int fd, size_t size_hint, size_t max_size, char **data, size_t *len);

/* Reads exactly len bytes unless the file (or pipe) ends first, retrying on EINTR and
 * short reads; returns the count read, or -errno. */
ssize_t nb_read_full(int fd, void *buf, size_t len);

/* Writes all of data to fd, retrying on EINTR and short writes. */
int nb_write_all(int fd, const void *data, size_t len);

/* Creates (or truncates) path beneath dirfd and writes data. */
int nb_write_file_beneath(int dirfd, const char *path, const void *data, size_t len, mode_t mode);

/* Writes path beneath dirfd atomically: a temporary in the same directory, fsync,
 * rename over path, fsync of the directory. A crash leaves the old file or the new. */
int nb_write_file_atomic(int dirfd, const char *path, const void *data, size_t len, mode_t mode);
/* The same without either fsync, for a hint its reader takes as unknown when it is
 * unreadable: a crash may leave the old file, the new, or an empty or torn one, never a
 * half-written one under the name while nestbox runs. 1-3 ms cheaper a write. */
int nb_write_file_replace(int dirfd, const char *path, const void *data, size_t len, mode_t mode);

/* Removes name (file or tree) in dirfd without following symlinks. -ENOENT is success. */
int nb_rm_rf_at(int dirfd, const char *name);

/* A DIR for fd, which it takes over (closed on failure too). */
int nb_fdopendir(int fd, DIR **ret);

/* A DIR listing name in dirfd ("." lists dirfd itself, from the start), opened
 * O_NOFOLLOW: a symlink is never listed through. */
int nb_opendir_at(int dirfd, const char *name, DIR **ret);

/* readdir() without "." and "..": NULL at the end (errno 0) or on error (errno set). */
struct dirent *nb_readdir_no_dots(DIR *d);
