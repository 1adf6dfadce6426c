/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <curl/curl.h>
#include <expat.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "s3-internal.h"

#define S3_DEFAULT_ATTEMPTS 5
#define S3_DEFAULT_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define S3_DEFAULT_RETRY_TIME_USEC (300 * USEC_PER_SEC)
#define S3_BACKOFF_BASE_USEC (100 * USEC_PER_MSEC)
#define S3_BACKOFF_MAX_USEC (5 * USEC_PER_SEC)
#define S3_COLLECT_MAX (8U * 1024 * 1024)
#define S3_ERROR_BODY_MAX (64U * 1024)
/* Below this many bytes per second for `timeout` seconds a transfer counts as stalled: a body that trickles
 * a few bytes at a time is no progress. */
#define S3_LOW_SPEED_LIMIT 1024L
/* A request whose server may answer slowly (slow_reply) still ends after this, or retry_time if longer. */
#define S3_SLOW_REPLY_MAX_USEC (15 * 60 * USEC_PER_SEC)
/* A failed GET that delivered this much since the last failure made real progress: its failure starts a
 * new retry_time window (a large download may lose its connection twice an hour apart). A body that stalls
 * after a little progress each time does not reset it. */
#define S3_PROGRESS_RESET (8U * 1024 * 1024)
/* Backoff waits are cut into slices this long, so a cancellation is noticed within one. */
#define S3_CANCEL_POLL_USEC (50 * USEC_PER_MSEC)

typedef struct S3Share S3Share;

struct S3Client {
        char *remote;
        char *endpoint; /* as configured, for messages */
        char *scheme;
        char *authority; /* host[:port] */
        char *base_path; /* "" or "/path" */
        char *region;
        char *access_key_id;
        char *secret;
        char *secret_source; /* where the secret came from, for the fix in auth errors */
        bool path_style;
        char *ca_file;
        bool tls_verify;
        unsigned max_attempts;
        unsigned attempt; /* of the request in progress, for error messages */
        uint64_t retry_time_usec;
        uint64_t timeout_usec;
        CURL *curl; /* kept: its connection cache and TLS sessions are what makes requests cheap */
        S3Share *share;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- TLS sessions and DNS shared by a client and its clones ---- */

/* Clones run in other threads with connections of their own; sharing the TLS session cache lets their
 * handshakes resume the session of the first one instead of doing a full handshake each. (libcurl does not
 * support sharing the connection cache itself between threads.) */
struct S3Share {
        CURLSH *sh;
        pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
        atomic_uint n_ref;
        atomic_bool no_trailers; /* the server refused a body with a trailing checksum */
};

static void share_lock(CURL *e, curl_lock_data data, curl_lock_access access, void *userdata) {
        S3Share *s = userdata;

        (void) e, (void) access;
        if (data >= 0 && data < CURL_LOCK_DATA_LAST)
                pthread_mutex_lock(&s->locks[data]);
}

static void share_unlock(CURL *e, curl_lock_data data, void *userdata) {
        S3Share *s = userdata;

        (void) e;
        if (data >= 0 && data < CURL_LOCK_DATA_LAST)
                pthread_mutex_unlock(&s->locks[data]);
}

static S3Share *share_new(void) {
        S3Share *s = xcalloc(1, sizeof *s);

        for (size_t i = 0; i < ELEMENTSOF(s->locks); i++)
                pthread_mutex_init(&s->locks[i], NULL);
        atomic_init(&s->n_ref, 1);
        s->sh = curl_share_init();
        if (s->sh) {
                curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, share_lock);
                curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
                curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s);
                curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
                curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        }
        return s;
}

static S3Share *share_ref(S3Share *s) {
        atomic_fetch_add(&s->n_ref, 1);
        return s;
}

bool s3_client_trailers(const S3Client *c) {
        return !atomic_load(&c->share->no_trailers);
}

void s3_client_refuse_trailers(S3Client *c) {
        atomic_store(&c->share->no_trailers, true);
}

static void share_unref(S3Share *s) {
        if (!s || atomic_fetch_sub(&s->n_ref, 1) > 1)
                return;
        if (s->sh)
                curl_share_cleanup(s->sh);
        for (size_t i = 0; i < ELEMENTSOF(s->locks); i++)
                pthread_mutex_destroy(&s->locks[i]);
        free(s);
}

/* ---- credentials ---- */

/* A systemd credential: the directory is private to the service, so the file's mode is not ours to judge
 * (config_read_secret_file() would refuse the 0444 that LoadCredential= may give it). */
static int read_credential(const char *path, char **ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = read_file_string(path, 4096, &s);
        if (r < 0)
                return r;
        strstrip(s);
        if (isempty(s))
                return -ENODATA;
        *ret = TAKE_PTR(s);
        return 0;
}

static int client_load_credentials(S3Client *c, const RemoteConfig *remote) {
        const char *e;
        int r;

        e = remote->access_key_id ?: getenv("AWS_ACCESS_KEY_ID");
        if (isempty(e))
                return err_set(-EINVAL, EX_CONFIG,
                               "remote \"%s\" has no access_key_id (set access_key_id in [remote.%s] or "
                               "AWS_ACCESS_KEY_ID)", c->remote, c->remote);
        c->access_key_id = xstrdup(e);

        if (remote->secret_access_key_file) {
                r = config_read_secret_file(remote->secret_access_key_file, &c->secret);
                if (r < 0) {
                        /* Copied: err_set() formats into the buffer err_message() points at. */
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        return err_set(r, err_exit_code(r), "remote \"%s\": %s", c->remote, why);
                }
                c->secret_source = xasprintf("check secret_access_key_file for remote \"%s\"", c->remote);
                return 0;
        }

        e = getenv("CREDENTIALS_DIRECTORY");
        if (!isempty(e)) {
                _cleanup_free_ char *p = path_join(e, c->remote);

                /* systemd made the directory private to the service; its mode is not ours to judge. */
                r = read_credential(p, &c->secret);
                if (r >= 0) {
                        c->secret_source = xasprintf("check the credential \"%s\" (LoadCredential=)",
                                                     c->remote);
                        return 0;
                }
                if (r != -ENOENT)
                        return err_set(r, EX_CONFIG, "cannot read credential %s for remote \"%s\": %s", p,
                                       c->remote, strerror(-r));
        }

        e = getenv("AWS_SECRET_ACCESS_KEY");
        if (!isempty(e)) {
                c->secret = xstrdup(e);
                c->secret_source = xasprintf("check AWS_SECRET_ACCESS_KEY for remote \"%s\"", c->remote);
                return 0;
        }
        return err_set(-ENOKEY, EX_CONFIG,
                       "remote \"%s\" has no secret key: set secret_access_key_file in [remote.%s], a "
                       "systemd credential \"%s\", or AWS_SECRET_ACCESS_KEY",
                       c->remote, c->remote, c->remote);
}

/* ---- client ---- */

