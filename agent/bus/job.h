/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "bus/context.h"
#include "sys/state.h"

#define BUS_NAME "org.skyforge.Agent1"
#define BUS_MANAGER_PATH "/org/skyforge/Agent1"
#define BUS_MANAGER_INTERFACE "org.skyforge.Agent1.Manager"
#define BUS_JOB_PATH_PREFIX "/org/skyforge/Agent1/job"
#define BUS_JOB_INTERFACE "org.skyforge.Agent1.Job"
#define BUS_ERROR_UNKNOWN_JOB "org.skyforge.Agent1.Error.UnknownJob"
#define BUS_ERROR_SYSTEMD "org.skyforge.Agent1.Error.SystemdFailed"

/* The jobs the agent knows; each is a skyforge-backup@<job>.service instance with its timer. */
#define BUS_JOB_NAMES "postgres", "mirror", "config", "volumes"
#define BUS_N_JOBS 4

typedef struct BusJob {
        const BusContext *ctx;
        const char *name;
        char *path;   /* /org/skyforge/Agent1/job/<name> */
        char *unit;   /* skyforge-backup@<name>.service */
        char *timer;  /* skyforge-backup-<name>.timer */
        JobState state; /* as last read from the state file */
        /* While running: the job's process, watched with a pidfd to notice a run that died without
         * writing its result (SIGKILL, OOM killer). */
        sd_event_source *pid_source;
        uint64_t watched_pid;
} BusJob;

extern const sd_bus_vtable bus_job_vtable[];

/* The number of Job properties; a change list never holds more. */
#define BUS_JOB_PROPERTIES_MAX 12

/* Which properties of org.skyforge.Agent1.Job differ between two readings of a job's state file: fills
 * ret with their names (NULL-terminated) and returns how many. NextElapseUSec is listed whenever the job
 * started or finished, since systemd re-arms the timer then. */
size_t bus_job_changed_properties(const JobState *old, const JobState *new,
                                  const char *ret[static BUS_JOB_PROPERTIES_MAX + 1]);
/* Whether a run ended between the two readings: the job left "running", or a new end time appeared (a
 * short run that started and ended between two reads). */
bool bus_job_finished(const JobState *old, const JobState *new);

void bus_job_done(BusJob *j);

/* Reads the job's state file again and announces what changed (PropertiesChanged, Finished). */
int bus_job_reload(BusJob *j, bool announce);

/* The timer's next elapse (CLOCK_REALTIME usec) from systemd; 0 when it is not scheduled or systemd
 * cannot tell. */
uint64_t bus_job_next_elapse(sd_bus *bus, const char *timer);
