/* SPDX-License-Identifier: MIT */
/* Shared by wheel_files.c (entries) and wheel_scripts.c (the dist-info's WHEEL and
 * console scripts); not part of the contract. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "nestbox/error.h"
#include "python/interp.h"
#include "python/lockfile.h"

/* What the wheel holds is wrong: the wheelhouse's to fix, not the machine's. */
#define BAD(st, ...) nb_error_input((st)->err, EINVAL, __VA_ARGS__)

/* One wheel being unpacked. */
struct wheel_files {
        const struct nb_python *py;
        const struct nb_requirement *req;
        const char *wheel; /* the wheel's filename, for messages */
        int venv_fd;
        const char *site;   /* "lib/python3.11/site-packages" */
        const char *python; /* scripts' interpreter: "/venv/bin/python" */
        struct nb_error *err;

        char *distinfo;     /* "pytest-7.2.1.dist-info", once seen */
        bool have_metadata, have_wheel, have_record;
        char *wheel_meta;   /* the dist-info's WHEEL file */
        char *entry_points; /* the dist-info's entry_points.txt, if any */
        uint64_t budget;    /* bytes it may still unpack */
        uint64_t cap;       /* the budget at the start, for messages */
        FILE *record;       /* RECORD lines so far */
        char *record_buf;
        size_t record_len;
};

/* Writes data as target (beneath the venv, mode) and lists it in RECORD; what names
 * the entry in messages. */
int nb_wheel_files_write(struct wheel_files *st, const char *what, const char *target, mode_t mode, const void *data,
                         size_t len);

/* The dist-info's WHEEL names a Wheel-Version 1.x. */
int nb_wheel_files_check_meta(struct wheel_files *st);

/* bin/<name> for each console and gui script of entry_points.txt. */
int nb_wheel_files_console_scripts(struct wheel_files *st);