static int client_parse_endpoint(S3Client *c) {
        const char *p = c->endpoint, *rest, *slash;

        if ((rest = startswith(p, "https://")))
                c->scheme = xstrdup("https");
        else if ((rest = startswith(p, "http://")))
                c->scheme = xstrdup("http");
        else
                return err_set(-EINVAL, EX_CONFIG,
                               "endpoint \"%s\" of remote \"%s\" must start with http:// or https://", p,
                               c->remote);
        slash = strchr(rest, '/');
        c->authority = slash ? xstrndup(rest, (size_t) (slash - rest)) : xstrdup(rest);
        if (isempty(c->authority))
                return err_set(-EINVAL, EX_CONFIG, "endpoint \"%s\" of remote \"%s\" has no host", p,
                               c->remote);
        c->base_path = xstrdup(slash ? slash : "");
        while (endswith(c->base_path, "/"))
                c->base_path[strlen(c->base_path) - 1] = 0;
        return 0;
}

int s3_client_new(const RemoteConfig *remote, S3Client **ret) {
        _cleanup_(s3_client_freep) S3Client *c = NULL;
        int r;

        pthread_once(&curl_once, curl_init_once);
        c = xcalloc(1, sizeof *c);
        c->remote = xstrdup(strempty(remote->name));
        if (isempty(remote->endpoint))
                return err_set(-EINVAL, EX_CONFIG, "remote \"%s\" has no endpoint", c->remote);
        c->endpoint = xstrdup(remote->endpoint);
        while (endswith(c->endpoint, "/"))
                c->endpoint[strlen(c->endpoint) - 1] = 0;
        r = client_parse_endpoint(c);
        if (r < 0)
                return r;
        c->region = xstrdup(isempty(remote->region) ? "us-east-1" : remote->region);
        c->path_style = remote->path_style;
        c->ca_file = remote->ca_file ? xstrdup(remote->ca_file) : NULL;
        c->tls_verify = remote->tls_verify;
        c->max_attempts = remote->max_attempts > 0 ? remote->max_attempts : S3_DEFAULT_ATTEMPTS;
        c->timeout_usec = remote->timeout_usec > 0 ? remote->timeout_usec : S3_DEFAULT_TIMEOUT_USEC;
        c->retry_time_usec = remote->retry_time_usec > 0 ? remote->retry_time_usec
                                                         : S3_DEFAULT_RETRY_TIME_USEC;
        r = client_load_credentials(c, remote);
        if (r < 0)
                return r;
        c->curl = curl_easy_init();
        c->share = share_new();
        if (!c->curl)
                return err_set(-ENOMEM, EX_OSERR, "cannot initialize libcurl");
        if (!c->tls_verify)
                log_warning("TLS verification is off for remote \"%s\" (%s): tls_verify = no is for test "
                            "endpoints only", c->remote, c->endpoint);
        *ret = TAKE_PTR(c);
        return 0;
}

int s3_client_clone(const S3Client *c, S3Client **ret) {
        _cleanup_(s3_client_freep) S3Client *n = xcalloc(1, sizeof *n);

        *n = (S3Client){
                .remote = xstrdup(c->remote),
                .endpoint = xstrdup(c->endpoint),
                .scheme = xstrdup(c->scheme),
                .authority = xstrdup(c->authority),
                .base_path = xstrdup(c->base_path),
                .region = xstrdup(c->region),
                .access_key_id = xstrdup(c->access_key_id),
                .secret = xstrdup(c->secret),
                .secret_source = xstrdup(c->secret_source),
                .path_style = c->path_style,
                .ca_file = c->ca_file ? xstrdup(c->ca_file) : NULL,
                .tls_verify = c->tls_verify,
                .max_attempts = c->max_attempts,
                .timeout_usec = c->timeout_usec,
                .retry_time_usec = c->retry_time_usec,
                .curl = curl_easy_init(),
                .share = share_ref(c->share),
        };
        if (!n->curl)
                return err_set(-ENOMEM, EX_OSERR, "cannot initialize libcurl");
        *ret = TAKE_PTR(n);
        return 0;
}

void s3_client_free(S3Client *c) {
        if (!c)
                return;
        if (c->curl)
                curl_easy_cleanup(c->curl); /* before the share it uses */
        share_unref(c->share);
        if (c->secret)
                explicit_bzero(c->secret, strlen(c->secret));
        free(c->remote);
        free(c->endpoint);
        free(c->scheme);
        free(c->authority);
        free(c->base_path);
        free(c->region);
        free(c->access_key_id);
        free(c->secret);
        free(c->secret_source);
        free(c->ca_file);
        free(c);
}

const char *s3_client_endpoint(const S3Client *c) {
        return c->endpoint;
}

const char *s3_client_remote(const S3Client *c) {
        return c->remote;
}

uint64_t s3_client_retry_time_usec(const S3Client *c) {
        return c->retry_time_usec;
}

/* ---- small helpers ---- */

/* The standard headers S3 keeps with an object, as it sends them back on GET and HEAD and takes them on
 * PUT; a mirror copy carries all of them. */
static const struct {
        const char *name; /* lower case */
        size_t response_offset;
} std_headers[] = {
        { "content-type", offsetof(S3Response, content_type) },
        { "cache-control", offsetof(S3Response, cache_control) },
        { "content-disposition", offsetof(S3Response, content_disposition) },
        { "content-encoding", offsetof(S3Response, content_encoding) },
        { "content-language", offsetof(S3Response, content_language) },
        { "expires", offsetof(S3Response, expires) },
};

static char **std_header_field(S3Response *r, size_t i) {
        return (char **) ((uint8_t *) r + std_headers[i].response_offset);
}

static void response_headers_clear(S3Response *r) {
        free(r->etag);
        r->etag = NULL;
        for (size_t i = 0; i < ELEMENTSOF(std_headers); i++)
                *std_header_field(r, i) = mfree_str(*std_header_field(r, i));
        strv_free(r->metadata);
        r->metadata = NULL;
}

void s3_response_done(S3Response *r) {
        if (!r)
                return;
        free(r->body);
        response_headers_clear(r);
        *r = (S3Response){};
}

void s3_object_info_done(S3ObjectInfo *i) {
        if (!i)
                return;
        free(i->etag);
        free(i->content_type);
        free(i->cache_control);
        free(i->content_disposition);
        free(i->content_encoding);
        free(i->content_language);
        free(i->expires);
        strv_free(i->metadata);
        *i = (S3ObjectInfo){};
}

size_t s3_metadata_size(char *const *metadata) {
        size_t n = 0;

        for (size_t i = 0; metadata && metadata[i] && metadata[i + 1]; i += 2)
                n += strlen(metadata[i]) + strlen(metadata[i + 1]);
        return n;
}

char *s3_strip_quotes(const char *etag) {
        size_t n = strlen(etag);

        if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
                return xstrndup(etag + 1, n - 2);
        return xstrdup(etag);
}

