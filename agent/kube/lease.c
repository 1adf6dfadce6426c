/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <sysexits.h>
#include <time.h>

#include "kube/lease.h"
#include "log/log.h"

#define LEASE_API "/apis/coordination.k8s.io/v1"

void kube_lease_free(KubeLease *l) {
        if (!l)
                return;
        if (l->obj)
                json_object_put(l->obj);
        free(l);
}

static json_object *get_member(json_object *o, const char *key, json_type type) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
                return NULL;
        return v;
}

static const char *get_string(json_object *o, const char *key) {
        json_object *v = get_member(o, key, json_type_string);
        return v ? json_object_get_string(v) : NULL;
}

static unsigned get_uint(json_object *o, const char *key) {
        json_object *v = get_member(o, key, json_type_int);
        int64_t i = v ? json_object_get_int64(v) : 0;
        return i > 0 && i <= UINT32_MAX ? (unsigned) i : 0;
}

int kube_lease_parse(KubeLease *l) {
        json_object *meta = get_member(l->obj, "metadata", json_type_object);
        json_object *spec = get_member(l->obj, "spec", json_type_object);
        const char *kind = get_string(l->obj, "kind");

        if (!meta || (kind && !streq(kind, "Lease")) || !get_string(meta, "name"))
                return -EBADMSG;
        l->name = get_string(meta, "name");
        l->namespace = get_string(meta, "namespace");
        l->resource_version = get_string(meta, "resourceVersion");
        l->holder = get_string(spec, "holderIdentity");
        if (isempty(l->holder))
                l->holder = NULL;
        l->duration_sec = get_uint(spec, "leaseDurationSeconds");
        l->transitions = get_uint(spec, "leaseTransitions");
        l->acquire_time = get_string(spec, "acquireTime");
        l->renew_time = get_string(spec, "renewTime");
        return 0;
}

const char *kube_lease_annotation(const KubeLease *l, const char *key) {
        json_object *meta = get_member(l ? l->obj : NULL, "metadata", json_type_object);
        return get_string(get_member(meta, "annotations", json_type_object), key);
}

