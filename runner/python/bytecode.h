/* SPDX-License-Identifier: MIT */
/* Bytecode for a venv being built: the venv is read-only in the sandbox and
 * PYTHONDONTWRITEBYTECODE is set, so bytecode not compiled now would be compiled again
 * by every run. */
#pragma once

#include "python/interp.h"
#include "nestbox/error.h"

/* Compiles the venv at where (root its O_DIRECTORY fd) with py, inside a sandbox that
 * can write nothing of the venv, then installs each module's .pyc in its __pycache__.
 * A module that does not compile is skipped (no reason to refuse a venv); a sandbox
 * that cannot be built is an infrastructure error. */
int nb_venv_compile_bytecode(const struct nb_python *py, int root, const char *where, unsigned max_depth,
                             struct nb_error *err);