int s3_parse_iso8601(const char *s, uint64_t *ret_usec) {
        struct tm tm = {};
        int y, mo, d, h, mi, sec;
        time_t t;

        if (sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
                return -EINVAL;
        tm = (struct tm){ .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                          .tm_sec = sec };
        t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret_usec = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

char *s3_xml_escape(const char *s) {
        size_t n = 1;
        char *r, *p;

        for (const char *c = s; *c; c++)
                n += strchr("<>&\"'", *c) ? 6 : 1;
        p = r = xmalloc(n);
        for (const char *c = s; *c; c++) {
                const char *e = NULL;
                switch (*c) {
                case '<': e = "&lt;"; break;
                case '>': e = "&gt;"; break;
                case '&': e = "&amp;"; break;
                case '"': e = "&quot;"; break;
                case '\'': e = "&apos;"; break;
                }
                if (e)
                        p = stpcpy(p, e);
                else
                        *p++ = *c;
        }
        *p = 0;
        return r;
}

/* ---- streaming XML ---- */

#define S3_XML_TEXT_MAX (64U * 1024)
/* No S3 reply nests deeper than 4 elements or has element names near this long: a reply that does is
 * refused rather than followed (a 200,000-deep document would otherwise grow the path without bound). */
#define S3_XML_DEPTH_MAX 32U
#define S3_XML_NAME_MAX  256U

struct S3Xml {
        XML_Parser parser;
        S3XmlFunc f;
        void *userdata;
        /* The element path, "/A/B/C": a fixed buffer, and where each level starts in it, so leaving an
         * element is one step back instead of a search. */
        char path[S3_XML_DEPTH_MAX * (S3_XML_NAME_MAX + 1) + 1];
        size_t path_len;
        size_t level_start[S3_XML_DEPTH_MAX];
        unsigned depth;
        char *text;
        size_t text_len;
        int error;
        const char *why; /* what made the parser stop, for the message */
};

static void xml_stop(S3Xml *x, const char *why) {
        if (x->error == 0) {
                x->error = -EBADMSG;
                x->why = why;
        }
        XML_StopParser(x->parser, false);
}

static void xml_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
        S3Xml *x = ud;
        const char *local = strrchr(name, ' '); /* no namespace processing: names come bare */
        size_t n;

        if (x->error != 0)
                return;
        local = local ? local + 1 : name;
        n = strlen(local);
        if (x->depth >= S3_XML_DEPTH_MAX)
                return xml_stop(x, "it nests elements deeper than 32 levels");
        if (n > S3_XML_NAME_MAX)
                return xml_stop(x, "it has an element name longer than 256 bytes");
        x->level_start[x->depth++] = x->path_len;
        x->path[x->path_len++] = '/';
        memcpy(x->path + x->path_len, local, n + 1);
        x->path_len += n;
        x->text_len = 0;
        x->text[0] = 0;
}

static void xml_end(void *ud, const XML_Char *name) {
        S3Xml *x = ud;

        if (x->error != 0 || x->depth == 0)
                return;
        int r = x->f(x->path, x->text, x->userdata);
        if (r < 0) {
                x->error = r;
                XML_StopParser(x->parser, false);
                return;
        }
        x->path_len = x->level_start[--x->depth];
        x->path[x->path_len] = 0;
        x->text_len = 0;
        x->text[0] = 0;
}

static void xml_text(void *ud, const XML_Char *s, int len) {
        S3Xml *x = ud;

        if (x->text_len + (size_t) len >= S3_XML_TEXT_MAX)
                return; /* nothing S3 sends in one element is this long; keep memory bounded */
        memcpy(x->text + x->text_len, s, (size_t) len);
        x->text_len += (size_t) len;
        x->text[x->text_len] = 0;
}

S3Xml *s3_xml_new(S3XmlFunc f, void *userdata) {
        S3Xml *x = xcalloc(1, sizeof *x);

        x->parser = XML_ParserCreate("UTF-8");
        if (!x->parser)
                abort();
        x->f = f;
        x->userdata = userdata;
        x->text = xmalloc(S3_XML_TEXT_MAX);
        x->text[0] = 0;
        XML_SetUserData(x->parser, x);
        XML_SetElementHandler(x->parser, xml_start, xml_end);
        XML_SetCharacterDataHandler(x->parser, xml_text);
        return x;
}

int s3_xml_feed(S3Xml *x, const void *p, size_t n, bool final) {
        if (x->error < 0)
                return x->error;
        if (XML_Parse(x->parser, p, (int) n, final) == XML_STATUS_ERROR) {
                if (x->error < 0 && !x->why)
                        return x->error; /* the callback's, with its message */
                return err_set(-EBADMSG, EX_PROTOCOL, "%s",
                               x->why ?: XML_ErrorString(XML_GetErrorCode(x->parser)));
        }
        return 0;
}

void s3_xml_free(S3Xml *x) {
        if (!x)
                return;
        XML_ParserFree(x->parser);
        free(x->text);
        free(x);
}

int s3_xml_parse(const char *p, size_t n, S3XmlFunc f, void *userdata) {
        _cleanup_(s3_xml_freep) S3Xml *x = s3_xml_new(f, userdata);

        return s3_xml_feed(x, p, n, true);
}

int s3_reply_malformed(S3Client *c, const char *what, const char *bucket, const char *key, int r) {
        _cleanup_free_ char *why = NULL;

        if (r != -EBADMSG)
                return r; /* a callback's own failure (a cap, a cancellation), with its message */
        /* Copied: err_set() formats into the buffer err_message() points at. */
        why = xstrdup(err_message() ?: "not well-formed XML");
        if (key)
                return err_set(r, EX_PROTOCOL, "malformed %s reply from %s (bucket %s, key %s): %s", what,
                               c->endpoint, strna(bucket), key, why);
        if (bucket)
                return err_set(r, EX_PROTOCOL, "malformed %s reply from %s (bucket %s): %s", what,
                               c->endpoint, bucket, why);
        return err_set(r, EX_PROTOCOL, "malformed %s reply from %s: %s", what, c->endpoint, why);
}

/* ---- errors ---- */

/* " (bucket B, key K)", " (bucket B)" or "": what a request was about, for messages. */
static char *request_where(const S3Request *req) {
        if (req->bucket && req->key)
                return xasprintf(" (bucket %s, key %s)", req->bucket, req->key);
        if (req->bucket)
                return xasprintf(" (bucket %s)", req->bucket);
        return xstrdup("");
}

typedef struct S3Error {
        char *code;
        char *message;
} S3Error;

static int error_xml(const char *path, const char *text, void *userdata) {
        S3Error *e = userdata;

        if (streq(path, "/Error/Code") && !e->code)
                e->code = xstrdup(text);
        else if (streq(path, "/Error/Message") && !e->message)
                e->message = xstrdup(text);
        return 0;
}

static bool code_is_auth(const char *code) {
        static const char *const auth[] = { "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied",
                                            "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
                                            "InvalidSecurity", "AllAccessDisabled", "AccountProblem" };
        for (size_t i = 0; i < ELEMENTSOF(auth); i++)
                if (streq(code, auth[i]))
                        return true;
        return false;
}

/* Codes that no retry can fix, also when they come in a 200 reply. */
static bool code_is_permanent(const char *code) {
        static const char *const permanent[] = {
                "NoSuchUpload",       "NoSuchKey",         "NoSuchBucket",     "InvalidPart",
                "InvalidPartOrder",   "EntityTooSmall",    "EntityTooLarge",   "MalformedXML",
                "InvalidRequest",     "InvalidArgument",   "InvalidDigest",    "BadDigest",
                "PreconditionFailed", "InvalidBucketName", "MethodNotAllowed", "NotImplemented"
        };
        if (code_is_auth(code))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(permanent); i++)
                if (streq(code, permanent[i]))
                        return true;
        return false;
}