char *kube_format_micro_time(uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char buf[40];

        if (!gmtime_r(&t, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                return xstrdup("1970-01-01T00:00:00.000000Z");
        return xasprintf("%s.%06uZ", buf, (unsigned) (usec % USEC_PER_SEC));
}

json_object *kube_lease_build(const char *ns, const char *name, const json_object *old,
                              const KubeLeaseSpec *spec) {
        json_object *o = json_object_new_object(), *meta = json_object_new_object(), *s, *ann = NULL;
        json_object *old_meta = get_member((json_object *) old, "metadata", json_type_object);
        json_object *old_ann = get_member(old_meta, "annotations", json_type_object);
        const char *rv = get_string(old_meta, "resourceVersion");
        _cleanup_free_ char *acquire = kube_format_micro_time(spec->acquire_usec);
        _cleanup_free_ char *renew = kube_format_micro_time(spec->renew_usec);

        json_object_object_add(o, "apiVersion", json_object_new_string("coordination.k8s.io/v1"));
        json_object_object_add(o, "kind", json_object_new_string("Lease"));
        json_object_object_add(meta, "name", json_object_new_string(name));
        json_object_object_add(meta, "namespace", json_object_new_string(ns));
        /* The condition of the update: a Lease written by anyone since it was read is not overwritten. */
        if (rv)
                json_object_object_add(meta, "resourceVersion", json_object_new_string(rv));
        if (old_ann) {
                ann = json_object_new_object();
                json_object_object_foreach(old_ann, k, v) json_object_object_add(ann, k, json_object_get(v));
        }
        for (size_t i = 0; spec->annotations && spec->annotations[i]; i += 2) {
                if (!ann)
                        ann = json_object_new_object();
                if (spec->annotations[i + 1])
                        json_object_object_add(ann, spec->annotations[i],
                                               json_object_new_string(spec->annotations[i + 1]));
                else
                        json_object_object_del(ann, spec->annotations[i]);
        }
        if (ann)
                json_object_object_add(meta, "annotations", ann);
        json_object_object_add(o, "metadata", meta);

        s = json_object_new_object();
        /* A release clears holderIdentity and keeps the times, as client-go's release() does. */
        if (spec->holder)
                json_object_object_add(s, "holderIdentity", json_object_new_string(spec->holder));
        json_object_object_add(s, "leaseDurationSeconds", json_object_new_int64(spec->duration_sec));
        json_object_object_add(s, "acquireTime", json_object_new_string(acquire));
        json_object_object_add(s, "renewTime", json_object_new_string(renew));
        json_object_object_add(s, "leaseTransitions", json_object_new_int64(spec->transitions));
        json_object_object_add(o, "spec", s);
        return o;
}

static bool name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 253 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
                        return false;
        return true;
}

static int lease_from_reply(KubeClient *c, KubeReply *reply, const char *what, KubeLease **ret) {
        _cleanup_(kube_lease_freep) KubeLease *l = xcalloc(1, sizeof *l);

        l->obj = TAKE_PTR(reply->json);
        l->server_date_usec = reply->date_usec;
        if (!l->obj || kube_lease_parse(l) < 0)
                return err_set(
                        -EBADMSG, EX_PROTOCOL,
                        "cannot %s: the Kubernetes API at %s answered with something that is not a Lease",
                        what, kube_client_server(c));
        *ret = TAKE_PTR(l);
        return 0;
}

int kube_lease_get(KubeClient *c, const char *ns, const char *name, KubeLease **ret) {
        _cleanup_(kube_reply_done) KubeReply reply = {};
        _cleanup_free_ char *path = NULL, *what = NULL;
        int r;

        if (!name_valid(ns) || !name_valid(name))
                return err_set(-EINVAL, EX_CONFIG, "\"%s/%s\" is not a valid Lease namespace and name", ns,
                               name);
        path = xasprintf(LEASE_API "/namespaces/%s/leases/%s", ns, name);
        what = xasprintf("read Lease %s/%s", ns, name);
        r = kube_request_json(c, "GET", path, NULL, &reply);
        if (r < 0)
                return r;
        if (reply.status == 404)
                return -ENOENT;
        if (reply.status != 200)
                return kube_reply_error(c, &reply, what);
        return lease_from_reply(c, &reply, what, ret);
}

int kube_lease_create(KubeClient *c, const char *ns, const char *name, const KubeLeaseSpec *spec,
                      KubeLease **ret) {
        _cleanup_(kube_reply_done) KubeReply reply = {};
        _cleanup_free_ char *path = NULL, *what = NULL;
        json_object *body;
        int r;

        if (!name_valid(ns) || !name_valid(name))
                return err_set(-EINVAL, EX_CONFIG, "\"%s/%s\" is not a valid Lease namespace and name", ns,
                               name);
        path = xasprintf(LEASE_API "/namespaces/%s/leases", ns);
        what = xasprintf("create Lease %s/%s", ns, name);
        body = kube_lease_build(ns, name, NULL, spec);
        r = kube_request_json(c, "POST", path, body, &reply);
        json_object_put(body);
        if (r < 0)
                return r;
        if (reply.status == 409)
                return -EEXIST;
        if (reply.status == 404)
                return err_set(
                        -ENOENT, EX_CONFIG,
                        "cannot create Lease %s/%s: namespace \"%s\" does not exist in the cluster at %s "
                        "— set lease_namespace = in [agent] to an existing namespace (default kube-system)",
                        ns, name, ns, kube_client_server(c));
        if (reply.status != 200 && reply.status != 201)
                return kube_reply_error(c, &reply, what);
        return lease_from_reply(c, &reply, what, ret);
}

int kube_lease_update(KubeClient *c, const KubeLease *old, const KubeLeaseSpec *spec, KubeLease **ret) {
        _cleanup_(kube_reply_done) KubeReply reply = {};
        _cleanup_free_ char *path = NULL, *what = NULL;
        const char *ns = old->namespace;
        json_object *body;
        int r;

        if (!ns || !name_valid(ns) || !name_valid(old->name))
                return err_set(-EINVAL, EX_PROTOCOL,
                               "the Kubernetes API sent a Lease without a valid namespace and name");
        path = xasprintf(LEASE_API "/namespaces/%s/leases/%s", ns, old->name);
        what = xasprintf("update Lease %s/%s", ns, old->name);
        body = kube_lease_build(ns, old->name, old->obj, spec);
        r = kube_request_json(c, "PUT", path, body, &reply);
        json_object_put(body);
        if (r < 0)
                return r;
        if (reply.status == 409)
                return -ESTALE;
        if (reply.status == 404)
                return -ENOENT;
        if (reply.status != 200 && reply.status != 201)
                return kube_reply_error(c, &reply, what);
        return lease_from_reply(c, &reply, what, ret);
}

KubeLeaseDecision kube_lease_decide(const KubeLeaseObservation *o, uint64_t now_usec, const char *me,
                                    const char *my_instance) {
        if (!o->exists || isempty(o->holder))
                return KUBE_LEASE_ACQUIRE;
        /* Ours: this very process (or one that did not say which it was) renews it. Another process with
         * our node name (a prune beside a backup, or a run that crashed) is judged like any other holder. */
        if (streq(o->holder, me) &&
            (!o->holder_instance || !my_instance || streq(o->holder_instance, my_instance)))
                return KUBE_LEASE_RENEW;
        /* client-go: valid while observedTime + leaseDuration is after now. A Lease without a duration
         * counts as expired once seen, as it would there. */
        if (o->observed_usec + (uint64_t) o->duration_sec * USEC_PER_SEC > now_usec)
                return KUBE_LEASE_WAIT;
        return KUBE_LEASE_ACQUIRE;
}

const char *kube_lease_decision_to_string(KubeLeaseDecision d) {
        switch (d) {
        case KUBE_LEASE_ACQUIRE:
                return "acquire";
        case KUBE_LEASE_RENEW:
                return "renew";
        case KUBE_LEASE_WAIT:
                return "wait";
        }
        return "?";
}
