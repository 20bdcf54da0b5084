/* SPDX-License-Identifier: MIT */
/* libcurl, loaded when a remote cache is first used rather than at every start:
 * linked, it and the 30 libraries it needs (TLS, Kerberos, LDAP, SSH, IDN, ...) were
 * over half of nestbox-runner's dynamic loading, paid by every `nestbox test` with no
 * remote cache at all (README "Performance"). Include this instead of <curl/curl.h>:
 * the curl_* names below then call through the loaded table. */
#pragma once

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

struct nb_curl_api {
        CURLcode (*global_init)(long flags);
        CURL *(*easy_init)(void);
        CURLcode (*easy_setopt)(CURL *c, CURLoption o, ...);
        CURLcode (*easy_perform)(CURL *c);
        CURLcode (*easy_getinfo)(CURL *c, CURLINFO i, ...);
        void (*easy_cleanup)(CURL *c);
        const char *(*easy_strerror)(CURLcode code);
        CURLSH *(*share_init)(void);
        CURLSHcode (*share_setopt)(CURLSH *s, CURLSHoption o, ...);
        CURLSHcode (*share_cleanup)(CURLSH *s);
        struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
        void (*slist_free_all)(struct curl_slist *l);
        CURLU *(*url)(void);
        void (*url_cleanup)(CURLU *u);
        CURLUcode (*url_set)(CURLU *u, CURLUPart what, const char *part, unsigned int flags);
        CURLUcode (*url_get)(const CURLU *u, CURLUPart what, char **part, unsigned int flags);
        void (*free)(void *p);
};

extern struct nb_curl_api nb_curl;

/* Loads libcurl once (thread-safe). 0, or -ELIBACC with *why saying what failed. */
int nb_curl_load(const char **why);

#define curl_global_init nb_curl.global_init
#define curl_easy_init nb_curl.easy_init
#undef curl_easy_setopt /* curl.h names these three as macros of its own */
#undef curl_easy_getinfo
#undef curl_share_setopt
#define curl_easy_setopt nb_curl.easy_setopt
#define curl_easy_perform nb_curl.easy_perform
#define curl_easy_getinfo nb_curl.easy_getinfo
#define curl_easy_cleanup nb_curl.easy_cleanup
#define curl_easy_strerror nb_curl.easy_strerror
#define curl_share_init nb_curl.share_init
#define curl_share_setopt nb_curl.share_setopt
#define curl_share_cleanup nb_curl.share_cleanup
#define curl_slist_append nb_curl.slist_append
#define curl_slist_free_all nb_curl.slist_free_all
#define curl_url nb_curl.url
#define curl_url_cleanup nb_curl.url_cleanup
#define curl_url_set nb_curl.url_set
#define curl_url_get nb_curl.url_get
#define curl_free nb_curl.free