static bool code_is_retryable(const char *code) {
        static const char *const retry[] = { "SlowDown", "InternalError", "ServiceUnavailable",
                                             "RequestTimeout", "Throttling", "ThrottlingException",
                                             "RequestTimeTooSkewed" };
        if (!code)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(retry); i++)
                if (streq(code, retry[i]))
                        return true;
        return false;
}

int s3_fail(S3Client *c, const S3Request *req, long status, const char *code, const char *message) {
        _cleanup_free_ char *where = NULL, *fallback = NULL, *fix = NULL;
        int error = -EIO, exit_code = EX_PROTOCOL;

        if (!code) {
                if (status == 404)
                        code = req->key ? "NoSuchKey" : "NoSuchBucket";
                else if (status == 403)
                        code = "AccessDenied";
                else if (status == 401)
                        code = "Unauthorized";
                else
                        code = fallback = xasprintf("HTTP %ld", status);
        }

        if (req->bucket && req->key)
                where = xasprintf(" (bucket %s, key %s)", req->bucket, req->key);
        else if (req->bucket)
                where = xasprintf(" (bucket %s)", req->bucket);
        else
                where = xstrdup("");

        if (streq(code, "SignatureDoesNotMatch")) {
                fix = xstrdup(c->secret_source);
                error = -EACCES, exit_code = EX_NOPERM;
        } else if (streq(code, "InvalidAccessKeyId")) {
                fix = xasprintf("check access_key_id for remote \"%s\"", c->remote);
                error = -EACCES, exit_code = EX_NOPERM;
        } else if (streq(code, "AuthorizationHeaderMalformed")) {
                fix = xasprintf("check region for remote \"%s\" (now %s)", c->remote, c->region);
                error = -EACCES, exit_code = EX_NOPERM;
        } else if (code_is_auth(code) || status == 401 || status == 403) {
                fix = xasprintf("access key %s of remote \"%s\" lacks %s here; grant it in the key's "
                                "policy, or check the credentials",
                                c->access_key_id, c->remote, s3_request_action(req));
                error = -EACCES, exit_code = EX_NOPERM;
        } else if (streq(code, "NoSuchBucket")) {
                fix = xasprintf("create the bucket, or set create_bucket = yes for remote \"%s\"",
                                c->remote);
                error = -ENOENT, exit_code = EX_UNAVAILABLE;
        } else if (streq(code, "NoSuchKey") || streq(code, "NoSuchUpload")) {
                fix = xstrdup("the object does not exist");
                error = -ENOENT, exit_code = EX_NOINPUT;
        } else if (streq(code, "PreconditionFailed")) {
                fix = xstrdup("the object changed while it was read; run again");
                error = -ESTALE, exit_code = EX_TEMPFAIL;
        } else if (streq(code, "PermanentRedirect") || streq(code, "IllegalLocationConstraintException") ||
                   status == 301 || status == 307) {
                fix = xasprintf("the bucket lives in another region: check region and endpoint for remote "
                                "\"%s\"", c->remote);
                error = -EADDRNOTAVAIL, exit_code = EX_CONFIG;
        } else if (streq(code, "InvalidBucketName")) {
                fix = xstrdup("fix the bucket name in the location");
                error = -EINVAL, exit_code = EX_CONFIG;
        } else if (status >= 500 || status == 429 || code_is_retryable(code)) {
                fix = xasprintf("the server kept failing after %u attempts; check its health or raise "
                                "max_attempts for remote \"%s\"", c->attempt, c->remote);
                error = -EAGAIN, exit_code = EX_UNAVAILABLE;
        } else
                fix = xstrdup("unexpected reply");

        if (!isempty(message))
                return err_set(error, exit_code, "%s from %s%s: %s (server said: %s)", code, c->endpoint,
                               where, fix, message);
        return err_set(error, exit_code, "%s from %s%s: %s", code, c->endpoint, where, fix);
}

static int fail_transport(S3Client *c, const S3Request *req, CURLcode cc, const char *detail) {
        const char *what = isempty(detail) ? curl_easy_strerror(cc) : detail;
        int error;

        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                error = -ECONNREFUSED;
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                error = -EHOSTUNREACH;
                break;
        case CURLE_OPERATION_TIMEDOUT:
                if (!startswith(what, "Connection timed out") && !startswith(what, "Resolving timed out")) {
                        /* Connected, then no progress: a server that does not answer, or a body that
                         * stalls or trickles. */
                        _cleanup_free_ char *where = request_where(req);
                        return err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                                       "S3 endpoint %s%s stalled: less than 1 KiB/s for %" PRIu64
                                       " s (%s); check "
                                       "the server and the network, or raise timeout for remote \"%s\"",
                                       c->endpoint, where, MAX(c->timeout_usec / USEC_PER_SEC, (uint64_t) 1),
                                       what, c->remote);
                }
                error = -ETIMEDOUT;
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CONNECT_ERROR:
                return err_set(-EPROTO, EX_UNAVAILABLE,
                               "TLS with %s failed: %s (set ca_file for remote \"%s\" to the CA that signed "
                               "the server's certificate)", c->endpoint, what, c->remote);
        default:
                error = -ECONNRESET;
        }
        return err_set(error, EX_UNAVAILABLE,
                       "cannot reach S3 endpoint %s%s%s after %u attempts: %s (is the server up? check "
                       "endpoint for remote \"%s\")", c->endpoint, req->bucket ? " bucket " : "",
                       strempty(req->bucket), c->attempt, what, c->remote);
}

static bool curl_retryable(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_GOT_NOTHING:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

/* ---- one attempt ---- */

typedef struct Attempt {
        S3Client *c;
        const S3Request *req;
        S3Response *resp;
        size_t send_pos;
        long status;
        char *err_body;
        size_t err_len;
        int cb_error;
        bool headers_done;
        bool cancelled;
} Attempt;

/* libcurl calls this often while data moves and about once a second while it waits. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        Attempt *a = ud;

        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        if (cancel_requested() && !a->req->tidy_up) {
                a->cancelled = true;
                return 1; /* CURLE_ABORTED_BY_CALLBACK */
        }
        return 0;
}

static int fail_cancelled(S3Client *c, const S3Request *req) {
        _cleanup_free_ char *where = request_where(req);

        return err_set(-ECANCELED, EX_TEMPFAIL, "cancelled during %s to S3 endpoint %s%s", req->method,
                       c->endpoint, where);
}

