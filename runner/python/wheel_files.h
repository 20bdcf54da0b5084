/* SPDX-License-Identifier: MIT */
/* The entries of one wheel, unpacked into a venv: where each file goes, what is
 * refused, and the RECORD, INSTALLER and console scripts written afterwards. Internal
 * to wheel.c; split out to keep each file readable in one sitting. */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stdio.h>

#include "python/interp.h"
#include "python/lockfile.h"
#include "nestbox/error.h"

struct nb_wheel_files {
        const struct nb_python *py;
        const struct nb_requirement *req;
        const char *wheel; /* the wheel's filename, for messages */
        int venv_fd;
        struct nb_error *err;

        char *site;         /* "lib/python3.11/site-packages" */
        char *distinfo;     /* "pytest-7.2.1.dist-info", once seen */
        bool have_metadata, have_wheel, have_record;
        char *wheel_meta;   /* the dist-info's WHEEL file */
        char *entry_points; /* the dist-info's entry_points.txt, if any */
        FILE *record;       /* RECORD lines so far */
        char *record_buf;
        size_t record_len;
};

int nb_wheel_files_init(struct nb_wheel_files *st);
/* Checks and unpacks the entry e, whose data is next in a. */
int nb_wheel_files_entry(struct nb_wheel_files *st, struct archive *a, struct archive_entry *e);
/* After the last entry: checks the dist-info, writes console scripts, INSTALLER, RECORD. */
int nb_wheel_files_finish(struct nb_wheel_files *st);
void nb_wheel_files_donep(struct nb_wheel_files *st);

/* True when "pytest-7.2.1" (len bytes of stem) names req's distribution and version,
 * as a .dist-info or .data directory does. */
bool nb_wheel_stem_matches(const char *stem, size_t len, const struct nb_requirement *req);
