/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "log/log.h"
#include "pg/pg.h"
#include "sys/process.h"

static char *joined(char **l) {
        char *out = xstrdup("");
        STRV_FOREACH(x, l) {
                char *next = xasprintf("%s%s[%s]", out, *out ? " " : "", *x);
                free(out);
                out = next;
        }
        return out;
}

static void split(const char *conninfo, const char *dbname, const char *want_env, const char *want_args) {
        _cleanup_strv_free_ char **env = NULL, **args = NULL;
        _cleanup_free_ char *e = NULL, *a = NULL;

        assert_int_equal(pg_conninfo_for_client(conninfo, dbname, &env, &args), 0);
        e = joined(env);
        a = joined(args);
        assert_string_equal(e, want_env);
        assert_string_equal(a, want_args);
}

/* The password goes to PGPASSWORD, never into what goes on the command line; the rest stays as it was. */
static void pg_client_conninfo_keeps_the_password_off_the_command_line(void **state) {
        split("host=db port=5433 user=u password='se cr\\'et' sslmode=require", "postgres",
              "[PGPASSWORD=se cr'et]",
              "[-d] [user='u' dbname='postgres' host='db' port='5433' sslmode='require']");
        split("postgresql://u:s3cret@db:5433/app?keepalives=1", NULL, "[PGPASSWORD=s3cret]",
              "[-d] [user='u' dbname='app' host='db' port='5433' keepalives='1']");
        split("host=/run/pg dbname=x", "it's", "", "[-d] [dbname='it\\'s' host='/run/pg']");
        split("", NULL, "", "");
        split(NULL, "postgres", "", "[-d] [dbname='postgres']");
        split("password=only", NULL, "[PGPASSWORD=only]", "");
}

static void pg_client_conninfo_refuses_what_has_no_variable_and_hides_bad_input(void **state) {
        _cleanup_strv_free_ char **env = NULL, **args = NULL;

        err_clear();
        assert_int_equal(pg_conninfo_for_client("host=db sslpassword=k3y", NULL, &env, &args), -EPERM);
        assert_non_null(strstr(err_message(), "conninfo sets sslpassword"));
        assert_null(strstr(err_message(), "k3y"));
        assert_null(env);

        err_clear();
        assert_int_equal(pg_conninfo_for_client("host=db password=s3cret 'open", NULL, &env, &args),
                         -EINVAL);
        assert_non_null(strstr(err_message(), "invalid conninfo"));
        assert_null(strstr(err_message(), "s3cret"));
}

static void pg_conninfo_hide_password_in_place(void **state) {
        char kv[] = "host=db password=s3cret user=u", uri[] = "postgresql://u:s3cret@db:5433/app",
             none[] = "host=db user=u", bad[] = "password=s3cret 'open";
        size_t n = sizeof kv - 1;

        assert_true(pg_conninfo_hide_password(kv));
        assert_null(memmem(kv, n, "s3cret", 6));
        assert_string_equal(kv, "user='u' host='db'");
        assert_true(pg_conninfo_hide_password(uri));
        assert_null(memmem(uri, sizeof uri - 1, "s3cret", 6));
        /* What fits: the rest of the conninfo, cut at the original length. */
        assert_true(strlen(uri) <= sizeof uri - 1);
        assert_false(pg_conninfo_hide_password(none));
        assert_string_equal(none, "host=db user=u");
        /* Unparsable: left alone (it fails later with a message that does not repeat it). */
        assert_false(pg_conninfo_hide_password(bad));
}

/* A later assignment replaces an earlier and an inherited one: the child sees exactly one value. */
static void message_one_line_ends_each_of_libpqs_lines_as_a_sentence(void **state) {
        static const struct {
                const char *in, *want;
        } cases[] = {
                { "connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: No such file or "
                  "directory\n\tIs the server running locally and accepting connections on that socket?\n",
                  "connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: No such file or "
                  "directory. Is the server running locally and accepting connections on that socket?" },
                { "FATAL:  password authentication failed for user \"x\"\n", "FATAL: password authentication "
                  "failed for user \"x\"" },
                { "a:\n\tb.\nc\n", "a: b. c" },
                { "", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *s = pg_message_one_line(cases[i].in);
                assert_string_equal(s, cases[i].want);
        }
}

static void child_env_later_assignment_wins(void **state) {
        _cleanup_free_ char *line = NULL;
        char *argv[] = { (char *) "/bin/sh", (char *) "-c",
                         (char *) "env | grep -c '^SKYTEST_V=' ; echo $SKYTEST_V", NULL };
        _cleanup_(child_donep) Child c = {};
        char buf[256];
        size_t len = 0;
        ssize_t k;

        assert_int_equal(setenv("SKYTEST_V", "inherited", 1), 0);
        assert_int_equal(
                child_spawn(argv,
                            (char *[]){ (char *) "SKYTEST_V=first", (char *) "SKYTEST_V=second", NULL },
                            CHILD_PIPE_STDOUT, &c),
                0);
        while ((k = child_read_stdout(&c, buf + len, sizeof buf - 1 - len)) > 0)
                len += (size_t) k;
        buf[len] = 0;
        assert_int_equal(child_wait(&c), 0);
        assert_string_equal(buf, "1\nsecond\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(pg_client_conninfo_keeps_the_password_off_the_command_line),
                cmocka_unit_test(pg_client_conninfo_refuses_what_has_no_variable_and_hides_bad_input),
                cmocka_unit_test(pg_conninfo_hide_password_in_place),
                cmocka_unit_test(child_env_later_assignment_wins),
                cmocka_unit_test(message_one_line_ends_each_of_libpqs_lines_as_a_sentence),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