/* A 2xx reply that carries an <Error> document (error_in_ok): 0 when it does not. */
static int ok_reply_error(S3Client *c, const S3Request *req, const S3Response *resp, bool *ret_retryable) {
        S3Error se = {};
        int r = 0;

        if (resp->body_len == 0)
                return 0;
        /* Only the root <Error> matters: a DeleteResult's per-key <Error>s are the caller's to judge. A
         * reply that is not XML at all is left to the caller's parser too. */
        (void) s3_xml_parse(resp->body, resp->body_len, error_xml, &se);
        err_clear();
        if (se.code) {
                log_debug("%s to %s: HTTP %ld with an <Error> body: %s", req->method, c->endpoint,
                          resp->status, se.code);
                *ret_retryable = !code_is_permanent(se.code);
                r = s3_fail(c, req, resp->status, se.code, se.message);
        }
        free(se.code);
        free(se.message);
        return r;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud) {
        Attempt *a = ud;
        size_t n = MIN(size * nitems, a->req->body_len - a->send_pos);

        if (a->req->read_body) {
                ssize_t k = n > 0 ? a->req->read_body(buf, n, a->req->read_userdata) : 0;
                if (k < 0) {
                        a->cb_error = (int) k;
                        return CURL_READFUNC_ABORT;
                }
                if (k == 0 && n > 0) {
                        a->cb_error = err_set(-EPIPE, EX_UNAVAILABLE,
                                              "the body for %s/%s ended after %zu of %zu bytes",
                                              strna(a->req->bucket), strna(a->req->key), a->send_pos,
                                              a->req->body_len);
                        return CURL_READFUNC_ABORT;
                }
                a->send_pos += (size_t) k;
                a->resp->sent_bytes = a->send_pos;
                return (size_t) k;
        }
        memcpy(buf, (const uint8_t *) a->req->body + a->send_pos, n);
        a->send_pos += n;
        return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin) {
        Attempt *a = ud;

        /* curl rewinds when it resends on a reused connection that turned out dead. A pulled body can
         * only be "rewound" to where it is. */
        if (a->req->read_body)
                return origin == SEEK_SET && (size_t) offset == a->send_pos ? CURL_SEEKFUNC_OK
                                                                             : CURL_SEEKFUNC_CANTSEEK;
        if (origin != SEEK_SET || offset < 0 || (size_t) offset > a->req->body_len)
                return CURL_SEEKFUNC_CANTSEEK;
        a->send_pos = (size_t) offset;
        return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
        Attempt *a = ud;
        size_t n = size * nmemb;

        if (a->status < 200 || a->status >= 300) {
                size_t k = MIN(n, S3_ERROR_BODY_MAX - a->err_len);
                a->err_body = xrealloc(a->err_body, a->err_len + k + 1);
                memcpy(a->err_body + a->err_len, p, k);
                a->err_len += k;
                a->err_body[a->err_len] = 0;
                return n;
        }
        if (a->req->on_body) {
                int r = a->req->on_body(p, n, a->req->userdata);
                if (r < 0) {
                        a->cb_error = r;
                        return 0;
                }
                a->resp->body_bytes += n;
                return n;
        }
        if (a->resp->body_len + n > S3_COLLECT_MAX) {
                _cleanup_free_ char *where = request_where(a->req);
                a->cb_error = err_set(-EFBIG, EX_PROTOCOL,
                                      "the reply from %s%s is larger than %u MiB; refusing it",
                                      a->c->endpoint, where, S3_COLLECT_MAX >> 20);
                return 0;
        }
        a->resp->body = xrealloc(a->resp->body, a->resp->body_len + n + 1);
        memcpy(a->resp->body + a->resp->body_len, p, n);
        a->resp->body_len += n;
        a->resp->body[a->resp->body_len] = 0;
        return n;
}

