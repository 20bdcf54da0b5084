/* SPDX-License-Identifier: MIT */
/* Shared by artifact.c (packing, unpacking) and artifact_extract.c (--output). */
#pragma once

#include <stdbool.h>

/* Whether name can be an entry's: a plain relative path, no empty, "." or ".."
 * component, no trailing "/", at most MAX_NAME bytes (artifact.c). */
bool nb_artifact_name_ok(const char *name);