static size_t on_header(char *p, size_t size, size_t nitems, void *ud) {
        Attempt *a = ud;
        S3Response *resp = a->resp;
        size_t n = size * nitems;
        _cleanup_free_ char *line = xstrndup(p, n);
        char *colon, *value;
        const char *meta;

        strstrip(line);
        if (isempty(line)) {
                /* The end of a header block; trailers after the body are not headers to report. */
                if (a->headers_done || a->status < 200 || a->status >= 300 || !a->req->on_headers)
                        return n;
                a->headers_done = true;
                int r = a->req->on_headers(resp, a->req->userdata);
                if (r < 0) {
                        a->cb_error = r;
                        return 0;
                }
                return n;
        }
        if (startswith(line, "HTTP/")) {
                /* A new status line (after "100 Continue" or a redirect): forget earlier headers. */
                long status = 0;
                const char *sp = strchr(line, ' ');
                if (sp)
                        status = strtol(sp + 1, NULL, 10);
                a->status = status;
                response_headers_clear(resp);
                resp->content_length = 0;
                resp->range_total = 0;
                resp->mtime_usec = 0;
                resp->parts_count = 0;
                return n;
        }
        colon = strchr(line, ':');
        if (!colon)
                return n;
        *colon = 0;
        value = strstrip(colon + 1);
        for (char *c = line; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        for (size_t i = 0; i < ELEMENTSOF(std_headers); i++)
                if (streq(line, std_headers[i].name)) {
                        char **f = std_header_field(resp, i);
                        free(*f);
                        *f = xstrdup(value);
                        return n;
                }
        if (streq(line, "etag")) {
                free(resp->etag);
                resp->etag = s3_strip_quotes(value);
        } else if (streq(line, "content-length"))
                (void) parse_uint64(value, &resp->content_length);
        else if (streq(line, "content-range")) {
                /* "bytes 0-99/1234" */
                const char *slash = strrchr(value, '/');
                if (slash)
                        (void) parse_uint64(slash + 1, &resp->range_total);
        } else if (streq(line, "x-amz-mp-parts-count")) {
                uint64_t v;
                if (parse_uint64(value, &v) >= 0 && v <= 1000000) /* S3 allows 10,000 */
                        resp->parts_count = (unsigned) v;
        } else if (streq(line, "last-modified")) {
                time_t t = curl_getdate(value, NULL);
                if (t > 0)
                        resp->mtime_usec = (uint64_t) t * USEC_PER_SEC;
        } else if ((meta = startswith(line, "x-amz-meta-"))) {
                strv_push(&resp->metadata, xstrdup(meta));
                strv_push(&resp->metadata, xstrdup(value));
        }
        return n;
}

static char *request_path(S3Client *c, const S3Request *req) {
        if (!req->bucket)
                return xasprintf("%s/", c->base_path);
        return s3_request_uri(c->base_path, c->path_style ? req->bucket : NULL, req->key);
}

static char *request_host(S3Client *c, const S3Request *req) {
        if (req->bucket && !c->path_style)
                return xasprintf("%s.%s", req->bucket, c->authority);
        return xstrdup(c->authority);
}

static void curl_slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

static int attempt_once(S3Client *c, const S3Request *req, const char *payload_hash, S3Response *resp,
                        bool *ret_retryable) {
        _cleanup_(curl_slist_freep) struct curl_slist *hl = NULL;
        _cleanup_free_ char *path = request_path(c, req), *host = request_host(c, req), *url = NULL,
                            *query = s3_canonical_query(req->params, req->n_params);
        _cleanup_free_ S3Header *h = NULL;
        _cleanup_(s3_signature_done) S3Signature sig = {};
        char amz_date[17], errbuf[CURL_ERROR_SIZE] = "";
        bool has_content_type = false;
        Attempt a = { .c = c, .req = req, .resp = resp };
        time_t now = time(NULL);
        struct tm tm;
        size_t n = 0;
        CURL *e = c->curl;
        CURLcode cc;
        int r;

        *ret_retryable = false;
        s3_response_done(resp);
        strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));

        h = xcalloc(req->n_headers + 3, sizeof *h);
        h[n++] = (S3Header){ "host", host };
        h[n++] = (S3Header){ "x-amz-date", amz_date };
        h[n++] = (S3Header){ "x-amz-content-sha256", payload_hash };
        for (size_t i = 0; i < req->n_headers; i++) {
                h[n++] = req->headers[i];
                if (strcasecmp(req->headers[i].name, "content-type") == 0)
                        has_content_type = true;
        }
        S3SignInput in = {
                .method = req->method,
                .path = path,
                .query = query,
                .headers = h,
                .n_headers = n,
                .payload_hash = payload_hash,
                .amz_date = amz_date,
                .region = c->region,
                .access_key_id = c->access_key_id,
                .secret_access_key = c->secret,
        };
        r = s3_sign(&in, &sig);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot sign request to %s", c->endpoint);

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *line = xasprintf("%s: %s", h[i].name, h[i].value);
                hl = curl_slist_append(hl, line);
        }
        {
                _cleanup_free_ char *line = xasprintf("Authorization: %s", sig.authorization);
                hl = curl_slist_append(hl, line);
        }
        /* No "Expect: 100-continue" round trip, and no form content type on POST. */
        hl = curl_slist_append(hl, "Expect:");
        if (!has_content_type)
                hl = curl_slist_append(hl, "Content-Type:");
        if (!hl)
                return err_set(-ENOMEM, EX_OSERR, "out of memory");

        url = isempty(query) ? xasprintf("%s://%s%s", c->scheme, host, path)
                             : xasprintf("%s://%s%s?%s", c->scheme, host, path, query);

        curl_easy_reset(e);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (c->share->sh)
                curl_easy_setopt(e, CURLOPT_SHARE, c->share->sh);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        /* Keys are opaque: "a/../b" is a key of its own, not "b", and must not become another key, prefix
         * or bucket on the way. */
        curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (c->timeout_usec / USEC_PER_MSEC));
        /* A stall, not a slow large transfer, is a timeout; a body that trickles a few bytes at a time is a
         * stall too. A server that may rightly take minutes (slow_reply) keeps the connection alive with
         * whitespace: any byte is progress there, and the attempt has a cap instead. */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, req->slow_reply ? 1L : S3_LOW_SPEED_LIMIT);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                         (long) MAX(c->timeout_usec / USEC_PER_SEC, (uint64_t) 1));
        if (req->slow_reply)
                curl_easy_setopt(
                        e, CURLOPT_TIMEOUT_MS,
                        (long) (MAX(c->retry_time_usec, (uint64_t) S3_SLOW_REPLY_MAX_USEC) / USEC_PER_MSEC));
        /* SIGTERM reaches the main thread only, and libcurl resumes its poll() after EINTR: the transfer
         * looks at the flag itself, in every thread. */
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, &a);
        /* Larger than the 64 KiB / 16 KiB defaults: fewer, bigger socket writes and reads for 8 MiB
         * parts. */
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &a);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &a);
        if (c->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        if (!c->tls_verify) {
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }

        if (streq(req->method, "HEAD"))
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (streq(req->method, "PUT") || streq(req->method, "POST")) {
                curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(e, CURLOPT_READDATA, &a);
                curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
                curl_easy_setopt(e, CURLOPT_SEEKDATA, &a);
                if (streq(req->method, "PUT")) {
                        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
                        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->body_len);
                } else {
                        curl_easy_setopt(e, CURLOPT_POST, 1L);
                        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
                }
        } else if (!streq(req->method, "GET"))
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);

        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        if (a.cancelled) {
                free(a.err_body);
                return fail_cancelled(c, req);
        }
        if (a.cb_error < 0) {
                free(a.err_body);
                return a.cb_error; /* the callback's owner set the message */
        }
        if (cc != CURLE_OK) {
                free(a.err_body);
                log_debug("%s %s: %s", req->method, url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
                *ret_retryable = curl_retryable(cc);
                return fail_transport(c, req, cc, errbuf);
        }
        if (resp->status >= 200 && resp->status < 300) {
                free(a.err_body);
                if (req->error_in_ok && !req->on_body)
                        return ok_reply_error(c, req, resp, ret_retryable);
                return 0;
        }

        S3Error se = {};
        if (a.err_len > 0)
                (void) s3_xml_parse(a.err_body, a.err_len, error_xml, &se);
        free(a.err_body);
        log_debug("%s %s: HTTP %ld %s", req->method, url, resp->status, strna(se.code));
        *ret_retryable = resp->status >= 500 || resp->status == 429 || code_is_retryable(se.code);
        r = s3_fail(c, req, resp->status, se.code, se.message);
        free(se.code);
        free(se.message);
        return r;
}

static uint64_t backoff_usec(unsigned attempt) {
        uint64_t cap = S3_BACKOFF_BASE_USEC << MIN(attempt, 16U);

        cap = MIN(cap, S3_BACKOFF_MAX_USEC);
        /* Half fixed, half random: spreads clients that failed together without ever retrying at once. */
        return cap / 2 + arc4random_uniform((uint32_t) (cap / 2 + 1));
}

/* Sleeps d, or less when the job is cancelled meanwhile: -ECANCELED then. */
static int sleep_cancellable(uint64_t d) {
        uint64_t until = now_usec(CLOCK_MONOTONIC) + d;

        for (;;) {
                if (cancel_requested())
                        return -ECANCELED;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= until)
                        return 0;
                (void) usleep((useconds_t) MIN(until - now, (uint64_t) S3_CANCEL_POLL_USEC));
        }
}

int s3_request(S3Client *c, const S3Request *req, S3Response *ret) {
        char payload_hash[65];
        uint64_t own_failing_since = 0, *failing_since = req->failing_since ?: &own_failing_since;

        /* Bucket names come from listings and configurations alike; one that is not a single path
         * segment or host label run would address something else. */
        if (req->bucket && !s3_bucket_name_safe(req->bucket))
                return err_set(-EINVAL, EX_DATAERR,
                               "refusing a request to %s for bucket \"%s\": not a valid S3 bucket name "
                               "(letters, digits, '.', '-' and '_', not \".\" or \"..\")",
                               c->endpoint, req->bucket);

        if (req->read_body)
                snprintf(payload_hash, sizeof payload_hash, "%s", req->payload_sha256 ?: "UNSIGNED-PAYLOAD");
        else if (req->payload_sha256)
                snprintf(payload_hash, sizeof payload_hash, "%s", req->payload_sha256);
        else
                s3_sha256_hex(req->body ?: "", req->body ? req->body_len : 0, payload_hash);
        for (unsigned attempt = 1;; attempt++) {
                bool retryable;
                int r;

                if (cancel_requested() && (!req->tidy_up || attempt > 1))
                        return fail_cancelled(c, req);
                c->attempt = attempt;
                r = attempt_once(c, req, payload_hash, ret, &retryable);
                if (r >= 0)
                        return 0;
                /* retry_time is counted from the operation's first failure, not per request: a body that
                 * stalls after a little progress each time still ends within it. */
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (*failing_since == 0)
                        *failing_since = now;
                if (!retryable || attempt >= c->max_attempts)
                        return r;
                if (ret->sent_bytes > 0)
                        return r; /* a pulled body cannot be sent again */
                if (ret->body_bytes > 0) {
                        if (!req->on_retry)
                                return r;
                        int k = req->on_retry(req->userdata);
                        if (k < 0)
                                return k;
                }
                uint64_t d = backoff_usec(attempt - 1);
                uint64_t spent = now - *failing_since;
                if (spent + d > c->retry_time_usec)
                        return s3_fail_retry_time(c, r, spent);
                log_debug("S3 %s to %s failed (%s), retrying in %" PRIu64 " ms", req->method, c->endpoint,
                          strna(err_message()), d / USEC_PER_MSEC);
                if (sleep_cancellable(d) < 0)
                        return fail_cancelled(c, req);
        }
}

int s3_fail_retry_time(S3Client *c, int r, uint64_t spent_usec) {
        return err_set(r, err_exit_code(r),
                       "%s; gave up after %.0f s (retry_time for remote \"%s\" is %" PRIu64 " s)",
                       strna(err_message()), (double) spent_usec / USEC_PER_SEC, c->remote,
                       c->retry_time_usec / USEC_PER_SEC);
}

/* ---- object operations ---- */

static void response_take_info(S3Response *resp, uint64_t size, S3ObjectInfo *ret) {
        *ret = (S3ObjectInfo){
                .size = size,
                .mtime_usec = resp->mtime_usec,
                .etag = TAKE_PTR(resp->etag),
                .content_type = TAKE_PTR(resp->content_type),
                .cache_control = TAKE_PTR(resp->cache_control),
                .content_disposition = TAKE_PTR(resp->content_disposition),
                .content_encoding = TAKE_PTR(resp->content_encoding),
                .content_language = TAKE_PTR(resp->content_language),
                .expires = TAKE_PTR(resp->expires),
                .metadata = TAKE_PTR(resp->metadata),
        };
}

int s3_head_object(S3Client *c, const char *bucket, const char *key, S3ObjectInfo *ret) {
        _cleanup_(s3_response_done) S3Response resp = {};
        S3Request req = { .method = "HEAD", .bucket = bucket, .key = key };
        int r;

        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        response_take_info(&resp, resp.content_length, ret);
        return 0;
}

typedef struct GetState {
        S3Client *c;
        const char *bucket, *key;
        Sink *sink;
        uint64_t offset, length;
        uint64_t got;
        char *etag; /* the If-Match of every request after the first reply */
        S3InfoFunc on_info;
        void *userdata;
        bool info_sent;
        bool sink_failed; /* the reader went away: nothing to resume for */
} GetState;

static int get_on_body(const void *p, size_t n, void *userdata) {
        GetState *g = userdata;
        int r = g->sink->write(g->sink, p, n);

        if (r < 0) {
                g->sink_failed = true;
                return r;
        }
        g->got += n;
        return 0;
}

static int get_on_headers(const S3Response *resp, void *userdata) {
        GetState *g = userdata;

        if (!g->on_info)
                return 0;
        if (g->info_sent) {
                /* s3_request retried a reply that sent no body yet, with the headers of the first
                 * request: the first reply's headers were reported, so they must still be right. */
                if (g->etag && resp->etag && !streq(resp->etag, g->etag))
                        return err_set(-ESTALE, EX_TEMPFAIL,
                                       "%s (bucket %s, key %s) changed while being read (ETag %s, then %s)",
                                       g->c->endpoint, g->bucket, g->key, g->etag, resp->etag);
                return 0;
        }
        g->info_sent = true;
        if (!g->etag && resp->etag)
                g->etag = xstrdup(resp->etag);
        /* A range that runs past the end ends at the end (as the reply does), not in a resume. */
        if (resp->range_total > 0 && g->length != UINT64_MAX && g->offset + g->length > resp->range_total)
                g->length = resp->range_total > g->offset ? resp->range_total - g->offset : 0;
        S3ObjectInfo i = {
                .size = resp->range_total > 0 ? resp->range_total : resp->content_length,
                .mtime_usec = resp->mtime_usec,
                .etag = resp->etag,
                .content_type = resp->content_type,
                .cache_control = resp->cache_control,
                .content_disposition = resp->content_disposition,
                .content_encoding = resp->content_encoding,
                .content_language = resp->content_language,
                .expires = resp->expires,
                .metadata = resp->metadata,
        };
        return g->on_info(&i, g->userdata);
}

int s3_get_object(S3Client *c, const char *bucket, const char *key, uint64_t offset, uint64_t length,
                  const char *if_match, Sink *sink) {
        return s3_get_object_with_info(c, bucket, key, offset, length, if_match, sink, NULL, NULL);
}

int s3_get_object_with_info(S3Client *c, const char *bucket, const char *key, uint64_t offset,
                            uint64_t length, const char *if_match, Sink *sink, S3InfoFunc on_info,
                            void *userdata) {
        GetState g = { .c = c, .bucket = bucket, .key = key, .sink = sink, .offset = offset,
                       .length = length, .on_info = on_info, .userdata = userdata };
        uint64_t failing_since = 0; /* one retry_time for the GET and all its resumes */
        unsigned resumes = 0;
        int r = 0;

        if (length == 0)
                return 0;
        g.etag = if_match ? xstrdup(if_match) : NULL;
        for (;;) {
                _cleanup_(s3_response_done) S3Response resp = {};
                _cleanup_free_ char *range = NULL, *quoted = NULL;
                S3Header h[2];
                size_t n = 0;
                uint64_t from = offset + g.got;

                if (from > 0 || g.length != UINT64_MAX) {
                        if (g.length == UINT64_MAX)
                                range = xasprintf("bytes=%" PRIu64 "-", from);
                        else
                                range = xasprintf("bytes=%" PRIu64 "-%" PRIu64, from, offset + g.length - 1);
                        h[n++] = (S3Header){ "Range", range };
                }
                if (g.etag) {
                        quoted = xasprintf("\"%s\"", g.etag);
                        h[n++] = (S3Header){ "If-Match", quoted };
                }
                S3Request req = { .method = "GET",
                                  .bucket = bucket,
                                  .key = key,
                                  .headers = h,
                                  .n_headers = n,
                                  .on_body = get_on_body,
                                  .on_headers = get_on_headers,
                                  .userdata = &g,
                                  .failing_since = &failing_since };
                uint64_t before = g.got;

                r = s3_request(c, &req, &resp);
                if (!g.etag && resp.etag)
                        g.etag = xstrdup(resp.etag); /* pin the version we started on */
                if (r >= 0) {
                        if (g.length != UINT64_MAX && g.got < g.length) {
                                /* The server closed cleanly but short (HTTP/1.0 peers): resume. */
                                if (++resumes > c->max_attempts * 4U) {
                                        r = err_set(-EIO, EX_UNAVAILABLE,
                                                    "%s (bucket %s, key %s) keeps ending early", c->endpoint,
                                                    bucket, key);
                                        break;
                                }
                                continue;
                        }
                        break;
                }
                /* Only a transfer cut mid-body that made progress is resumed here; everything else
                 * s3_request already retried. */
                if (g.got == before || resp.body_bytes == 0 || g.sink_failed || r == -ECANCELED)
                        break;
                if (++resumes > c->max_attempts * 4U)
                        break;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (g.got - before >= S3_PROGRESS_RESET)
                        failing_since = now; /* real progress: this failure opens a new window */
                else if (failing_since > 0 && now - failing_since >= c->retry_time_usec) {
                        r = s3_fail_retry_time(c, r, now - failing_since);
                        break;
                }
                log_debug("GET %s/%s cut after %" PRIu64 " bytes, resuming", bucket, key, g.got);
        }
        free(g.etag);
        return r;
}

size_t s3_put_headers(const S3PutOptions *o, S3Header **ret, char ***ret_names) {
        /* Room for the standard headers, and those callers add (a checksum and its algorithm, or
         * CreateMultipartUpload's). */
        S3Header *h =
                xcalloc(ELEMENTSOF(std_headers) + 4 + (o ? strv_length(o->metadata) / 2 : 0), sizeof *h);
        char **names = NULL;
        size_t nh = 0;

        if (o && o->content_type)
                h[nh++] = (S3Header){ "Content-Type", o->content_type };
        if (o && o->cache_control)
                h[nh++] = (S3Header){ "Cache-Control", o->cache_control };
        if (o && o->content_disposition)
                h[nh++] = (S3Header){ "Content-Disposition", o->content_disposition };
        if (o && o->content_encoding)
                h[nh++] = (S3Header){ "Content-Encoding", o->content_encoding };
        if (o && o->content_language)
                h[nh++] = (S3Header){ "Content-Language", o->content_language };
        if (o && o->expires)
                h[nh++] = (S3Header){ "Expires", o->expires };
        for (size_t i = 0; o && o->metadata && o->metadata[i] && o->metadata[i + 1]; i += 2) {
                char *name = xasprintf("x-amz-meta-%s", o->metadata[i]);
                strv_push(&names, name);
                h[nh++] = (S3Header){ name, o->metadata[i + 1] };
        }
        *ret = h;
        *ret_names = names;
        return nh;
}

int s3_put_options_check(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o) {
        size_t n = o ? s3_metadata_size(o->metadata) : 0;

        if (n > S3_METADATA_MAX)
                return err_set(-EMSGSIZE, EX_DATAERR,
                               "not writing %s (bucket %s, key %s): its user metadata is %zu bytes, more "
                               "than the %u S3 accepts (names without x-amz-meta- plus values); shorten "
                               "the object's metadata",
                               c->endpoint, bucket, key, n, S3_METADATA_MAX);
        return 0;
}

char *s3_content_md5(const void *data, size_t n) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        char *r = xmalloc(4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1);

        EVP_Digest(data, n, md, &len, EVP_md5(), NULL);
        EVP_EncodeBlock((unsigned char *) r, md, (int) len);
        return r;
}

int s3_put_object(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                  const S3PutOptions *o, char **ret_etag) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ S3Header *h = NULL;
        _cleanup_strv_free_ char **names = NULL;
        size_t nh = s3_put_headers(o, &h, &names);
        char hex[65], base64[45];
        int r;

        r = s3_put_options_check(c, bucket, key, o);
        if (r < 0)
                return r;
        /* The body is hashed once: signed as the payload, and kept by the server as the object's checksum
         * (it refuses a body that does not match it). */
        s3_sha256_hex_base64(data ?: "", n, hex, base64);
        h[nh++] = (S3Header){ "x-amz-checksum-sha256", base64 };
        h[nh++] = (S3Header){ "x-amz-sdk-checksum-algorithm", "SHA256" }; /* what SDKs send along */
        S3Request req = { .method = "PUT", .bucket = bucket, .key = key, .headers = h, .n_headers = nh,
                          .body = data ?: "", .body_len = n, .payload_sha256 = hex };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        if (ret_etag)
                *ret_etag = resp.etag ? TAKE_PTR(resp.etag) : xstrdup("");
        return 0;
}

int s3_put_object_stream(S3Client *c, const char *bucket, const char *key, uint64_t size, S3ReadFunc read,
                         void *userdata, const S3PutOptions *o, char **ret_etag) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ S3Header *h = NULL;
        _cleanup_strv_free_ char **names = NULL;
        size_t nh = s3_put_headers(o, &h, &names);
        int r;

        r = s3_put_options_check(c, bucket, key, o);
        if (r < 0)
                return r;
        S3Request req = { .method = "PUT", .bucket = bucket, .key = key, .headers = h, .n_headers = nh,
                          .body_len = (size_t) size, .read_body = read, .read_userdata = userdata };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        if (ret_etag)
                *ret_etag = resp.etag ? TAKE_PTR(resp.etag) : xstrdup("");
        return 0;
}

int s3_get_object_buffer(S3Client *c, const char *bucket, const char *key, size_t max, void **ret_data,
                         size_t *ret_len, S3ObjectInfo *ret_info) {
        _cleanup_(s3_response_done) S3Response resp = {};
        S3Request req = { .method = "GET", .bucket = bucket, .key = key };
        int r;

        if (max > S3_COLLECT_MAX)
                max = S3_COLLECT_MAX;
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        if (resp.body_len > max)
                return err_set(-EFBIG, EX_SOFTWARE, "%s (bucket %s, key %s) is larger than %zu bytes",
                               c->endpoint, bucket, key, max);
        response_take_info(&resp, resp.body_len, ret_info);
        *ret_len = resp.body_len;
        *ret_data = resp.body ? TAKE_PTR(resp.body) : xstrdup("");
        return 0;
}

int s3_delete_object(S3Client *c, const char *bucket, const char *key) {
        _cleanup_(s3_response_done) S3Response resp = {};
        S3Request req = { .method = "DELETE", .bucket = bucket, .key = key };
        int r;

        r = s3_request(c, &req, &resp);
        if (r == -ENOENT && resp.status == 404 && req.key)
                return 0;
        return r;
}

int s3_create_bucket(S3Client *c, const char *bucket) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ char *body = NULL;
        S3Request req = { .method = "PUT", .bucket = bucket };
        int r;

        /* us-east-1 takes no location constraint; every other region needs one. */
        if (!streq(c->region, "us-east-1"))
                body = xasprintf("<CreateBucketConfiguration xmlns=\"" S3_XMLNS "\">"
                                 "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                                 c->region);
        req.body = body ?: "";
        req.body_len = body ? strlen(body) : 0;
        r = s3_request(c, &req, &resp);
        if (r < 0 && resp.status == 409) {
                /* BucketAlreadyOwnedByYou is fine; BucketAlreadyExists (someone else's) is not. */
                const char *m = err_message();
                if (m && startswith(m, "BucketAlreadyOwnedByYou")) {
                        err_clear();
                        return 0;
                }
        }
        return r;
}
